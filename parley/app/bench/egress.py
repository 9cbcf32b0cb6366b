"""`parley bench egress`: sends/s and event -> provider-call latency through the egress, beside a
raw HTTP client loop against the same emulator.

Usage: parley bench egress [--messages N] [--accounts A] [--recipients R] [--rate R] [--seconds S]
                           [--throttle-ratio X] [--keep]

Under a fresh topic prefix on the configured broker, in one run, with the provider emulators
(``egress/emulator.py``) in their own process and ``parley egress`` in its own:

1. ``raw``: an aiohttp client posting the same WhatsApp Cloud API requests to the emulator, C in
   flight (C = the egress's connection pool), no Kafka: the ceiling of this machine's HTTP path.
2. ``backlog``: N MessageSent (WhatsApp, A accounts, R recipients each with an open window) are
   written to ``parley.conversations`` at once, the egress running and its group settled;
   sends/s = N / (last - first arrival at the emulator). Each send writes OutboundAttempted
   (acknowledged before the call) and OutboundSent.
   ``--processes P`` runs P egress processes in the consumer group (the partitions split).
   The CPU time per send (every egress process, every thread) moves much less than the rates
   with the neighbours' load on a shared machine: 1e6 / (CPU us per send) is one core's worth.
3. ``steady``: the egress caught up, the bench writes MessageSent at ``--rate`` per second (half
   the 2,000/s target by default) for S seconds; latency = arrival at the emulator - the event's
   recorded_at (written just before producing): p50/p99/max.
4. ``throttled``: the same, with one account answered 429 (Retry-After 1 s) on a share of its
   calls: the other accounts' latency beside phase 3's, and what the throttled one delivered.
The topics are deleted afterwards unless ``--keep``. Exposed as ``main(argv)`` for the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]  # the checkout
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from parley import logs, topics_admin  # noqa: E402
from parley.settings import KafkaSettings, LogSettings  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.codec import codec_for  # noqa: E402
from schemas.events import derive_id, envelope, make  # noqa: E402

T0 = 1_764_000_000_000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accounts_toml(n: int) -> str:
    out = []
    for i in range(n):
        out.append(f'[[accounts]]\ntenant = "bench"\nadapter = "whatsapp"\naccount_id = "{1000 + i}"\n'
                   f'secrets = ["x"]\n[accounts.options.send]\naccess_token = "tok-{i}"\nrate_per_s = 100000\n'
                   'burst = 1000\n')
    return "\n".join(out)


def _identity(rid: str) -> dict[str, Any]:
    return {"channel": "whatsapp", "id": rid, "display_name": None, "phone_e164": None, "email": None, "login_id": None}


class Traffic:
    """Events for A accounts x R recipients; customer = recipient (one partition key each)."""

    def __init__(self, k: KafkaSettings, accounts: int, recipients: int, run: str) -> None:
        self.k, self.accounts, self.recipients, self.run = k, accounts, recipients, run
        self.codec = codec_for(k)  # the egress's ids: registry ids when one is configured
        self.codec.prepare((topics.CONVERSATIONS,))
        self.topic = topics.named(k.topic_prefix, topics.CONVERSATIONS)
        self.producer = Producer(k.librdkafka_config(**{"acks": "all", "enable.idempotence": True, "linger.ms": 2,
                                                        "partitioner": "murmur2_random"}))
        self.n = 0

    def _who(self, i: int) -> tuple[str, str, str]:
        acc, rcp = i % self.accounts, (i // self.accounts) % self.recipients
        return str(1000 + acc), f"3361{acc:03d}{rcp:05d}", f"cu{acc}-{rcp}"

    def inbound(self) -> None:
        for i in range(self.accounts * self.recipients):
            account, rid, cust = self._who(i)
            env = envelope("MessageReceived", event_id=derive_id(self.run, "in", i), occurred_at=T0,
                           tenant_id="bench", partition_key=f"bench|{cust}")
            e = make("MessageReceived", env, channel="whatsapp", channel_account_id=account, sender=_identity(rid),
                     channel_message_id=f"in{i}", text="hi", raw_event_id="raw", customer_id=cust)
            self._send(e)
        self.producer.flush(30)

    def sent(self, tag: str) -> str:
        i = self.n
        self.n += 1
        account, rid, cust = self._who(i)
        mid = f"{self.run}-{tag}-{i}"
        env = envelope("MessageSent", event_id=derive_id(self.run, mid), occurred_at=T0 + 60_000 + i,
                       tenant_id="bench", partition_key=f"bench|{cust}", recorded_at=int(time.time() * 1000))
        e = make("MessageSent", env, channel="whatsapp", channel_account_id=account, recipient=_identity(rid),
                 message_id=mid, author_type="agent", author_id="a", text=mid, customer_id=cust)
        self._send(e)
        return mid

    def _send(self, e: dict[str, Any]) -> None:
        while True:
            try:
                self.producer.produce(self.topic, self.codec.encode(e, self.topic),
                                      e["envelope"]["partition_key"].encode())
                break
            except BufferError:
                self.producer.poll(0.01)
        self.producer.poll(0)


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return orjson.loads(await r.read())


async def _post(url: str, body: Any) -> None:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        await r.read()


async def delivered(emu: str) -> int:
    counts = await _get(f"{emu}/_emulator/counts")
    return sum(c.get("delivered", 0) for c in counts.get("whatsapp", {}).values())


async def arrivals(emu: str, since: int = 0) -> dict[str, dict[str, Any]]:
    return {m["text"]: m for m in await _get(f"{emu}/_emulator/messages?provider=whatsapp&since={since}")}


async def raw_loop(emu: str, n: int, concurrency: int) -> dict[str, Any]:
    """The ceiling: the same WhatsApp requests posted straight to the emulator, C in flight."""
    bodies = [orjson.dumps({"messaging_product": "whatsapp", "recipient_type": "individual", "to": f"33699{i:06d}",
                            "type": "text", "text": {"body": f"raw-{i}", "preview_url": False}}) for i in range(n)]
    headers = {"Authorization": "Bearer raw", "Content-Type": "application/json"}
    queue = iter(range(n))
    conn = aiohttp.TCPConnector(limit=concurrency)
    cpu0 = time.process_time()
    async with aiohttp.ClientSession(connector=conn) as s:
        async def worker() -> None:
            for i in queue:
                async with s.post(f"{emu}/v21.0/{9000 + i % 10}/messages", data=bodies[i], headers=headers) as r:
                    await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - t0
    return {"requests": n, "seconds": round(took, 2), "per_s": round(n / took, 1),
            "client_us_per_send": round((time.process_time() - cpu0) / n * 1e6, 1)}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


async def steady(traffic: Traffic, emu: str, rate: float, seconds: float, tag: str, since: int) -> dict[str, Any]:
    """Offer ``rate`` MessageSent/s for ``seconds``; latency from recorded_at to arrival."""
    n = int(rate * seconds)
    ids: list[str] = []
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        ids.append(traffic.sent(tag))
    traffic.producer.flush(30)
    deadline = time.monotonic() + 30
    got: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        got = await arrivals(emu, since)
        if all(i in got for i in ids if not i.endswith("#")):
            break
        await asyncio.sleep(0.5)
    return {"offered": n, "ids": ids, "got": got}


async def bench(a: argparse.Namespace) -> dict[str, Any]:
    run = f"eb{uuid.uuid4().hex[:6]}"
    k = KafkaSettings(bootstrap_servers=a.bootstrap, topic_prefix=f"{run}.")
    await topics_admin.apply(k)
    tmp = Path(tempfile.mkdtemp(prefix="parley-bench-egress-"))
    (tmp / "accounts.toml").write_text(_accounts_toml(a.accounts))
    port, hub_port = _port(), _port()
    emu_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": a.bootstrap, "PARLEY_KAFKA__TOPIC_PREFIX": k.topic_prefix,
           "PARLEY_ACCOUNTS_FILE": str(tmp / "accounts.toml"), "PARLEY_EMULATOR_URL": emu_url,
           "PARLEY_GROUP_ID": f"{run}-egress", "PARLEY_PORT": str(hub_port),
           "PARLEY_LOG__LEVEL": os.environ.get("BENCH_EGRESS_LOG", "WARNING"), "PARLEY_LOG__FORMAT": "json"}
    emulator = subprocess.Popen([sys.executable, "-c",
                                 f"from parley.app.emulator.providers import run; run('127.0.0.1', {port}, None)"],
                                env=env, stdout=subprocess.DEVNULL)
    report: dict[str, Any] = {"messages": a.messages, "accounts": a.accounts, "processes": a.processes,
                              "throttle_ratio": a.throttle_ratio}
    egresses: list[subprocess.Popen] = []
    try:
        await _wait_http(f"{emu_url}/_emulator/counts")
        report["raw"] = await raw_loop(emu_url, a.messages, a.concurrency)
        await _post(f"{emu_url}/_emulator/reset", {})
        traffic = Traffic(k, a.accounts, a.recipients, run)
        traffic.inbound()
        egresses = [subprocess.Popen([sys.executable, "-m", "parley.app.cli", "egress"], cwd=ROOT,
                                     env={**env, "PARLEY_PORT": str(_port()), "PARLEY_INSTANCE_ID": f"bench-{i}"},
                                     stderr=open(tmp / f"egress-{i}.log", "wb")) for i in range(a.processes)]
        # every process has its partitions (and has read the windows) before the burst is written
        await asyncio.get_running_loop().run_in_executor(None, _group_stable, k, f"{k.topic_prefix}{run}-egress",
                                                         a.processes, 60.0)
        await asyncio.sleep(2.0)
        tags = [traffic.sent("backlog") for _ in range(a.messages)]
        traffic.producer.flush(60)
        deadline = time.monotonic() + a.timeout
        cpu0 = None
        while (n := await delivered(emu_url)) < a.messages and time.monotonic() < deadline:
            if cpu0 is None and n > 0:
                cpu0, emu0, n0 = sum(cpu_s(e.pid) for e in egresses), cpu_s(emulator.pid), n
            await asyncio.sleep(0.2)
        cpu = {"egress_us_per_send": round((sum(cpu_s(e.pid) for e in egresses) - cpu0) / max(n - n0, 1) * 1e6, 1),
               "emulator_us_per_send": round((cpu_s(emulator.pid) - emu0) / max(n - n0, 1) * 1e6, 1)} if cpu0 else {}
        got = await arrivals(emu_url)
        times = sorted(got[t]["at"] for t in tags if t in got)
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        report["backlog"] = {"delivered": len(times), "seconds": round(span, 2),
                             "per_s": round(len(times) / span, 1) if span else None}
        report["backlog"].update(cpu)
        report["backlog"]["ratio_to_raw"] = round(report["backlog"]["per_s"] / report["raw"]["per_s"], 3) \
            if report["backlog"]["per_s"] else None
        since = len(await _get(f"{emu_url}/_emulator/messages"))
        report["steady"] = await _phase(traffic, emu_url, a.rate, a.seconds, "steady", since, None)
        since = len(await _get(f"{emu_url}/_emulator/messages"))
        await _post(f"{emu_url}/_emulator/faults", {"provider": "whatsapp", "account": "1000", "kind": "rate_limit",
                                                    "ratio": a.throttle_ratio, "retry_after": 1.0})
        report["throttled"] = await _phase(traffic, emu_url, a.rate, a.seconds, "throttled", since, "1000")
        report["emulator"] = await _get(f"{emu_url}/_emulator/counts")
    finally:
        for p in (*egresses, emulator):
            if p is not None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not a.keep:
            await topics_admin.delete_prefixed(k)
    return report


def _group_stable(k: KafkaSettings, group: str, members: int, timeout: float) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(k.librdkafka_config())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            [d] = admin.describe_consumer_groups([group], request_timeout=10).values()
            g = d.result()
            if str(g.state).endswith("STABLE") and len(g.members) == members \
                    and all(m.assignment.topic_partitions for m in g.members):
                return
        except Exception:  # noqa: BLE001 - the group does not exist yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"consumer group {group} did not settle with {members} members")


async def _phase(traffic: Traffic, emu: str, rate: float, seconds: float, tag: str, since: int,
                 throttled: str | None) -> dict[str, Any]:
    sent_at: dict[str, int] = {}
    orig = traffic.sent

    def record(t: str) -> str:
        mid = orig(t)
        sent_at[mid] = int(time.time() * 1000)
        return mid

    traffic.sent = record  # type: ignore[method-assign, assignment]  # timed for this phase, put back below
    try:
        res = await steady(traffic, emu, rate, seconds, tag, since)
    finally:
        traffic.sent = orig  # type: ignore[method-assign]  # the method itself again
    got = res["got"]
    others: list[float] = []  # ms from the send to the emulator's arrival
    slow: list[float] = []  # the same, on the throttled account
    for mid, at in sent_at.items():
        m = got.get(mid)
        if m is None:
            continue
        (slow if throttled and m["account"] == throttled else others).append(m["at"] * 1000 - at)
    out = {"offered": res["offered"], "offered_per_s": rate, "delivered": len(others) + len(slow),
           "p50_ms": _pct(others, 0.5), "p99_ms": _pct(others, 0.99), "max_ms": _pct(others, 1.0)}
    if throttled:
        out["throttled_account"] = {"delivered": len(slow), "offered": len(sent_at) // traffic.accounts,
                                    "p50_ms": _pct(slow, 0.5), "p99_ms": _pct(slow, 0.99)}
    return out


async def _wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await _get(url)
            return
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} does not answer")


def render(r: dict[str, Any]) -> str:
    lines = [f"egress benchmark: {r['messages']} messages over {r['accounts']} WhatsApp accounts, "
             f"{r['processes']} egress process(es)"]
    raw, b = r["raw"], r.get("backlog", {})
    lines.append(f"  raw HTTP loop      {raw['per_s']:>9} sends/s  ({raw['requests']} in {raw['seconds']} s; "
                 f"client CPU {raw['client_us_per_send']} us/send)")
    lines.append(f"  egress (backlog)   {b.get('per_s')!s:>9} sends/s  ({b.get('delivered')} delivered, "
                 f"ratio to raw {b.get('ratio_to_raw')}; egress CPU {b.get('egress_us_per_send')} us/send, "
                 f"emulator {b.get('emulator_us_per_send')} us/send)")
    for name in ("steady", "throttled"):
        s = r.get(name)
        if s:
            who = " (other accounts)" if "throttled_account" in s else ""
            lines.append(f"  {name:<18} {s['offered_per_s']:>9} offered/s  p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms  "
                         f"max {s['max_ms']} ms  ({s['delivered']}/{s['offered']} delivered){who}")
            if "throttled_account" in s:
                t = s["throttled_account"]
                lines.append(f"  {'':<18} throttled account (429 on {r.get('throttle_ratio')} of its calls, "
                             f"Retry-After 1 s): {t['delivered']}/{t['offered']} delivered in the phase, "
                             f"p50 {t['p50_ms']} ms, "
                             f"p99 {t['p99_ms']} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="parley bench egress", description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--accounts", type=int, default=10)
    ap.add_argument("--recipients", type=int, default=200, help="recipients per account")
    ap.add_argument("--concurrency", type=int, default=256, help="raw loop: requests in flight")
    ap.add_argument("--processes", type=int, default=2, help="egress processes sharing the partitions (one per core)")
    ap.add_argument("--rate", type=float, default=1000.0, help="steady phases: MessageSent per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--throttle-ratio", type=float, default=0.5,
                    help="share of the throttled account's calls answered 429")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--bootstrap", default=KafkaSettings().bootstrap_servers)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv)
    logs.configure(LogSettings(level="WARNING"), service="bench")
    report = asyncio.run(bench(a))
    print(render(report))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
