"""One arithmetic (issue 9): every place that shows a KPI figure shows the same one.

A generated day (``tests.kpi_day``: ``parley.app.synthetic.simulate`` through the real ``KpiEngine``, out of
order with redeliveries) is projected into SQLite and PostgreSQL. Per channel and overall, FRT
p50 and p90, SL(300), SL(20) (with the target met or not) and bot containment must be equal,
exactly, from:

* the stream: its published interval counts summed over the day (SL, containment) and its
  published contact measures (percentiles, with ``streams.kpi.arithmetic``);
* the independent batch recomputation (``parley.app.batch.kpi_batch``, DuckDB), the same way;
* the read side in Python (``projections.query.kpi_summary``) on both databases;
* the SQL views (``kpi_daily``, migration 0003) on both databases;
* ``parley kpi --format json``, ``/api/kpi/summary`` and ``/api/dashboard``.

And per interval, the stream's own figures equal the read side's recomputation from the
contact rows. Each figure is then also checked against a slow, obvious reading of KPIS.md.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import pytest
import typer
from aiohttp.test_utils import TestClient, TestServer
from typer.testing import CliRunner

from parley.app.batch.kpi_batch import compute
from parley.settings import ApiSettings
from projections import api, cli_kpi, query
from projections.store import open_store
from streams.kpi import arithmetic as ar
from tests.kpi_day import Day, run_day
from tests.projection_support import project_all

SEED, SCALE = 5, 0.5
DAY_MS = 86_400_000
Figures = dict[str, tuple]  # "overall" | channel -> (p50, p90, sl300, met300, sl20, met20, containment)


@pytest.fixture(scope="module")
def day() -> Day:
    return run_day(SEED, SCALE)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, day: Day, tmp_path) -> str:
    url = (f"sqlite:///{tmp_path}/kpi.db" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    project_all(url, day.records()).close()
    return url


def _day_start(day: Day) -> int:
    starts = {c["interval_start"] - c["interval_start"] % DAY_MS
              for c in day.folded["contacts"].values()}
    assert len(starts) == 1, starts  # a one-day dataset: every source covers the same day
    return starts.pop()


# -- each source's figures ------------------------------------------------------------------------
def _tuple(p50, p90, sl300, met300, sl20, met20, containment) -> tuple:
    return (p50, p90, sl300, met300, sl20, met20, containment)


def from_published(contacts: dict, intervals: dict) -> Figures:
    """Stream or batch: interval counts summed, percentiles over the contact measures."""
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (_t, _b, dim, value), m in intervals.items():
        if dim in ("overall", "channel"):
            key = "overall" if dim == "overall" else value or "?"
            for name, v in m.items():
                counts[key][name] += v
    frts: dict[str, list[int]] = defaultdict(list)
    for c in contacts.values():
        if c["frt_ms"] is not None:
            frts["overall"].append(c["frt_ms"])
            frts[c["channel"] or "?"].append(c["frt_ms"])
    out = {}
    for key, m in counts.items():
        sls = []
        for t in (300, 20):
            sl, met = ar.service_level({
                ar.WITHIN: m[f"answered_within_{t}"], ar.AFTER: m[f"answered_after_{t}"],
                ar.OVER: m[f"unanswered_over_{t}"], ar.ABANDONED: m["long_abandoned"]},
                ar.SL_TARGETS[t])
            sls += [sl, met]
        out[key] = _tuple(ar.percentile(frts[key], 50), ar.percentile(frts[key], 90), *sls,
                          ar.share(m["bot_contained"], m["threads"]))
    return out


def from_summary(s: dict[str, Any]) -> Figures:
    """``kpi_summary``'s shape (Python read side, API)."""
    return {k: _tuple(f["frt_p50_ms"], f["frt_p90_ms"], f["sl_300"]["sl"], f["sl_300"]["met"],
                      f["sl_20"]["sl"], f["sl_20"]["met"], f["bot_containment"])
            for k, f in [("overall", s["overall"]), *s["channels"].items()]}


