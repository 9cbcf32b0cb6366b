"""Drive the synthetic day through a running ingress, slice by slice, on the pipeline's decisions.

``drive(base_url, scenario, accounts, pipeline=...)`` advances event time in slices of
``slice_s`` simulated seconds. For each slice ``[start, end)``:
1. the actors (``actors.py``) plan what they do in it from the pipeline's decisions so far
   (the ``View``): customers' reactions, the bot, the agents, the CRM;
2. with the agenda's steps due in it (openings, presence, receipts...), every request is sent
   **one at a time, in event-time order**: the stream worker decides in event time, and a
   record older than what it already released is late. (The demo's worker holds a whole slice
   back, ``DemoSettings.worker_lateness_ms``: requests enter it at different depths, an agent's
   resolve one stage after a customer's message, and in wall time a slice lasts milliseconds);
3. the driver waits until the worker is quiet (``Pipeline.wait_quiet``: everything sent so far is
   processed and what it caused is committed) and folds the new decisions into the view.
A slice in which nothing is sent costs no wait. Without a pipeline the actors see nothing: only
the agenda is sent (the ingress alone). A 503 (Kafka did not acknowledge) or a dropped connection
is retried a few times; what the ingress answered is checked against what the step expects (2xx,
the 4xx of a bad request, the echoed challenge of a handshake) and counted in the ``DriveReport``.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiohttp

from adapters import accounts as accounts_mod
from adapters.accounts import Accounts
from parley.app.demo import webhooks
from parley.app.demo.actors import Actors
from parley.app.demo.pipeline import Pipeline
from parley.app.demo.view import View
from parley.app.demo.webhooks import HttpRequest, RenderContext
from parley.app.synthetic.scenario import Inbound, Presence, Scenario, Step

if TYPE_CHECKING:
    from rich.progress import Progress

RETRY_STATUSES = frozenset({502, 503, 504})
# A reply refused as outside the customer-service window (422) right after the customer wrote:
# the agent API's window book trails the log by the worker's and the egress's latency (about a
# second). In event time the window is open (the customer wrote moments before): send it again.
WINDOW_RETRIES = 10
SLICE_S = 300


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


@dataclass
class DriveReport:
    requests: int = 0
    duration_s: float = 0.0
    by_status: Counter[int] = field(default_factory=Counter)
    by_channel: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    by_kind: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    failures: list[Outcome] = field(default_factory=list)  # not answered as expected
    received: set[int] = field(default_factory=set)  # inbound message numbers sent (distinct)
    good: int = 0  # requests expecting a 2xx
    bad: int = 0  # requests expecting a 4xx
    slices: int = 0  # slices in which something was sent
    quiet_s: float = 0.0  # time spent waiting for the worker

    @property
    def expected_received(self) -> int:
        """Distinct MessageReceived events the day must produce (redeliveries add none)."""
        return len(self.received)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        """A plain-text summary for the terminal and the logs."""
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.by_kind.items()))
        out = [f"{self.requests} requests in {self.duration_s:.1f} s over {self.slices} slices "
               f"({self.quiet_s:.1f} s waiting for the worker), {self.retries} retries; "
               f"{self.good} expecting 2xx, {self.bad} deliberately bad; "
               f"{len(self.failures)} not answered as expected",
               f"sent: {kinds}",
               "by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))]
        for f in self.failures[:10]:
            out.append(f"  unexpected: {f.step.kind} {f.request.label} {f.request.method} "
                       f"{f.request.path.split('?')[0]} -> {f.status if f.status is not None else f.error} "
                       f"(expected {_expect(f.request)}) {f.body[:160]!r}")
        return out

    def count(self, o: Outcome) -> None:
        self.good += o.request.expect == webhooks.OK
        self.bad += o.request.expect != webhooks.OK
        self.requests += 1
        self.retries += o.attempts - 1
        status = o.status if o.status is not None else 0
        self.by_status[status] += 1
        self.by_channel[o.request.label][status] += 1
        self.by_kind[o.step.kind] += 1
        if isinstance(o.step, Inbound) and 200 <= status < 300:
            self.received.add(o.step.number)
        if not o.as_expected:
            self.failures.append(o)


def _expect(r: HttpRequest) -> str:
    return "2xx" if r.expect == webhooks.OK else "/".join(map(str, sorted(r.expect)))


def slices(scenario: Scenario, slice_s: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` in event time from the start of the driven day to its end."""
    t, step = scenario.start_ms, slice_s * 1000
    while t < scenario.end_ms:
        yield t, min(t + step, scenario.end_ms)
        t += step


