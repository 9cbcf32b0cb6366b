"""Send the synthetic day to a running ingress over HTTP, as fast as it answers.

``drive(base_url, scenario, accounts)`` renders every step (``webhooks.render``), then sends the
requests in event-time order with up to ``concurrency`` in flight: simulated time is compressed
to the ingress's own pace. Steps of one lane (a customer's conversations, an agent's presence)
are sent one after the other, each only once the previous one was answered, so every
conversation arrives in order. A 503 (Kafka did not acknowledge) or a dropped connection is
retried a few times with backoff; what the ingress answered is checked against what the step
expects (2xx, the 4xx of a bad request, the echoed challenge of a handshake) and counted by
status and by channel in the ``DriveReport``.

Resolve and Context steps need ids the stream processors assign. Given the projections' SQLite
file (``lookup=``), each becomes a background task: it waits for the previous step of its lane,
polls the file (read-only) until the ids appear or ``Lookup.wait_s`` passes, and only then takes
a request slot; so its wait never holds a slot, and later steps of its lane do not wait for it.
A step whose ids never appear is counted as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from adapters import accounts as accounts_mod
from adapters.accounts import Accounts
from parley.demo import lookup as lookup_mod
from parley.demo import webhooks
from parley.demo.lookup import Ids
from parley.demo.scenario import Context, Resolve, Scenario, Step
from parley.demo.webhooks import HttpRequest, RenderContext

RETRY_STATUSES = frozenset({502, 503, 504})
LOOKUP_WAIT_S = 120.0  # how long a Resolve/Context step waits for its ids to be projected
LOOKUP_POLL_S = 0.1


@dataclass
class Outcome:
    step: Step
    request: HttpRequest
    status: int | None  # None: no answer (connection failure after the retries)
    body: bytes = b""
    attempts: int = 1
    error: str | None = None

    @property
    def as_expected(self) -> bool:
        if self.status is None or self.status not in self.request.expect:
            return False
        return self.request.expect_body is None or self.body == self.request.expect_body


@dataclass(frozen=True)
class Skipped:
    """A deferred step not sent: its ids did not appear in the projections in time."""

    step: Step
    reason: str


class Lookup:
    """Looks deferred steps' ids up in the projections' SQLite file, one query at a time."""

    def __init__(self, db: str | Path, tenant: str, *, wait_s: float = LOOKUP_WAIT_S,
                 poll_s: float = LOOKUP_POLL_S) -> None:
        self.db, self.tenant, self.wait_s, self.poll_s = Path(db), tenant, wait_s, poll_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, queried from worker threads

    def query(self, step: Resolve | Context) -> Ids | str:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = lookup_mod.connect_readonly(self.db)
                return lookup_mod.ids_for(self._conn, self.tenant, step)
            except sqlite3.OperationalError:  # the file is not there yet
                return lookup_mod.NO_CUSTOMER

    async def wait_for(self, step: Resolve | Context) -> Ids | str:
        """Poll until the ids are there, or the reason they are not after ``wait_s``."""
        deadline = time.monotonic() + self.wait_s
        while True:
            found = await asyncio.to_thread(self.query, step)
            if isinstance(found, Ids) or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(self.poll_s)

    def reason(self, step: Step, why: str) -> str:
        if why == lookup_mod.NO_CUSTOMER:
            return f"{step.kind}: customer not projected within {self.wait_s:g}s"
        return f"{step.kind}: no open, routed thread of the customer started before the step " \
               f"(waited {self.wait_s:g}s)"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def deferred_request(step: Step, ids: Ids, cx: RenderContext) -> HttpRequest:
    if isinstance(step, Resolve):
        assert ids.thread_id is not None
        return webhooks.resolve_request(step, cx, ids.customer_id, ids.thread_id)
    if isinstance(step, Context):
        return webhooks.context_request(step, cx, ids.customer_id)
    raise TypeError(f"{type(step).__name__} is not deferred")


@dataclass
class DriveReport:
    requests: int = 0
    duration_s: float = 0.0
    by_status: Counter[int] = field(default_factory=Counter)
    by_channel: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    by_kind: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> steps not sent
    retries: int = 0
    failures: list[Outcome] = field(default_factory=list)  # not answered as expected
    expected_received: int = 0  # distinct MessageReceived events the day must produce
    good: int = 0  # requests expecting a 2xx
    bad: int = 0  # requests expecting a 4xx

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        """A plain-text summary for the terminal and the logs."""
        out = [f"{self.requests} requests in {self.duration_s:.1f} s "
               f"({self.requests_per_s:.0f}/s), {self.retries} retries; "
               f"{self.good} expecting 2xx, {self.bad} deliberately bad; "
               f"{len(self.failures)} not answered as expected",
               "by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))]
        for label in sorted(self.by_channel):
            counts = self.by_channel[label]
            out.append(f"  {label:10} " + ", ".join(f"{s}: {n}" for s, n in sorted(counts.items())))
        for reason, n in sorted(self.skipped.items()):
            out.append(f"skipped {n} steps: {reason}")
        for f in self.failures[:10]:
            out.append(f"  unexpected: step {f.step.seq} {f.step.kind} {f.request.label} "
                       f"{f.request.method} {f.request.path.split('?')[0]} -> "
                       f"{f.status if f.status is not None else f.error} "
                       f"(expected {_expect(f.request)}) {f.body[:160]!r}")
        return out


def _expect(r: HttpRequest) -> str:
    return "2xx" if r.expect == webhooks.OK else "/".join(map(str, sorted(r.expect)))


def render_all(scenario: Scenario, cx: RenderContext, report: DriveReport, *,
               deferring: bool = False) -> list[tuple[Step, HttpRequest | None]]:
    """Every step's request, in the scenario's order; skipped steps counted by reason.

    ``deferring``: steps whose ids are looked up at send time stay in, with no request (None).
    """
    out: list[tuple[Step, HttpRequest | None]] = []
    for step in scenario.steps:
        req = webhooks.render(step, cx)
        if req is None and deferring and lookup_mod.needs_lookup(step):
            out.append((step, None))
            continue
        if req is None:
            report.skipped[webhooks.skip_reason(step) or f"{step.kind}: not rendered"] += 1
            continue
        out.append((step, req))
    return out


async def drive(base_url: str, scenario: Scenario, accounts: Accounts | str | Path, *,
                agent_token: str | None = None, concurrency: int = 8, progress: bool = True,
                retries: int = 4, timeout_s: float = 30.0, lookup_db: str | Path | None = None,
                lookup_wait_s: float = LOOKUP_WAIT_S) -> DriveReport:
    """Send ``scenario`` to the ingress at ``base_url``; the report says what it answered.

    ``accounts``: the ingress's accounts (or the path of its accounts file): the secrets to sign
    with. ``agent_token``: a token of ``IngressSettings.agent_tokens`` for the agent API (read
    from the ingress settings when not given). ``lookup_db``: the projections' SQLite file, to
    send Resolve and Context steps once their ids are projected (skipped without it), each
    waiting at most ``lookup_wait_s`` for them.
    """
    if not isinstance(accounts, Accounts):
        accounts = accounts_mod.load(accounts)
    if agent_token is None:
        agent_token = _agent_token()
    report = DriveReport(expected_received=scenario.expected_received())
    cx = RenderContext(scenario, accounts, agent_token)
    lookup = Lookup(lookup_db, cx.tenant, wait_s=lookup_wait_s) if lookup_db else None
    plan = render_all(scenario, cx, report, deferring=lookup is not None)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(
        base_url.rstrip("/"), connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=timeout_s), auto_decompress=False,
    ) as session:
        await wait_ready(session, timeout_s)
        try:
            with _Progress(len(plan), scenario, enabled=progress) as bar:
                outcomes = await _send_all(session, plan, concurrency, retries, bar,
                                           lookup=lookup, cx=cx)
        finally:
            if lookup is not None:
                lookup.close()
    report.duration_s = time.perf_counter() - t0
    for o in outcomes:
        _count(report, o)
    return report


async def wait_ready(session: aiohttp.ClientSession, timeout_s: float) -> None:
    """Wait until ``/readyz`` answers 200 (the ingress's producer is connected to Kafka)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with session.get("/readyz") as resp:
                if resp.status == 200:
                    return
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the ingress was not ready within {timeout_s:.0f} s (/readyz)")
        await asyncio.sleep(0.2)


def _agent_token() -> str:
    from parley.settings import IngressSettings

    tokens = [t.get_secret_value() for t in IngressSettings().agent_tokens]
    if not tokens:
        raise ValueError("no agent token: pass agent_token= or set PARLEY_AGENT_TOKENS")
    return tokens[0]


def _count(report: DriveReport, o: Outcome | Skipped) -> None:
    if isinstance(o, Skipped):
        report.skipped[o.reason] += 1
        return
    report.good += o.request.expect == webhooks.OK
    report.bad += o.request.expect != webhooks.OK
    report.requests += 1
    report.retries += o.attempts - 1
    status = o.status if o.status is not None else 0
    report.by_status[status] += 1
    report.by_channel[o.request.label][status] += 1
    report.by_kind[o.step.kind] += 1
    if not o.as_expected:
        report.failures.append(o)


async def _send_all(session: aiohttp.ClientSession,
                    plan: Sequence[tuple[Step, HttpRequest | None]], concurrency: int,
                    retries: int, bar: _Progress, *, lookup: Lookup | None = None,
                    cx: RenderContext | None = None) -> list[Outcome | Skipped]:
    """Issue in order; a step waits for the previous step of its lane; ``concurrency`` in flight.

    A step without a request (None) is deferred: see ``_deferred``; it needs ``lookup`` and ``cx``.
    """
    slots = asyncio.Semaphore(concurrency)
    last_of_lane: dict[str, asyncio.Task[Outcome]] = {}
    tasks: list[asyncio.Task[Outcome | Skipped]] = []

    async def one(step: Step, req: HttpRequest, before: asyncio.Task[Outcome] | None) -> Outcome:
        try:
            if before is not None:
                await asyncio.wait([before])  # its outcome is its own, even a failure
            outcome = await _send(session, step, req, retries)
        finally:
            slots.release()
        bar.advance(step)
        return outcome

    for step, req in plan:
        if req is None:  # not in the lane's chain: the lane's next steps do not wait for it
            assert lookup is not None and cx is not None
            tasks.append(asyncio.create_task(_deferred(
                session, step, last_of_lane.get(step.lane), slots, lookup, cx, retries, bar)))
            continue
        await slots.acquire()  # in event-time order: earlier steps always hold their slot first
        task = asyncio.create_task(one(step, req, last_of_lane.get(step.lane)))
        last_of_lane[step.lane] = task
        tasks.append(task)
    return list(await asyncio.gather(*tasks))


async def _deferred(session: aiohttp.ClientSession, step: Step, before: asyncio.Task | None,
                    slots: asyncio.Semaphore, lookup: Lookup, cx: RenderContext, retries: int,
                    bar: _Progress) -> Outcome | Skipped:
    """After the lane's previous step, poll for the ids (holding no slot), then send."""
    if before is not None:
        await asyncio.wait([before])
    assert isinstance(step, Resolve | Context)
    found = await lookup.wait_for(step)
    if not isinstance(found, Ids):
        bar.advance(step)
        return Skipped(step, lookup.reason(step, found))
    async with slots:
        outcome = await _send(session, step, deferred_request(step, found, cx), retries)
    bar.advance(step)
    return outcome


async def _send(session: aiohttp.ClientSession, step: Step, req: HttpRequest,
                retries: int) -> Outcome:
    attempt, delay = 0, 0.2
    while True:
        attempt += 1
        try:
            async with session.request(req.method, req.path, data=req.body or None,
                                       headers=dict(req.headers)) as resp:
                body = await resp.read()
                status = resp.status
            error = None
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            status, body, error = None, b"", f"{type(e).__name__}: {e}"
            if req.expect == frozenset({413}):  # the server may close before reading it all
                status, error = _oversize_refused(e), None
        retry = status in RETRY_STATUSES or (status is None and error is not None)
        if not retry or attempt > retries:
            return Outcome(step, req, status, body, attempt, error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)


def _oversize_refused(e: Exception) -> int | None:
    """An over-limit body cut off by the server (connection reset while sending): refused."""
    return 413 if isinstance(e, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError) else None


class _Progress:
    """A rich progress bar showing the simulated clock; silent when disabled."""

    def __init__(self, total: int, scenario: Scenario, *, enabled: bool) -> None:
        self.total, self.enabled, self.tz = total, enabled, ZoneInfo(scenario.timezone)
        self.latest = 0
        self._bar = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
                TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("[bold]synthetic day[/] {task.fields[clock]}"),
                                 BarColumn(), MofNCompleteColumn(), TextColumn("requests"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("drive", total=self.total, clock="--:--")
        return self

    def advance(self, step: Step) -> None:
        if self._bar is None:
            return
        self.latest = max(self.latest, step.at_ms)
        clock = datetime.fromtimestamp(self.latest / 1000, self.tz).strftime("%H:%M")
        self._bar.update(self._task, advance=1, clock=f"{clock} {self.tz.key}")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
