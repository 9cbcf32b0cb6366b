"""The demo's look-up of processor-assigned ids, and its deferred sending, against a real SQLite.

The database is built by the projections' own store and migrations; rows are written the shape
the identity and threads projections write them. The deferred steps are sent to a small local
HTTP server that records what it receives.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters import accounts as accounts_mod
from adapters.agent_events import ContextBody, ResolveBody
from parley.demo import driver, lookup
from parley.demo.driver import Lookup, Outcome, Skipped
from parley.demo.lookup import NO_CUSTOMER, NO_THREAD, Ids
from parley.demo.scenario import Context, Presence, Resolve, build_day
from parley.demo.webhooks import RenderContext, render
from projections.store import open_store

ACCOUNTS = Path(__file__).resolve().parents[2] / "config" / "accounts.example.toml"
DAY = build_day(5, 0.1, date(2026, 11, 17))
T = DAY.tenant
CUSTOMER = DAY.customers[0]
OTHER = DAY.customers[1]


def make_resolve(**overrides) -> Resolve:
    kw = dict(at_ms=1_763_380_000_000, lane=f"customer:{CUSTOMER.key}", seq=10,
              conversation="conv-1", customer=CUSTOMER, channel=CUSTOMER.channel,
              resolved_by="agent", agent_id="agent-01")
    return Resolve(**(kw | overrides))


def make_context(**overrides) -> Context:
    kw = dict(at_ms=1_763_360_000_000, lane=f"customer:{CUSTOMER.key}", seq=2, customer=CUSTOMER,
              source="crm", tier="vip", lifecycle_stage="loyal")
    return Context(**(kw | overrides))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    store.migrate()
    store.close()
    return tmp_path / "p.db"


def add_identity(db: Path, key: str, customer: str) -> None:
    store = open_store(f"sqlite:///{db}")
    kind, _, value = key.partition(":")
    with store.transaction() as tx:
        tx.execute("INSERT INTO customer_identities (tenant_id, identity_key, customer_id, kind, "
                   "value) VALUES (?, ?, ?, ?, ?)", (T, key, customer, kind, value))
    store.close()


def add_thread(db: Path, thread: str, customer: str, started_at: int, status: str,
               routed_to: str | None = "queue") -> None:
    store = open_store(f"sqlite:///{db}")
    with store.transaction() as tx:
        tx.execute("INSERT INTO threads (tenant_id, thread_id, customer_id, status, started_at, routed_to) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (T, thread, customer, status, started_at, routed_to))
    store.close()


def channel_key(c=CUSTOMER, channel: str | None = None) -> str:
    channel = channel or c.channel
    return f"channel:{channel}:{c.handle(channel)}"


def ids(db: Path, step) -> Ids | str:
    conn = lookup.connect_readonly(db)
    try:
        return lookup.ids_for(conn, T, step)
    finally:
        conn.close()


# -- the look-up --------------------------------------------------------------------------------

def test_no_identity_means_customer_not_projected(db: Path) -> None:
    add_identity(db, channel_key(OTHER), "c-other")
    assert ids(db, make_resolve()) == NO_CUSTOMER
    assert ids(db, make_context()) == NO_CUSTOMER


def test_customer_found_by_the_steps_channel_identity(db: Path) -> None:
    add_identity(db, channel_key(), "c-1")
    assert ids(db, make_context()) == Ids("c-1")


def test_customer_found_by_another_identity_of_theirs(db: Path) -> None:
    add_identity(db, f"email:{CUSTOMER.email.lower()}", "c-1")
    assert ids(db, make_context()) == Ids("c-1")


def test_resolve_takes_the_latest_open_thread_started_before_it(db: Path) -> None:
    at = make_resolve().at_ms
    add_identity(db, channel_key(), "c-1")
    add_thread(db, "t-old", "c-1", at - 50_000, "assigned")
    add_thread(db, "t-new", "c-1", at - 10_000, "queued")
    add_thread(db, "t-resolved", "c-1", at - 5_000, "resolved")
    add_thread(db, "t-not-routed-yet", "c-1", at - 2_000, "open", routed_to=None)
    add_thread(db, "t-later", "c-1", at + 1, "open")
    add_thread(db, "t-someone-else", "c-2", at - 1_000, "open")
    assert ids(db, make_resolve()) == Ids("c-1", "t-new")


def test_resolve_without_an_open_thread(db: Path) -> None:
    at = make_resolve().at_ms
    add_identity(db, channel_key(), "c-1")
    add_thread(db, "t-resolved", "c-1", at - 5_000, "resolved")
    add_thread(db, "t-later", "c-1", at + 1, "open")
    assert ids(db, make_resolve()) == NO_THREAD


def test_a_database_not_migrated_yet_has_no_customer(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path / 'empty.db'}").query("SELECT 1")
    assert ids(tmp_path / "empty.db", make_context()) == NO_CUSTOMER


# -- deferred sending ---------------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((request.path, json.loads(body) if body else {}))
        return web.json_response({"ok": True}, status=202)


async def send(db: Path, plan, *, wait_s: float, concurrency: int = 1):
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    cx = RenderContext(DAY, accounts_mod.load(ACCOUNTS), "tok")
    lk = Lookup(db, T, wait_s=wait_s, poll_s=0.02)
    async with TestServer(app) as server, aiohttp.ClientSession(str(server.make_url(""))) as s:
        with driver._Progress(len(plan), DAY, enabled=False) as bar:
            out = await driver._send_all(s, plan, concurrency, 0, bar, lookup=lk, cx=cx)
    lk.close()
    return out, rec.seen, cx


async def test_a_deferred_step_is_sent_once_its_ids_are_projected(db: Path) -> None:
    step = make_resolve()

    async def projected_later() -> None:
        await asyncio.sleep(0.2)
        add_identity(db, channel_key(), "c-1")
        add_thread(db, "t-1", "c-1", step.at_ms - 60_000, "assigned")

    late = asyncio.create_task(projected_later())
    (outcome,), seen, _ = await send(db, [(step, None)], wait_s=3)
    await late
    assert isinstance(outcome, Outcome) and outcome.status == 202 and outcome.as_expected
    path, body = seen[0]
    assert path == f"/agents/{T}/agent-01/threads/t-1/resolve"
    assert body["customer_id"] == "c-1" and body["occurred_at"] == step.at_ms  # its own event time
    ResolveBody.model_validate(body)


async def test_steps_whose_ids_never_appear_are_skipped_with_the_reason(db: Path) -> None:
    add_identity(db, channel_key(), "c-1")  # known customer, but no thread
    out, seen, _ = await send(db, [(make_resolve(), None),
                                   (make_context(customer=OTHER, lane="customer:x"), None)],
                              wait_s=0.3)
    assert seen == []
    assert {o.reason for o in out} == {
        "resolve: no open, routed thread of the customer started before the step (waited 0.3s)",
        "context: customer not projected within 0.3s"}
    assert all(isinstance(o, Skipped) for o in out)


async def test_a_waiting_step_holds_no_request_slot(db: Path) -> None:
    add_identity(db, channel_key(), "c-1")
    waiting = make_context(customer=OTHER, lane="customer:x")  # never projected
    context = make_context()
    presence = next(s for s in DAY.steps if isinstance(s, Presence))
    cx = RenderContext(DAY, accounts_mod.load(ACCOUNTS), "tok")
    plan = [(waiting, None), (context, None), (presence, render(presence, cx))]
    out, seen, _ = await send(db, plan, wait_s=0.5, concurrency=1)
    paths = [p for p, _ in seen]
    assert paths == [f"/agents/{T}/{presence.agent.id}/status", f"/customers/{T}/c-1/context"]
    ContextBody.model_validate(seen[1][1])
    assert isinstance(out[0], Skipped) and [o.status for o in out[1:]] == [202, 202]


def test_the_report_counts_sent_and_skipped_steps() -> None:
    report = driver.DriveReport()
    cx = RenderContext(DAY, accounts_mod.load(ACCOUNTS), "tok")
    step = make_context()
    req = driver.deferred_request(step, Ids("c-1"), cx)
    driver._count(report, Outcome(step, req, 202))
    driver._count(report, Skipped(make_resolve(), "resolve: no open thread"))
    assert (report.requests, report.good, report.by_kind["context"]) == (1, 1, 1)
    assert report.skipped == {"resolve: no open thread": 1}