def from_view(url: str, day_start: int) -> Figures:
    store = open_store(url, readonly=True)
    try:
        rows = store.query("SELECT * FROM kpi_daily WHERE day_start = ?", (day_start,))
    finally:
        store.close()
    met = lambda v: None if v is None else bool(v)  # noqa: E731 (SQL has no booleans here)
    num = lambda v: None if v is None else float(v)  # noqa: E731
    return {("overall" if r["dimension"] == "overall" else r["dimension_value"]): _tuple(
        r["frt_p50_ms"], r["frt_p90_ms"], num(r["sl_300"]), met(r["sl_300_met"]),
        num(r["sl_20"]), met(r["sl_20_met"]), num(r["bot_containment"])) for r in rows}


def from_cli(url: str) -> Figures:
    app = typer.Typer()
    app.command("kpi")(cli_kpi.main)
    app.command("noop")(lambda: None)
    r = CliRunner().invoke(app, ["kpi", "--database-url", url, "--format", "json",
                                 "--table", "channels"])
    assert r.exit_code == 0, r.output
    return {("overall" if row["channel"] == "(all)" else row["channel"]): _tuple(
        row["frt_p50_ms"], row["frt_p90_ms"], row["sl_300"], row["sl_300_met"], row["sl_20"],
        row["sl_20_met"], row["bot_containment"]) for row in json.loads(r.output)["channels"]}


async def from_api(url: str) -> tuple[Figures, Figures]:
    async with TestClient(TestServer(api.make_app(ApiSettings(database_url=url)))) as client:
        summary = await (await client.get("/api/kpi/summary")).json()
        board = await (await client.get("/api/dashboard")).json()
    return from_summary(summary), from_summary({"overall": board["summary"],
                                                "channels": board["channels"]})


# -- the test -------------------------------------------------------------------------------------
async def test_every_place_shows_the_same_figures(day: Day, db_url: str):
    stream = from_published(day.folded["contacts"], day.folded["intervals"])
    batch = compute(day.delivery)
    assert from_published(batch["contacts"], batch["intervals"]) == stream

    store = open_store(db_url, readonly=True)
    try:
        summary = query.kpi_summary(store, query.KpiFilter())
    finally:
        store.close()
    assert summary["as_of"] == max(day.watermark.values())
    assert from_summary(summary) == stream
    assert from_view(db_url, _day_start(day)) == stream
    assert from_cli(db_url) == stream
    api_summary, dashboard = await from_api(db_url)
    assert api_summary == stream and dashboard == stream

    assert stream == slow_reading(day)  # and the figures are KPIS.md's
    overall = stream["overall"]
    assert len(stream) > 6 and all(v is not None for v in overall)  # nothing vacuous
    assert 0 < overall[6] < 1 and 0 < overall[2] < 1


def test_the_stream_intervals_equal_the_read_side_recomputation(day: Day, tmp_path):
    url = f"sqlite:///{tmp_path}/kpi.db"
    project_all(url, day.records()).close()
    store = open_store(url, readonly=True)
    try:
        rows = query.kpi_contacts(store, query.KpiFilter(), limit=10**6)
        now = query.as_of_by_tenant(store)
    finally:
        store.close()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in rows:
        groups[(c["interval_start"], "overall", "all")].append(c)
        groups[(c["interval_start"], "channel", c["channel"])].append(c)
    checked = 0
    for (b, dim, value), cs in groups.items():
        m = day.folded["intervals"][("acme", b, dim, value)]
        frts = [c["frt_ms"] for c in cs if c["frt_ms"] is not None]
        assert m.get("frt_p50_ms") == _float(ar.percentile(frts, 50))
        assert m.get("frt_p90_ms") == _float(ar.percentile(frts, 90))
        for t in (300, 20):
            assert m.get(f"sl_{t}") == query.service_level(cs, t, now)["sl"]
        checked += 1
    assert checked > 100


def _float(v: float | None) -> float | None:
    return None if v is None else float(v)