class _Agenda:
    """Steps at fixed times, popped slice by slice (ties in the order they were added)."""

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self._heap = [(s.at_ms, i, s) for i, s in enumerate(steps)]
        heapq.heapify(self._heap)
        self._n = len(steps)

    def push(self, s: Step) -> None:
        heapq.heappush(self._heap, (s.at_ms, self._n, s))
        self._n += 1

    def due(self, end: int) -> list[Step]:
        out = []
        while self._heap and self._heap[0][0] < end:
            out.append(heapq.heappop(self._heap)[2])
        return out


@dataclass
class Day:
    """What the drive leaves behind: the report, the actors (their memory), the view."""

    report: DriveReport
    actors: Actors
    view: View


async def drive(base_url: str, scenario: Scenario, accounts: Accounts | str | Path, *,
                agent_token: str | None = None, pipeline: Pipeline | None = None,
                slice_s: int = SLICE_S, progress: bool = True, retries: int = 4,
                timeout_s: float = 30.0, quiet_timeout_s: float = 120.0,
                on_slice: Callable[[int, int], None] | None = None, log: Path | None = None) -> Day:
    """Send ``scenario`` to the ingress at ``base_url`` (see the module docstring).

    ``accounts``: the ingress's accounts (or the path of its accounts file): the secrets to sign
    with. ``agent_token``: a token of ``IngressSettings.agent_tokens`` for the agent API (read
    from the ingress settings when not given). ``pipeline``: the running worker to wait for and
    read decisions from (None: nobody reacts). ``log``: a JSON-lines file of every request sent
    (what, when in event time, the ids it names, the answer's status).
    """
    if not isinstance(accounts, Accounts):
        accounts = accounts_mod.load(accounts)
    if agent_token is None:
        agent_token = _agent_token()
    report, view, actors = DriveReport(), View(), Actors(scenario)
    cx = RenderContext(scenario, accounts, agent_token)
    agenda = _Agenda(scenario.agenda)
    t0 = time.perf_counter()
    journal = open(log, "w", encoding="utf-8", buffering=1) if log else None  # noqa: SIM115 - closed below
    try:
        await _drive(base_url, scenario, report, view, actors, cx, agenda, pipeline, slice_s, progress,
                     retries, timeout_s, quiet_timeout_s, on_slice, journal)
    finally:
        if journal is not None:
            journal.close()
    report.duration_s = time.perf_counter() - t0
    return Day(report, actors, view)


async def _drive(base_url: str, scenario: Scenario, report: DriveReport, view: View, actors: Actors,
                 cx: RenderContext, agenda: _Agenda, pipeline: Pipeline | None, slice_s: int,
                 progress: bool, retries: int, timeout_s: float, quiet_timeout_s: float,
                 on_slice: Callable[[int, int], None] | None, journal: Any) -> None:
    async with aiohttp.ClientSession(
        base_url.rstrip("/"), connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=timeout_s), auto_decompress=False,
    ) as session:
        await wait_ready(session, timeout_s)
        with _Progress(scenario, enabled=progress) as bar:
            last = scenario.start_ms
            for start, end in slices(scenario, slice_s):
                planned, later = actors.plan(view, start, end)
                for s in later:
                    agenda.push(s)
                due = agenda.due(end)
                for s in due:
                    actors.memory.record(s)
                steps = [s for *_, s in sorted(
                    [(s.at_ms, 0, i, s) for i, s in enumerate(planned)]
                    + [(s.at_ms, 1, i, s) for i, s in enumerate(due)], key=lambda x: x[:3])]
                for step in steps:
                    if step.at_ms < last or not start <= step.at_ms < end:
                        raise AssertionError(f"{step.kind} at {step.at_ms} is out of event-time order")
                    last = step.at_ms
                    req = webhooks.render(step, cx)
                    if req is not None:
                        outcome = await _send(session, step, req, retries)
                        report.count(outcome)
                        if journal is not None:
                            journal.write(json.dumps(describe(step, outcome.status, scenario.timezone),
                                                     ensure_ascii=False) + "\n")
                if steps and pipeline is not None:
                    report.slices += 1
                    report.quiet_s += await asyncio.to_thread(pipeline.wait_quiet, quiet_timeout_s)
                    view.apply_all(await asyncio.to_thread(pipeline.read_new))
                elif steps:
                    report.slices += 1
                bar.advance(end, report.requests)
                if on_slice is not None:
                    on_slice(start, end)


