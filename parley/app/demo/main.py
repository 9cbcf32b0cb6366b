"""`parley demo`: the whole system on one machine, driven by a synthetic working day.

Starts (or reuses) a broker, applies the topic catalogue under a per-run prefix, starts the
ingress, the stream worker, the projections, the API, and the egress with the providers'
emulators as child processes (each logging JSON to ``<data_dir>/demo-logs/``), drives the day
through the real HTTP ingress slice by slice with the actors reacting to the worker's decisions
(``driver.py``), waits until the worker and the
projections have settled, then prints what the pipeline did per feature (``evidence.py``), the
KPI tables (the same functions as ``parley kpi``, checked against the API and the dashboard's
data), the worker's late-record count and the dashboard's address. The SQLite file stays in
``<data_dir>`` for inspection. The accounts file and the routing rules default to the copies
packaged in ``parley/app/demo/data`` (the ``config/*.example.toml`` of the checkout), so the
command runs from any directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from rich.console import Console

from parley import kafka_local, topics_admin
from parley.settings import BrokerSettings, DemoSettings, KafkaSettings


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path


@dataclass
class Demo:
    settings: DemoSettings
    console: Console
    run_id: str
    kafka: KafkaSettings
    children: list[Child] = field(default_factory=list)
    broker_started: bool = False

    @property
    def app_id(self) -> str:
        return f"parley-{self.run_id}"

    @property
    def db_path(self) -> Path:
        return self.settings.data_dir / "parley.db"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "demo-logs"


def packaged(name: str) -> Path:
    """A file of ``parley/app/demo/data`` (accounts, routing rules) as a real path."""
    with as_file(files("parley.app.demo") / "data" / name) as p:
        return Path(p).resolve()


def accounts_file(s: DemoSettings) -> Path:
    return s.accounts_file or packaged("accounts.example.toml")


def routing_file(s: DemoSettings) -> Path:
    return s.routing_file or packaged("routing.example.toml")


def the_day(s: DemoSettings, today: date | None = None) -> date:
    """The simulated day: the configured one, else the last weekday before today (UTC): the
    office keeps weekday hours."""
    if s.day:
        return date.fromisoformat(s.day)
    d = (today or datetime.now(UTC).date()) - timedelta(days=1)
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d


def broker(s: DemoSettings, console: Console) -> tuple[str, bool]:
    """The configured cluster if one answers, else a local broker started from Maven jars."""
    if kafka_local.answers(s.kafka.bootstrap_servers, 3.0):
        return s.kafka.bootstrap_servers, False
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("PARLEY_KAFKA__BOOTSTRAP_SERVERS"):
        raise SystemExit(f"the configured Kafka at {s.kafka.bootstrap_servers} does not answer")
    b = BrokerSettings()
    with console.status("starting a local Kafka broker (first run fetches its jars with Maven)"):
        took = kafka_local.up(b)
    console.print(f"kafka {b.kafka_version} up on {b.host}:{b.port} in {took:.1f}s")
    return f"{b.host}:{b.port}", True


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there (another demo may), else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free port")


def child_env(d: Demo, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update({
        "PARLEY_KAFKA__BOOTSTRAP_SERVERS": d.kafka.bootstrap_servers,
        "PARLEY_KAFKA__TOPIC_PREFIX": d.kafka.topic_prefix,
        "PARLEY_LOG__FORMAT": "json",
        "PARLEY_DATA_DIR": str(d.settings.data_dir),
    })
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(extra)
    return env


def start(d: Demo, name: str, args: list[str], **env: str) -> Child:
    d.log_dir.mkdir(parents=True, exist_ok=True)
    log = d.log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "parley.app.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(d, **env), start_new_session=True)
    child = Child(name, proc, log)
    d.children.append(child)
    return child


def start_all(d: Demo) -> None:
    s = d.settings
    s.ingress_port, s.api_port = free_port(s.ingress_port), free_port(s.api_port)
    start(d, "ingress", ["ingress"], PARLEY_HOST="127.0.0.1", PARLEY_PORT=str(s.ingress_port),
          PARLEY_ACCOUNTS_FILE=str(accounts_file(s)),
          PARLEY_AGENT_TOKENS=json.dumps([s.agent_token.get_secret_value()]))
    worker = {"PARLEY_APP_ID": d.app_id, "PARLEY_ROUTING_FILE": str(routing_file(s)),
              "PARLEY_STATS_INTERVAL_S": "1"}
    worker["PARLEY_LATENESS_MS"] = str(s.worker_lateness_ms or 2 * s.slice_s * 1000)
    worker["PARLEY_IDLE_MS"] = str(s.worker_idle_ms)
    start(d, "worker", ["worker"], **worker)
    start(d, "projections", ["projections", "run"], PARLEY_DATABASE_URL=d.database_url)
    start(d, "api", ["api"], PARLEY_DATABASE_URL=d.database_url, PARLEY_HOST="127.0.0.1",
          PARLEY_PORT=str(s.api_port))
    # The egress delivers the business's messages (to the providers' emulators here) and keeps
    # the customer-service windows the agent API checks replies against (parley.outbound.windows)
    http, smtp = free_port(8900), free_port(8925)
    start(d, "emulator", ["egress", "emulator", "--port", str(http), "--smtp-port", str(smtp)])
    start(d, "egress", ["egress"], PARLEY_ACCOUNTS_FILE=str(accounts_file(s)),
          PARLEY_EMULATOR_URL=f"http://127.0.0.1:{http}", PARLEY_EMULATOR_SMTP=f"127.0.0.1:{smtp}",
          PARLEY_GROUP_ID=f"egress-{d.run_id}", PARLEY_HOST="127.0.0.1", PARLEY_PORT=str(free_port(8090)))


def wait_http(d: Demo, url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_children(d)
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f}s; see {d.log_dir}")


def check_children(d: Demo) -> None:
    for c in d.children:
        if c.proc.poll() is not None:
            tail = "\n".join(c.log.read_text(errors="replace").splitlines()[-15:])
            raise SystemExit(f"{c.name} exited ({c.proc.returncode}); last lines of {c.log}:\n{tail}")


def stop_all(d: Demo, keep: tuple[str, ...] = ()) -> None:
    for c in d.children:
        if c.name not in keep and c.proc.poll() is None:
            os.killpg(c.proc.pid, signal.SIGTERM)
    for c in d.children:
        if c.name not in keep:
            try:
                c.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(c.proc.pid, signal.SIGKILL)


COUNTS = {
    "messages_in": "SELECT count(*) AS n FROM messages WHERE direction = 'in'",
    "messages_out": "SELECT count(*) AS n FROM messages WHERE direction = 'out'",
    "threads": "SELECT count(*) AS n FROM threads",
    "customers": "SELECT count(*) AS n FROM customers",
    "contacts": "SELECT count(*) AS n FROM kpi_contacts",
    "intervals": "SELECT count(*) AS n FROM kpi_intervals",
    "agent_intervals": "SELECT count(*) AS n FROM kpi_agent_intervals",
    "outbound": "SELECT count(*) AS n FROM outbound_deliveries",
    "offsets": "SELECT coalesce(sum(next_offset), 0) AS n FROM projection_offsets",
}


def counts(d: Demo) -> dict[str, int]:
    """Rows the projections hold now (read-only, while they write: WAL)."""
    from projections.store import open_store

    store = open_store(d.database_url, readonly=True)
    try:
        return {k: store.query(sql)[0]["n"] for k, sql in COUNTS.items()}
    except Exception:  # tables not migrated yet
        return {}
    finally:
        store.close()


def settle(d: Demo, expected_in: int) -> dict[str, int]:
    """Wait until every inbound message is projected and the projections stop changing."""
    deadline = time.monotonic() + d.settings.settle_timeout_s
    last, stable_since = None, time.monotonic()
    with d.console.status("waiting for the projections to catch up") as st:
        while time.monotonic() < deadline:
            check_children(d)
            now = counts(d)
            st.update(f"projected: {now}")
            if now != last:
                last, stable_since = now, time.monotonic()
            elif now.get("messages_in", 0) >= expected_in and time.monotonic() - stable_since > 3:
                return now
            time.sleep(0.5)
    d.console.print(f"[yellow]not settled after {d.settings.settle_timeout_s:.0f}s: {last}")
    return last or {}


# --- the main job --------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a run of the day leaves: the exit code and what it is made of."""

    code: int
    db_path: Path
    topic_prefix: str
    late: int | None  # records the worker processed late (None: its stats were not found)
    features: list[Any]  # evidence.Line: per feature, what the pipeline did
    summary: dict[str, Any]  # the period's KPI figures (as `parley kpi` computes them)
    agents: list[dict[str, Any]]  # per agent, as the dashboard shows them
    diffs: list[str]  # where the API or the dashboard disagreed with `parley kpi`
    report: Any  # the driver's DriveReport


