"""Read functions, `parley kpi` and `parley api` over a SQLite file filled by the engine."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from aiohttp.test_utils import TestClient, TestServer
from typer.testing import CliRunner

from parley.app.synthetic import sample
from parley.settings import ApiSettings
from projections import api, cli_kpi, dashboard, query
from projections.store import Store, open_store
from tests.projection_support import project_all

T0 = sample.DAY0


def fill(url: str, customers: int = 60, seed: int = 11) -> list:
    """A database holding every projection of a sample log; returns the log."""
    records = sample.generate(customers, seed=seed)
    project_all(url, records).close()
    return records


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> tuple[str, list]:
    url = f"sqlite:///{tmp_path_factory.mktemp('q')}/p.db"
    return url, fill(url)


@pytest.fixture
def store(db):
    s = open_store(db[0], readonly=True)
    yield s
    s.close()


def _contact(frt=None, started=T0, resolved=None, short=0):
    return {"short_abandon": short, "first_human_reply_at": None if frt is None else started + frt,
            "frt_ms": frt, "started_at": started, "resolved_at": resolved}


@pytest.mark.parametrize("contacts, now, sl, counts", [
    ([_contact(100_000), _contact(299_999), _contact(300_000)], None, 1.0, (3, 0, 0, 0)),
    ([_contact(100_000), _contact(300_001)], None, 0.5, (1, 1, 0, 0)),
    # a contact waiting 10 min counts against; one waiting 1 min is pending and left out
    ([_contact(10_000), _contact(None, started=T0), _contact(None, started=T0 + 540_000)],
     T0 + 600_000, 0.5, (1, 0, 1, 0)),
    # a short abandon is left out; a long one (gone after 6 min, unanswered) counts against
    ([_contact(10_000), _contact(None, resolved=T0 + 20_000, short=1),
      _contact(None, resolved=T0 + 360_000)], T0 + 999_999, 0.5, (1, 0, 0, 1)),
    # so does one gone after 45 s, before T (KPIS.md: only short abandons leave the denominator)
    ([_contact(10_000), _contact(None, resolved=T0 + 45_000)], T0 + 999_999, 0.5, (1, 0, 0, 1)),
    # one waiting 1 min with no as-of known is pending
    ([_contact(10_000), _contact(None)], None, 1.0, (1, 0, 0, 0)),
    ([], None, None, (0, 0, 0, 0)),
])
def test_service_level_follows_kpis_md(contacts, now, sl, counts):
    r = query.service_level(contacts, 300, now)
    assert r["sl"] == sl
    assert (r["within"], r["after"], r["waiting_over"], r["abandoned"]) == counts


def test_as_of_is_per_tenant():
    rows = [dict(_contact(None, started=T0), tenant_id="a"),
            dict(_contact(None, started=T0), tenant_id="b")]
    r = query.service_level(rows, 300, {"a": T0 + 400_000, "b": T0 + 100_000})
    assert (r["waiting_over"], r["pending"], r["sl"]) == (1, 1, 0.0)


def test_met_is_exact_at_the_target():
    nine_of_ten = [_contact(1000)] * 9 + [_contact(400_000)]
    assert query.service_level(nine_of_ten, 300, None)["met"] is True
    assert query.service_level(nine_of_ten[1:], 300, None)["met"] is False


@pytest.mark.parametrize("text, ms", [
    ("2026-01-01", T0), ("2026-01-01T08:00", T0 + 8 * 3600_000),
    ("2026-01-01T08:00:00Z", T0 + 8 * 3600_000), (str(T0), T0), ("", None), (None, None),
])
def test_parse_time(text, ms):
    assert query.parse_time(text) == ms


def test_summary_matches_the_contacts(store: Store, db):
    _url, records = db
    latest = {e["contact_id"]: e for _t, _k, e in records if e["envelope"]["event_type"] == "ContactMeasured"}
    s = query.kpi_summary(store, query.KpiFilter())
    assert s["overall"]["offered"] == len(latest)
    assert sum(c["offered"] for c in s["channels"].values()) == len(latest)
    sms = query.kpi_summary(store, query.KpiFilter(channel="sms"))
    assert list(sms["channels"]) == ["sms"]
    assert sms["overall"]["offered"] == sum(1 for c in latest.values() if c["channel"] == "sms")


def test_filters_by_period_queue_and_agent(store: Store):
    f = query.KpiFilter.of("2026-01-01T08:00", "2026-01-01T20:00", queue="billing", agent="ana")
    rows = query.kpi_contacts(store, f)
    assert rows and all(r["queue"] == "billing" and r["agent_id"] == "ana" for r in rows)
    assert all(T0 + 8 * 3600_000 <= r["interval_start"] < T0 + 20 * 3600_000 for r in rows)
    agents = query.kpi_agents(store, query.KpiFilter(agent="ana"))
    assert [a["agent_id"] for a in agents] == ["ana"]
    assert agents[0]["concurrency"] == agents[0]["open_conversation_ms"] / agents[0]["online_ms"]


def test_intervals_use_the_dimension_of_the_filter(store: Store):
    overall = query.kpi_intervals(store, query.KpiFilter())
    assert overall and {r["dimension"] for r in overall} == {"overall"}
    by_channel = query.kpi_intervals(store, query.KpiFilter(channel="email"))
    assert by_channel and {(r["dimension"], r["dimension_value"]) for r in by_channel} == {("channel", "email")}
    assert query.KpiFilter(channel="email", queue="vip").dimension() is None


def test_profile_and_thread_detail(store: Store):
    c = query.list_customers(store, limit=1)[0]
    p = query.customer_profile(store, c["tenant_id"], c["customer_id"])
    assert p["identities"] and p["threads"]
    assert len(p["threads"]) == p["thread_count"]
    t = query.thread_detail(store, c["tenant_id"], p["threads"][0]["thread_id"])
    times = [m["occurred_at"] for m in t["messages"]]
    assert times == sorted(times) and len(times) == t["message_count"]
    inbound = [m for m in t["messages"] if m["direction"] == "in"]
    assert all(m["sentiment_label"] for m in inbound)
    outbound = [m for m in t["messages"] if m["direction"] == "out"]
    assert all(m["delivery_status"] == "read" for m in outbound)
    assert query.customer_profile(store, "acme", "nobody") is None


def test_dashboard_has_every_chart(store: Store):
    d = dashboard.build(store, query.KpiFilter())
    assert d["sl_by_interval"]["source"] == "kpi_intervals:overall" and d["sl_by_interval"]["points"]
    assert sum(b["count"] for b in d["frt_histogram"]) == d["summary"]["answered"]
    assert {a["agent_id"] for a in d["agents"]} == set(sample.AGENTS)
    assert all(a["time_at_level_ms"] and 0 <= a["occupancy"] <= 1 for a in d["agents"])
    assert sum(a["answered"] for a in d["agents"]) == d["summary"]["answered"]
    assert d["team"]["online_ms"] == sum(a["online_ms"] for a in d["agents"])
    assert d["waiting_by_interval"] and max(p["peak"] for p in d["waiting_by_interval"]) > 0
    assert {v["channel"] for v in d["volumes_by_channel"]} <= set(sample.CHANNELS)
    assert d["sentiment_by_interval"] and all(r["total"] for r in d["sentiment_by_interval"])
    mixed = dashboard.build(store, query.KpiFilter(channel="sms", queue="vip"))
    assert mixed["sl_by_interval"]["source"] == "kpi_contacts"


# -- parley kpi ----------------------------------------------------------------------------------
def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("kpi")(cli_kpi.main)
    app.command("noop")(lambda: None)  # two commands: `kpi` stays a sub-command, as in parley
    return app


def test_kpi_table_output(db):
    r = CliRunner().invoke(_cli(), ["kpi", "--database-url", db[0], "--from", "2026-01-01T09:00",
                                    "--to", "2026-01-01T10:00"], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "Service level per 15-minute interval" in r.output and "2026-01-01T09:45:00Z" in r.output
    assert "Agents" in r.output and "(all)" in r.output


def test_kpi_json_and_csv(db):
    r = CliRunner().invoke(_cli(), ["kpi", "--database-url", db[0], "--format", "json", "--channel", "sms"])
    data = json.loads(r.output)
    assert set(data) == {"intervals", "channels", "agents"}
    assert {row["dimension_value"] for row in data["intervals"]} == {"sms"}
    r = CliRunner().invoke(_cli(), ["kpi", "--database-url", db[0], "--format", "csv", "--table", "channels"])
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("channel,offered,answered,resolved,sl_300") and lines[-1].startswith("(all),")


def test_kpi_parquet_export(db, tmp_path: Path):
    one = tmp_path / "contacts.parquet"
    r = CliRunner().invoke(_cli(), ["kpi", "--database-url", db[0], "--table", "contacts", "--format",
                                    "json", "--parquet", str(one)])
    assert r.exit_code == 0
    t = pq.read_table(one)
    assert t.num_rows == len(json.loads(r.stdout)["contacts"]) and "frt_ms" in t.column_names
    r = CliRunner().invoke(_cli(), ["kpi", "--database-url", db[0], "--parquet", str(tmp_path / "all")])
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "agents.parquet", "channels.parquet", "intervals.parquet"]


def test_kpi_rejects_an_unknown_table(db):
    r = CliRunner().invoke(_cli(), ["kpi", "--database-url", db[0], "--table", "nope"])
    assert r.exit_code != 0


# -- parley api ----------------------------------------------------------------------------------
@pytest.fixture
async def client(db):
    app = api.make_app(ApiSettings(database_url=db[0]))
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_openapi_description_is_valid_and_complete(client):
    from openapi_spec_validator import validate

    spec = await (await client.get("/openapi.json")).json()
    validate(spec)
    served = {p for p, _h in api.ROUTES if p.startswith("/api") or p == "/healthz"}
    assert set(spec["paths"]) == served


async def test_every_described_route_answers(client, store: Store):
    c = query.list_customers(store, limit=1)[0]
    t = query.list_threads(store, limit=1)[0]
    spec = api.openapi_spec()
    for path in spec["paths"]:
        url = (path.replace("{tenant}", "acme").replace("{customer_id}", c["customer_id"])
               .replace("{thread_id}", t["thread_id"]))
        resp = await client.get(url)
        assert resp.status == 200, (url, await resp.text())
        assert resp.content_type == "application/json"


async def test_api_filters_and_errors(client):
    body = await (await client.get("/api/kpi/intervals?channel=sms&from=2026-01-01T09:00&to=2026-01-01T10:00")).json()
    assert body["intervals"] and all(r["dimension_value"] == "sms" for r in body["intervals"])
    assert (await client.get("/api/customers?limit=5000")).status == 400
    assert (await client.get("/api/kpi/summary?from=yesterday")).status == 400
    assert (await client.get("/api/kpi/intervals?dimension=planet")).status == 400
    assert (await client.get("/api/customers/acme/nobody")).status == 404
    assert (await client.get("/api/threads/acme/nothing")).status == 404
    assert (await client.post("/api/customers", json={})).status == 405
    assert (await client.delete("/api/threads")).status == 405


async def test_dashboard_page_and_assets_are_served(client):
    page = await client.get("/dashboard")
    assert page.status == 200 and "dashboard.js" in await page.text()
    js = await client.get("/static/dashboard.js")
    assert js.status == 200 and "fetch(" in await js.text()
    home = await client.get("/", allow_redirects=False)
    assert home.status == 302 and home.headers["Location"] == "/dashboard"