# -- KPIS.md read slowly, straight from the events --------------------------------------------------
def slow_reading(day: Day) -> Figures:
    """The figures from the raw events, written as plainly as KPIS.md says them (no shared code:
    its own percentile, its own episode cutting, its own classes)."""
    threads: dict[str, list[dict]] = defaultdict(list)
    for e in {e["envelope"]["event_id"]: e for e in day.events}.values():
        if e["envelope"]["event_type"] != "AgentStatusChanged" and e.get("thread_id"):
            threads[e["thread_id"]].append(e)
    as_of = max(day.watermark.values())
    contacts, thread_rows = [], []
    for evs in threads.values():
        episodes = _episodes(sorted(evs, key=_order))
        if not episodes:
            continue
        human = [any(e["envelope"]["event_type"] == "RoutingDecided"
                     and e["target_kind"] in ("queue", "agent") for e in ep) for ep in episodes]
        last_resolved = episodes[-1][-1]["envelope"]["event_type"] == "ConversationResolved"
        thread_rows.append((episodes[0][0]["channel"], not any(human) and last_resolved))
        contacts += [_contact(ep, as_of) for ep, h in zip(episodes, human, strict=True) if h]
    out = {}
    for key in {"overall", *(c["channel"] for c in contacts), *(ch for ch, _ in thread_rows)}:
        cs = [c for c in contacts if key in ("overall", c["channel"])]
        ts = [ok for ch, ok in thread_rows if key in ("overall", ch)]
        frts = sorted(c["frt"] for c in cs if c["frt"] is not None)
        sls = []
        for t, target in ((300, 90), (20, 80)):
            classes = [_class(c, t * 1000) for c in cs]
            within = classes.count("met")
            counted = within + classes.count("missed")
            sls += [within / counted if counted else None,
                    within * 100 >= target * counted if counted else None]
        out[key] = (_nearest_rank(frts, 0.5), _nearest_rank(frts, 0.9), *sls,
                    sum(ts) / len(ts) if ts else None)
    return out


def _order(e: dict) -> tuple:
    rank = ("ConversationStarted", "ConversationReopened", "MessageReceived", "MessageEnriched",
            "RoutingDecided", "ConversationQueued", "ConversationAssigned",
            "ConversationTransferred", "MessageSent", "ConversationResolved")
    return (e["envelope"]["occurred_at"], rank.index(e["envelope"]["event_type"]),
            e["envelope"]["event_id"])


def _episodes(evs: list[dict]) -> list[list[dict]]:
    """Cut after each resolution; an episode starts at the cut's first customer message."""
    out, cut = [], []
    for e in evs:
        cut.append(e)
        if e["envelope"]["event_type"] == "ConversationResolved":
            out.append(cut)
            cut = []
    out.append(cut)
    firsts = [[e["envelope"]["event_type"] for e in c].index("MessageReceived")
              if any(e["envelope"]["event_type"] == "MessageReceived" for e in c) else None
              for c in out]
    return [c[i:] for c, i in zip(out, firsts, strict=True) if i is not None]


def _contact(ep: list[dict], as_of: int) -> dict:
    start = ep[0]["envelope"]["occurred_at"]
    human = next((e["envelope"]["occurred_at"] for e in ep
                  if e["envelope"]["event_type"] == "MessageSent" and e["author_type"] == "agent"),
                 None)
    ended = ep[-1]["envelope"]["occurred_at"] \
        if ep[-1]["envelope"]["event_type"] == "ConversationResolved" else None
    return {"channel": ep[0]["channel"], "start": start, "human": human, "ended": ended,
            "frt": None if human is None else human - start, "as_of": as_of}


def _class(c: dict, t_ms: int) -> str:
    if c["human"] is not None:
        return "met" if c["frt"] <= t_ms else "missed"
    if c["ended"] is not None:  # an abandon: short ones (30 s) out, any other one missed
        return "out" if c["ended"] - c["start"] <= 30_000 else "missed"
    return "missed" if c["as_of"] - c["start"] > t_ms else "out"  # still waiting