_FIELDS = ("conversation", "label", "channel", "thread_id", "customer_id", "author_id", "agent_id",
           "presence", "to_queue", "reason", "resolved_by", "status", "flaw", "tier",
           "merged_customer_id", "identity", "text")


def describe(step: Step, status: int | None, tz: str) -> dict[str, Any]:
    """One journal line: the step's kind, local event time, the answer, and its ids."""
    out: dict[str, Any] = {"at": datetime.fromtimestamp(step.at_ms / 1000, ZoneInfo(tz)).strftime("%H:%M:%S"),
                           "kind": step.kind, "http": status, "sent": round(time.time(), 3)}
    for f in _FIELDS:
        v = getattr(step, f, None)
        if v is not None:
            out["receipt" if f == "status" else f] = v[:60] if isinstance(v, str) else v
    if isinstance(step, Presence):
        out["agent_id"] = step.agent.id
    if isinstance(step, Inbound):
        out["customer"] = step.customer.key
    return out


async def wait_ready(session: aiohttp.ClientSession, timeout_s: float) -> None:
    """Wait until ``/readyz`` answers 200 (the ingress's producer is connected to Kafka)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with session.get("/readyz") as resp:
                if resp.status == 200:
                    return
        except (TimeoutError, aiohttp.ClientError):
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
        except (TimeoutError, aiohttp.ClientError) as e:
            status, body, error = None, b"", f"{type(e).__name__}: {e}"
            if req.expect == frozenset({413}):  # the server may close before reading it all
                status, error = _oversize_refused(e), None
        retry = status in RETRY_STATUSES or (status is None and error is not None)
        window = status == 422 and b"window" in body and attempt <= WINDOW_RETRIES
        if not (retry and attempt <= retries) and not window:
            return Outcome(step, req, status, body, attempt, error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


def _oversize_refused(e: Exception) -> int | None:
    """An over-limit body cut off by the server (connection reset while sending): refused."""
    return 413 if isinstance(e, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError) else None


class _Progress:
    """A rich progress bar over the simulated day; silent when disabled."""

    def __init__(self, scenario: Scenario, *, enabled: bool) -> None:
        self.sc, self.enabled, self.tz = scenario, enabled, ZoneInfo(scenario.timezone)
        self._bar: Progress | None = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]simulated day[/] {task.fields[clock]}"), BarColumn(),
                                 TextColumn("{task.fields[requests]} requests"), TimeElapsedColumn(),
                                 transient=False)
            self._bar.__enter__()
            total = (self.sc.end_ms - self.sc.start_ms) / 60_000
            self._task = self._bar.add_task("drive", total=total, clock="--:--", requests=0)
        return self

    def advance(self, at_ms: int, requests: int) -> None:
        if self._bar is None:
            return
        clock = datetime.fromtimestamp(at_ms / 1000, self.tz).strftime("%H:%M")
        self._bar.update(self._task, completed=(at_ms - self.sc.start_ms) / 60_000,
                         clock=f"{clock} {self.tz.key}", requests=requests)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
