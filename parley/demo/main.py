"""`parley demo`: the whole system on one machine, driven by a synthetic day of traffic.

Starts (or reuses) a broker, applies the topic catalogue under a per-run prefix, starts the
ingress, the stream worker, the projections and the API as child processes (each logging JSON to
``<data_dir>/demo-logs/``), drives the day through the real HTTP ingress, waits until the
projections have settled, then prints the KPI summary and the dashboard's address. The SQLite
file stays in ``<data_dir>`` for inspection.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

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
    def db_path(self) -> Path:
        return self.settings.data_dir / "parley.db"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "demo-logs"


def the_day(s: DemoSettings) -> date:
    """The simulated day: the configured one, else yesterday (UTC)."""
    if s.day:
        return date.fromisoformat(s.day)
    return datetime.now(timezone.utc).date() - timedelta(days=1)


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
        proc = subprocess.Popen([sys.executable, "-m", "parley.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(d, **env), start_new_session=True)
    child = Child(name, proc, log)
    d.children.append(child)
    return child


def start_all(d: Demo) -> None:
    s = d.settings
    start(d, "ingress", ["ingress"], PARLEY_HOST="127.0.0.1", PARLEY_PORT=str(s.ingress_port),
          PARLEY_ACCOUNTS_FILE=str(s.accounts_file),
          PARLEY_AGENT_TOKENS=json.dumps([s.agent_token.get_secret_value()]))
    start(d, "worker", ["worker"], PARLEY_APP_ID=f"parley-{d.run_id}",
          PARLEY_ROUTING_FILE=str(s.routing_file), PARLEY_WEB_PORT=str(s.api_port + 66))
    start(d, "projections", ["projections", "run"], PARLEY_DATABASE_URL=d.database_url)
    start(d, "api", ["api"], PARLEY_DATABASE_URL=d.database_url, PARLEY_HOST="127.0.0.1",
          PARLEY_PORT=str(s.api_port))


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


def counts(d: Demo) -> dict[str, int]:
    """Rows the projections hold now (read-only, while they write: WAL)."""
    from projections.store import open_store

    store = open_store(d.database_url, readonly=True)
    try:
        q = {
            "messages_in": "SELECT count(*) AS n FROM messages WHERE direction = 'in'",
            "threads": "SELECT count(*) AS n FROM threads",
            "customers": "SELECT count(*) AS n FROM customers",
            "contacts": "SELECT count(*) AS n FROM kpi_contacts",
            "intervals": "SELECT count(*) AS n FROM kpi_intervals",
        }
        return {k: store.query(sql)[0]["n"] for k, sql in q.items()}
    except Exception:  # tables not migrated yet
        return {}
    finally:
        store.close()


def resolved_threads(d: Demo) -> int | None:
    from projections.store import open_store

    store = open_store(d.database_url, readonly=True)
    try:
        return store.query("SELECT count(*) AS n FROM threads WHERE status = 'resolved'")[0]["n"]
    except Exception:  # tables not migrated yet
        return None
    finally:
        store.close()


def settle(d: Demo, expected_in: int) -> dict[str, int]:
    """Wait until every inbound message is projected and the KPI tables stop changing."""
    deadline = time.monotonic() + d.settings.settle_timeout_s
    last, stable_since = None, time.monotonic()
    with d.console.status("waiting for the processors and projections to catch up") as st:
        while time.monotonic() < deadline:
            check_children(d)
            now = counts(d)
            st.update(f"projected: {now}")
            if now != last:
                last, stable_since = now, time.monotonic()
            elif now.get("messages_in", 0) >= expected_in and time.monotonic() - stable_since > 4:
                return now
            time.sleep(1)
    d.console.print(f"[yellow]not settled after {d.settings.settle_timeout_s:.0f}s: {last}")
    return last or {}


def summary_table(d: Demo) -> tuple[Table, dict]:
    from projections import query
    from projections.store import open_store

    store = open_store(d.database_url, readonly=True)
    try:
        summary = query.kpi_summary(store, query.KpiFilter())
    finally:
        store.close()
    t = Table(title=f"KPIs of the simulated day (as of {summary['as_of_utc']})")
    for col in ("channel", "offered", "SL(300)", "90/300", "SL(20)", "80/20", "FRT p50", "FRT p90"):
        t.add_column(col, justify="left" if col == "channel" else "right")
    rows = [*summary["channels"].items(), ("overall", summary["overall"])]
    for name, f in rows:
        t.add_row(name, str(f["offered"]), _pct(f["sl_300"]["sl"]), _met(f["sl_300"]["met"]),
                  _pct(f["sl_20"]["sl"]), _met(f["sl_20"]["met"]), _dur(f["frt_p50_ms"]),
                  _dur(f["frt_p90_ms"]))
    return t, summary


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _met(v: bool | None) -> str:
    return "-" if v is None else ("[green]met" if v else "[red]missed")


def _dur(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.0f} s"


def run(s: DemoSettings, *, serve: bool) -> int:
    """The main job. Returns the exit code (0 when every request was answered as expected)."""
    from parley.demo.driver import drive
    from parley.demo.scenario import build_day

    console = Console()
    run_id = "demo" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    bootstrap, started = broker(s, console)
    d = Demo(s, console, run_id,
             KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}."),
             broker_started=started)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    d.db_path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{d.db_path}{suffix}").unlink(missing_ok=True)
    asyncio.run(topics_admin.apply(d.kafka))
    console.print(f"topics applied under prefix [bold]{d.kafka.topic_prefix}[/]")
    try:
        start_all(d)
        wait_http(d, f"http://127.0.0.1:{s.ingress_port}/readyz")
        wait_http(d, f"http://127.0.0.1:{s.api_port}/healthz")
        day = the_day(s)
        scenario = build_day(s.seed, s.scale, day)
        console.print(f"driving {day} (scale {s.scale}, seed {s.seed}) through http://127.0.0.1:{s.ingress_port}")
        report = asyncio.run(drive(f"http://127.0.0.1:{s.ingress_port}", scenario, s.accounts_file,
                                   agent_token=s.agent_token.get_secret_value(), progress=True,
                                   lookup_db=d.db_path,
                                   lookup_wait_s=s.lookup_wait_s))
        for line in report.lines():
            console.print(line, markup=False)
        projected = settle(d, report.expected_received)
        console.print(f"projected: {projected}, resolved threads: {resolved_threads(d)}")
        table, _ = summary_table(d)
        console.print(table)
        console.print(f"dashboard: http://127.0.0.1:{s.api_port}/  ·  SQLite: {d.db_path}  ·  "
                      f"logs: {d.log_dir}")
        if serve:
            console.print("serving the dashboard; Ctrl-C to stop")
            stop_all(d, keep=("api",))
            _wait_for_interrupt(d)
        return 0 if report.ok and projected.get("messages_in", 0) >= report.expected_received else 1
    finally:
        stop_all(d)
        if d.broker_started and not serve:
            console.print("the local broker keeps running (`parley kafka down` stops it)")


def _wait_for_interrupt(d: Demo) -> None:
    try:
        while all(c.proc.poll() is None for c in d.children if c.name == "api"):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