def run(s: DemoSettings, *, serve: bool) -> int:
    """The main job. Returns the exit code: 0 when every request was answered as expected, the
    projections hold every message, the worker processed no record late, and `parley kpi`, the
    API and the dashboard agree."""
    return play(s, serve=serve).code


def play(s: DemoSettings, *, serve: bool = False, console: Console | None = None,
         run_id: str | None = None) -> Outcome:
    """Run the day (see the module docstring); ``run_id`` names the topics (default: a fresh one)."""
    t_start = time.monotonic()
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    run_id = run_id or "demo" + datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
    bootstrap, started = broker(s, console)
    d = Demo(s, console, run_id, KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}."),
             broker_started=started)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{d.db_path}{suffix}").unlink(missing_ok=True)
    asyncio.run(topics_admin.apply(d.kafka))
    console.print(f"topics applied under prefix [bold]{d.kafka.topic_prefix}[/]")
    try:
        start_all(d)
        wait_http(d, f"http://127.0.0.1:{s.ingress_port}/readyz")
        wait_http(d, f"http://127.0.0.1:{s.api_port}/healthz")
        outcome = _day(d)
        console.print(f"wall time {time.monotonic() - t_start:.0f} s  ·  dashboard: "
                      f"http://127.0.0.1:{s.api_port}/dashboard  ·  SQLite: {d.db_path}  ·  logs: {d.log_dir}")
        if serve:
            console.print("serving the dashboard; Ctrl-C to stop")
            stop_all(d, keep=("api",))
            _wait_for_interrupt(d)
        return outcome
    finally:
        stop_all(d)
        if d.broker_started and not serve:
            console.print("the local broker keeps running (`parley kafka down` stops it)")