def _nearest_rank(ordered: list[int], q: float) -> int | None:
    return ordered[math.ceil(round(q * len(ordered), 9)) - 1] if ordered else None


# -- the SQL views spell the arithmetic: every boundary, every n ------------------------------------
T0 = 1_741_000_500_000 - 1_741_000_500_000 % DAY_MS  # a UTC day start
AS_OF = T0 + 20 * 3600_000
S = 1000


def _crafted_contacts() -> list[tuple]:
    """Channels ``n01``..``n41`` with that many answered contacts (random FRTs, ties included),
    and channel ``edge`` with one contact on each side of every boundary of the SL classes."""
    import random

    rng = random.Random(9)
    rows = []
    for n in range(1, 42):
        for i in range(n):
            frt = rng.choice((rng.randrange(1, 900) * S, 60 * S))
            rows.append((f"n{n:02d}", T0 + 3600_000 + i, frt, None))
    start = AS_OF - 3600_000
    for human in (None, 20 * S, 20 * S + 1, 300 * S, 300 * S + 1):
        for ended in (None, 30 * S, 30 * S + 1, 250 * S, 400 * S):
            rows.append(("edge", start, human, None if ended is None else start + ended))
    for waited in (20 * S, 20 * S + 1, 300 * S, 300 * S + 1):  # still waiting at as-of
        rows.append(("edge", AS_OF - waited, None, None))
    return rows


def _fill(url: str) -> None:
    store = open_store(url)
    store.migrate()
    with store.transaction() as tx:
        tx.executemany(
            "INSERT INTO kpi_contacts (tenant_id, contact_id, channel, queue, interval_start, "
            "started_at, first_human_reply_at, resolved_at, frt_ms, updated_at) "
            "VALUES (?, ?, ?, 'q', ?, ?, ?, ?, ?, ?)",
            [("acme", f"c{i}", ch, t - t % 900_000, t, None if frt is None else t + frt, end, frt,
              AS_OF) for i, (ch, t, frt, end) in enumerate(_crafted_contacts())])
        tx.executemany(
            "INSERT INTO kpi_intervals (tenant_id, interval_start, dimension, dimension_value, "
            "metrics, updated_at) VALUES ('acme', ?, ?, ?, ?, ?)",
            [(T0 + k * 900_000, dim, val, json.dumps({"threads": n, "bot_contained": c}), AS_OF)
             for k, (dim, val, n, c) in enumerate([
                 ("overall", "all", 7.0, 2.0), ("overall", "all", 3.0, 1.0),
                 ("channel", "edge", 5.0, 1.0), ("channel", "n03", 3.0, 0.0),
                 ("channel", "bots", 2.0, 2.0)])])
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def crafted_url(request: pytest.FixtureRequest, tmp_path) -> str:
    url = (f"sqlite:///{tmp_path}/c.db" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    _fill(url)
    return url


def test_the_views_spell_the_arithmetic(crafted_url: str):
    store = open_store(crafted_url, readonly=True)
    try:
        classes = store.query("SELECT * FROM kpi_contact_sl")
        summary = query.kpi_summary(store, query.KpiFilter())
    finally:
        store.close()
    for c in classes:
        for t in (300, 20):
            assert c[f"sl_{t}_class"] == ar.sl_class(
                c["started_at"], c["first_human_reply_at"], c["resolved_at"], t * S, AS_OF), c
    assert {c["sl_300_class"] for c in classes} == set(ar.SL_CLASSES)
    assert {c["sl_20_class"] for c in classes} == set(ar.SL_CLASSES)
    view = from_view(crafted_url, T0)
    assert view == from_summary(summary)
    assert len(view) == 41 + 3  # n01..n41, edge, bots, overall
    assert view["bots"] == (None, None, None, None, None, None, 1.0)
    assert view["overall"][6] == 3 / 10 and view["edge"][6] == 1 / 5