def _day(d: Demo) -> Outcome:
    """Drive the day, let the pipeline settle, and say what it did."""
    from parley.app.demo.driver import drive
    from parley.app.demo.pipeline import Pipeline
    from parley.app.synthetic.scenario import build_day

    s, console = d.settings, d.console
    day = the_day(s)
    scenario = build_day(s.seed, s.scale, day)
    plan = scenario.summary()
    console.print(f"driving {day:%A %Y-%m-%d} (scale {s.scale}, seed {s.seed}): "
                  f"{plan['conversations']} conversations of {plan['customers']} customers, "
                  f"{plan['agents']} agents, slices of {s.slice_s // 60} min, through "
                  f"http://127.0.0.1:{s.ingress_port}")
    pipeline = Pipeline(d.kafka, d.app_id, alive=lambda: check_children(d))
    try:
        result = asyncio.run(drive(f"http://127.0.0.1:{s.ingress_port}", scenario, accounts_file(s),
                                   agent_token=s.agent_token.get_secret_value(), pipeline=pipeline,
                                   slice_s=s.slice_s, progress=console.is_terminal,
                                   quiet_timeout_s=s.settle_timeout_s, log=d.log_dir / "driver.jsonl"))
        for line in result.report.lines():
            console.print(line, markup=False)
        pipeline.wait_quiet(s.settle_timeout_s)
        result.view.apply_all(pipeline.read_new())
        projected = settle(d, result.report.expected_received)
        identity_events = pipeline.read_all("parley.identity.events")
    finally:
        pipeline.close()
    return _results(d, result, projected, identity_events, scenario.timezone)


def _results(d: Demo, result: Any, projected: dict[str, int], identity_events: list[dict[str, Any]],
             tz: str) -> Outcome:
    from parley.app.demo import evidence, report
    from projections.store import open_store

    console = d.console
    stats = report.worker_stats(d.log_dir / "worker.log")
    late = report.late_count(stats)
    store = open_store(d.database_url, readonly=True)
    try:
        features = evidence.lines(store, result.view, identity_events, tz)
    finally:
        store.close()
    console.print("[bold]What the pipeline did[/]")
    for name, line in features:
        console.print(f"  {name:13} {line}", markup=False, highlight=False)
    summary, agents, diffs = report.same_figures(d.database_url, f"http://127.0.0.1:{d.settings.api_port}")
    console.print(report.channels_table(summary))
    console.print(report.agents_table(agents))
    console.print("parley kpi, the API (/api/kpi/summary, /api/kpi/agents) and the dashboard "
                  "(/api/dashboard) show " + ("[green]the same figures[/]" if not diffs
                                               else "[red]different figures: " + "; ".join(diffs)))
    console.print(f"worker: {late if late is not None else '?'} records processed late "
                  f"(event time older than already released; 0 = the run is reproducible), "
                  f"{(stats or {}).get('records', '?')} records read; projected: {projected}")
    ok = result.report.ok and projected.get("messages_in", 0) >= result.report.expected_received
    code = 0 if ok and late == 0 and not diffs else 1
    return Outcome(code, d.db_path, d.kafka.topic_prefix, late, features, summary, agents, diffs, result.report)


def _wait_for_interrupt(d: Demo) -> None:
    try:
        while all(c.proc.poll() is None for c in d.children if c.name == "api"):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
