"""`parley bench ingress`: signed webhook requests/s and request->ack latency beside the raw producer.

Usage: python bench/ingress.py [--requests N] [--concurrency C] [--duration S] [--rate R] [--workers W]

Under a fresh topic prefix on the configured broker, in one run:

* ``ingress``: the real service (``adapters.app.serve``, W processes on one port) in a child
  process on loopback, with a web chat account and a WhatsApp one (requests signed as Meta signs
  them). The load generator is a lean HTTP/1.1 keep-alive client on raw asyncio streams with
  every request built (and signed) before the clock starts, so it measures the service and not
  the client (aiohttp's own client costs about as much CPU as the service it measures).
  Closed loop: C requests in flight until N requests or S seconds, each a new message; latency
  is request written -> response read, and the response is only sent after Kafka acknowledged
  the raw record and the event (acks=all, idempotent producer) and the dedup claim.
  Open loop (``--rate``): R requests/s on a schedule, whatever the answers do; latency counts
  from the scheduled time (no coordinated omission).
  The WhatsApp phases run twice: with the dedup claim log (the default) and without it, so its
  cost is measured in the same run. With ``--privacy`` (the default) the web chat and WhatsApp
  closed-loop phases run again, sealing off and on (docs/PRIVACY.md: a key store in a temporary
  SQLite file, the keys of the 500 senders made during the warm-up), alternated
  ``--privacy-rounds`` times: the encryption's cost in requests/s and CPU per request, best of each.
* ``raw producer`` (the ceiling), same broker, same topics, records of the same size: aiokafka
  ``send_and_wait`` one record at a time; ``pairs`` = C tasks each producing a raw record and an
  event and awaiting both (exactly the Kafka work of one request, without HTTP, verification,
  parsing, encoding or dedup), with aiokafka and with confluent-kafka as the ingress uses it;
  ``batched`` = every record sent, then all acks awaited.

Ratios compare the ingress to the aiokafka ``pairs`` ceiling measured in the same run. On a shared
machine the rates move with the neighbours' load; the CPU time per request (the service's
processes, every thread; the raw producers' own process) moves much less, and 1e6 / (CPU us per
request) is what one core could serve. The topics
are deleted afterwards unless ``--keep``. Exposed as ``main(argv)`` for the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]  # the checkout
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# E402 below: `python bench/ingress.py` runs from a checkout, so the path comes before the imports

from aiokafka import AIOKafkaProducer  # noqa: E402

from parley import logs, topics_admin  # noqa: E402
from parley.settings import IngressSettings, KafkaSettings, LogSettings, PrivacySettings  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.codec import Codec, codec_for  # noqa: E402
from schemas.events import derive_id, envelope, make  # noqa: E402

WEB_TOKEN = "bench-webchat-token"
META_SECRET = "bench-meta-app-secret"
PHONE_ID = "100000000000001"
ACCOUNTS_TOML = f"""
[[accounts]]
tenant = "bench"
adapter = "webchat"
account_id = "bench-web"
secrets = ["{WEB_TOKEN}"]

[[accounts]]
tenant = "bench"
adapter = "whatsapp"
account_id = "{PHONE_ID}"
secrets = ["{META_SECRET}"]
verify_token = "bench"
"""


# -- payloads -----------------------------------------------------------------------------------

def webchat_request(i: int, run: str) -> tuple[str, bytes, dict[str, str]]:
    body = json.dumps({"type": "message", "message_id": f"{run}-{i}", "visitor_id": f"v-{i % 500}",
                       "text": f"Bonjour, où en est ma commande {i} ? Merci d'avance.",
                       "display_name": "Client Bench"}).encode()
    return "/webhooks/webchat/bench-web", body, {"Authorization": f"Bearer {WEB_TOKEN}",
                                                 "Content-Type": "application/json"}


def whatsapp_request(i: int, run: str) -> tuple[str, bytes, dict[str, str]]:
    wa_id = f"3361{i % 500:07d}"
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "33644600001", "phone_number_id": PHONE_ID},
             "contacts": [{"profile": {"name": "Client Bench"}, "wa_id": wa_id}],
             "messages": [{"from": wa_id, "id": f"wamid.{run}.{i}", "timestamp": str(int(time.time())),
                           "type": "text", "text": {"body": f"Bonjour, où en est ma commande {i} ?"}}]}
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "WABA", "changes": [{"value": value, "field": "messages"}]}]}).encode()
    sig = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return f"/webhooks/whatsapp/{PHONE_ID}", body, {"X-Hub-Signature-256": sig, "Content-Type": "application/json"}


def raw_pair(i: int, run: str, raw_topic: str, messages_topic: str,
             codec: Codec | None = None) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of a RawRequest and a MessageReceived like the ingress writes."""
    codec = codec or codec_for()
    _, body, headers = webchat_request(i, run)
    now = int(time.time() * 1000)
    raw_id = derive_id("bench", "raw", run, i)
    raw = make("RawRequest", envelope("RawRequest", event_id=raw_id, occurred_at=now, tenant_id="bench",
                                      partition_key="bench|webchat|bench-web", producer="bench", recorded_at=now),
               channel="webchat", channel_account_id="bench-web", method="POST", path="/webhooks/webchat/bench-web",
               headers={k.lower(): v for k, v in headers.items()}, body=body, verified=True)
    key = f"bench|webchat|v-{i % 500}"
    msg = make("MessageReceived", envelope("MessageReceived", event_id=derive_id("bench", run, i), occurred_at=now,
                                           tenant_id="bench", partition_key=key, producer="bench", recorded_at=now),
               channel="webchat", channel_account_id="bench-web",
               sender={"channel": "webchat", "id": f"v-{i % 500}", "display_name": "Client Bench",
                       "phone_e164": None, "email": None, "login_id": None},
               channel_message_id=f"{run}-{i}", text=f"Bonjour, où en est ma commande {i} ?", raw_event_id=raw_id)
    return [(raw_topic, b"bench|webchat|bench-web", codec.encode(raw, raw_topic)),
            (messages_topic, key.encode(), codec.encode(msg, messages_topic))]


# -- the ingress in a child process ------------------------------------------------------------

def _serve(settings: IngressSettings) -> None:
    from adapters.app import serve

    serve(settings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_ready(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = await _Conn.open(port)
            status = await conn.call(b"GET /readyz HTTP/1.1\r\nHost: bench\r\n\r\n")
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the ingress did not become ready")


class Ingress:
    """The service in a child process, started and stopped around a phase."""

    def __init__(self, kafka: KafkaSettings, accounts: Path, workers: int, dedup: bool,
                 privacy: PrivacySettings | None = None) -> None:
        self.port = _free_port()
        settings = IngressSettings(host="127.0.0.1", port=self.port, accounts_file=accounts, kafka=kafka,
                                   workers=workers, dedup=dedup, log=LogSettings(level="WARNING", format="json"),
                                   privacy=privacy or PrivacySettings())
        # not a daemon: with --workers the service starts processes of its own
        self.child = multiprocessing.get_context("spawn").Process(target=_serve, args=(settings,))

    def __enter__(self) -> Ingress:
        self.child.start()
        asyncio.run(_wait_ready(self.port))
        return self

    def cpu_s(self) -> float:
        """CPU seconds (user + system, every thread) of the service and its worker processes."""
        return _cpu_s(self.child.pid)

    def __exit__(self, *exc: object) -> None:
        self.child.terminate()
        self.child.join(15)
        if self.child.is_alive():
            self.child.kill()


def _cpu_s(pid: int | None) -> float:
    if pid is None or not Path(f"/proc/{pid}/stat").exists():
        return float("nan")
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for p in [pid, *(int(c) for c in (children.read_text().split() if children.exists() else []))]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _with_cpu(result: dict[str, Any], cpu_s: float) -> dict[str, Any]:
    """Add the CPU cost per request: robust where the wall-clock rate depends on the neighbours."""
    n = result.get("ok") or result.get("pairs") or 0
    result["cpu_us_per_req"] = round(cpu_s / n * 1e6, 1) if n else float("nan")
    return result


def privacy_ab(args: argparse.Namespace, kafka: KafkaSettings, tmp: Path, run: str) -> dict[str, Any]:
    """The web chat and WhatsApp closed loops with sealing off and on, alternated ``--privacy-rounds``
    times (a shared machine's load moves between phases): the best rate and the least CPU per
    request of each, and the change."""
    sealed_settings = _privacy(tmp)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"plaintext": {}, "sealed": {}}
    for i in range(args.privacy_rounds):
        for mode, p in (("plaintext", None), ("sealed", sealed_settings)):
            with Ingress(kafka, tmp / "accounts.toml", args.workers, dedup=True, privacy=p) as ingress:
                for name, r in _phases(args, ingress, f"{run}{mode[0]}{i}", ["webchat", "whatsapp"]).items():
                    runs[mode].setdefault(name, []).append(r)
    best = {mode: {name: {**max(rs, key=lambda r: r["per_s"]),
                          "cpu_us_per_req": min(r["cpu_us_per_req"] for r in rs)} for name, rs in by.items()}
            for mode, by in runs.items()}
    change = {name: {"per_s_change_pct": round(100 * (best["sealed"][name]["per_s"] / best["plaintext"][name]["per_s"]
                                                       - 1), 1),
                     "cpu_us_per_req_plain": best["plaintext"][name]["cpu_us_per_req"],
                     "cpu_us_per_req_sealed": best["sealed"][name]["cpu_us_per_req"],
                     "cpu_change_pct": round(100 * (best["sealed"][name]["cpu_us_per_req"]
                                                    / best["plaintext"][name]["cpu_us_per_req"] - 1), 1)}
              for name in best["plaintext"]}
    every = {mode: {name: [[r["per_s"], r["cpu_us_per_req"]] for r in rs] for name, rs in by.items()}
             for mode, by in runs.items()}
    return {"rounds": args.privacy_rounds, **best, "change": change, "runs": every}


def _privacy(tmp: Path) -> PrivacySettings:
    """Sealing on, a master key and a key store of this run's own."""
    from pydantic import SecretStr

    from parley.privacy.crypto import new_master_key

    return PrivacySettings(enabled=True, master_key=SecretStr(new_master_key()),
                           keys_url=f"sqlite:///{tmp / 'keys.db'}")


# -- a lean HTTP/1.1 client ----------------------------------------------------------------------

def prebuilt(build, n: int, run: str, port: int) -> list[bytes]:
    """``n`` complete requests (head and body), signed, before any clock starts."""
    out = []
    for i in range(n):
        path, body, headers = build(i, run)
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n")
        out.append(head.encode() + body)
    return out


class _Conn:
    """One keep-alive connection: write a request, read one response, return its status."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def call(self, request: bytes) -> int:
        self.writer.write(request)
        buf = b""
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            buf += chunk
        head = buf[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
        while len(buf) < end + 4 + length:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            buf += chunk
        return int(head[9:12])

    def close(self) -> None:
        self.writer.close()


def _summary(latencies: list[float], statuses: dict[int, int], elapsed: float) -> dict[str, Any]:
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return {"requests": len(latencies), "ok": ok, "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "seconds": round(elapsed, 3), "per_s": round(ok / elapsed, 1) if elapsed else 0.0,
            **_percentiles(latencies)}


async def closed_loop(port: int, requests: list[bytes], concurrency: int, duration_s: float) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight until all are sent or ``duration_s`` elapsed."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(requests)
    conns = [await _Conn.open(port) for _ in range(concurrency)]
    t0 = time.perf_counter()
    stop_at = t0 + duration_s

    async def worker(conn: _Conn) -> None:
        for request in counter:
            if time.perf_counter() > stop_at:
                return
            t = time.perf_counter()
            status = await conn.call(request)
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return _summary(latencies, statuses, elapsed)


async def open_loop(port: int, requests: list[bytes], rate: float, duration_s: float,
                    max_connections: int = 512) -> dict[str, Any]:
    """Send at ``rate`` per second on a fixed schedule; latency from the scheduled time."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    idle: list[_Conn] = [await _Conn.open(port) for _ in range(64)]
    opened = len(idle)
    pending: set[asyncio.Task] = set()

    async def one(request: bytes, scheduled: float) -> None:
        nonlocal opened
        conn = idle.pop() if idle else None
        if conn is None:
            opened += 1
            conn = await _Conn.open(port)
        status = await conn.call(request)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(conn)

    n = min(len(requests), int(rate * duration_s))
    t0 = time.perf_counter()
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if opened >= max_connections and not idle:
            statuses[-1] = statuses.get(-1, 0) + 1  # the generator itself cannot keep up: counted, not hidden
            continue
        task = asyncio.ensure_future(one(requests[i], scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - t0
    for c in idle:
        c.close()
    out = _summary(latencies, statuses, elapsed)
    out["rate"] = rate
    return out


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {"p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 2), "p90_ms": round(q[89] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "max_ms": round(max(latencies) * 1000, 2)}


# -- the raw producer ceiling -------------------------------------------------------------------

async def raw_producer(kafka: KafkaSettings, n: int, concurrency: int, duration_s: float, run: str) -> dict[str, Any]:
    raw_topic = topics.named(kafka.topic_prefix, topics.RAW_INGRESS)
    msg_topic = topics.named(kafka.topic_prefix, topics.MESSAGES)
    codec = codec_for(kafka)  # the ingress's ids: registry ids when one is configured
    await codec.aprepare((topics.RAW_INGRESS, topics.MESSAGES))
    pairs = [raw_pair(i, run, raw_topic, msg_topic, codec) for i in range(n)]
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    try:
        await producer.send_and_wait(*_args(pairs[0][0]))  # metadata and producer id out of the way
        out = {"send_and_wait": await _sequential(producer, [r for p in pairs for r in p][:n], duration_s)}
        cpu0 = time.process_time()
        out["pairs"] = _with_cpu(await _pairs(producer, pairs, concurrency, duration_s), time.process_time() - cpu0)
        t0 = time.perf_counter()
        futures = [await producer.send(*_args(r)) for p in pairs for r in p]
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - t0
        out["batched"] = {"records": len(futures), "seconds": round(elapsed, 3),
                          "per_s": round(len(futures) / elapsed, 1)}
    finally:
        await producer.stop()
    cpu0 = time.process_time()
    out["confluent_pairs"] = _with_cpu(await _confluent_pairs(kafka, pairs, concurrency, duration_s),
                                       time.process_time() - cpu0)
    return out


def _args(record: tuple[str, bytes, bytes]) -> tuple[str, bytes, bytes]:
    topic, key, value = record
    return topic, value, key


async def _sequential(producer: AIOKafkaProducer, records: list, duration_s: float) -> dict[str, Any]:
    latencies = []
    t0 = time.perf_counter()
    for r in records:
        if time.perf_counter() - t0 > duration_s:
            break
        t = time.perf_counter()
        await producer.send_and_wait(*_args(r))
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    return {"records": len(latencies), "seconds": round(elapsed, 3), "per_s": round(len(latencies) / elapsed, 1),
            **_percentiles(latencies)}


async def _pairs(producer: AIOKafkaProducer, pairs: list, concurrency: int, duration_s: float) -> dict[str, Any]:
    async def send(pair: list) -> None:
        futures = [await producer.send(*_args(r)) for r in pair]
        await asyncio.gather(*futures)

    return await _closed_loop(send, pairs, concurrency, duration_s)


async def _confluent_pairs(kafka: KafkaSettings, pairs: list, concurrency: int, duration_s: float) -> dict[str, Any]:
    """The same pairs through the ingress's own producer (``adapters.producer``, librdkafka)."""
    from adapters.producer import Producer, Record

    producer = Producer(kafka, required_topics=[pairs[0][0][0], pairs[0][1][0]])
    await producer.start()
    if not await producer.wait_ready(30):
        raise RuntimeError("the confluent-kafka producer did not connect")

    async def send(pair: list) -> None:
        await producer.send_all([Record(topic, key, value) for topic, key, value in pair])

    try:
        return await _closed_loop(send, pairs, concurrency, duration_s)
    finally:
        await producer.stop()


async def _closed_loop(send: Callable[[list], Awaitable[None]], pairs: list, concurrency: int,
                       duration_s: float) -> dict[str, Any]:
    """``send`` each pair, ``concurrency`` at a time, for at most ``duration_s``: pairs/s and latency."""
    latencies: list[float] = []
    it = iter(pairs)
    t0 = time.perf_counter()

    async def worker() -> None:
        for pair in it:
            if time.perf_counter() - t0 > duration_s:
                return
            t = time.perf_counter()
            await send(pair)
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"pairs": len(latencies), "seconds": round(elapsed, 3), "per_s": round(len(latencies) / elapsed, 1),
            **_percentiles(latencies)}


# -- the run ------------------------------------------------------------------------------------

def _phases(args: argparse.Namespace, ingress: Ingress, run: str, phases: list[str]) -> dict[str, Any]:
    out = {}
    builds = {"webchat": webchat_request, "whatsapp": whatsapp_request}
    for name in phases:
        build = builds[name.split()[0]]
        warm = prebuilt(build, args.warmup, f"warm-{name}-{run}".replace(" ", "-"), ingress.port)
        asyncio.run(closed_loop(ingress.port, warm, args.concurrency, args.duration))
        if name.endswith("rate"):
            reqs = prebuilt(build, int(args.rate * args.duration), f"{name}-{run}".replace(" ", "-"), ingress.port)
            cpu0 = ingress.cpu_s()
            out[name] = _with_cpu(asyncio.run(open_loop(ingress.port, reqs, args.rate, args.duration)),
                                  ingress.cpu_s() - cpu0)
        else:
            reqs = prebuilt(build, args.requests, f"{name}-{run}".replace(" ", "-"), ingress.port)
            cpu0 = ingress.cpu_s()
            out[name] = _with_cpu(asyncio.run(closed_loop(ingress.port, reqs, args.concurrency, args.duration)),
                                  ingress.cpu_s() - cpu0)
    return out


def bench(args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, topic_prefix=f"bench-{run}.")
    asyncio.run(topics_admin.apply(kafka))
    tmp = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    (tmp / "accounts.toml").write_text(ACCOUNTS_TOML)
    report: dict[str, Any] = {"config": {"requests": args.requests, "concurrency": args.concurrency,
                                         "duration_s": args.duration, "rate": args.rate, "workers": args.workers,
                                         "bootstrap": args.bootstrap, "cpus": multiprocessing.cpu_count(),
                                         "load_before": os.getloadavg()[0]}, "ingress": {}}
    try:
        with Ingress(kafka, tmp / "accounts.toml", args.workers, dedup=True) as ingress:
            report["ingress"].update(_phases(args, ingress, run, ["webchat", "whatsapp", "whatsapp at rate"]))
        if args.privacy:
            report["privacy"] = privacy_ab(args, kafka, tmp, run)
            report["ingress"].update({f"{k} ({mode})": v for mode in ("plaintext", "sealed")
                                      for k, v in report["privacy"][mode].items()})
        with Ingress(kafka, tmp / "accounts.toml", args.workers, dedup=False) as ingress:
            found = _phases(args, ingress, run + "n", ["whatsapp", "whatsapp at rate"])
            report["ingress"].update({f"{k} (no dedup)": v for k, v in found.items()})
        report["raw_producer"] = asyncio.run(raw_producer(kafka, args.requests, args.concurrency, args.duration, run))
    finally:
        if not args.keep:  # whatever happened: a shared broker does not pile up partitions
            asyncio.run(topics_admin.delete_prefixed(kafka))
    ceiling = report["raw_producer"]["pairs"]
    report["ratios"] = {name: {"per_s_vs_pairs": round(r["per_s"] / ceiling["per_s"], 3),
                               "p50_vs_pairs": round(r["p50_ms"] / ceiling["p50_ms"], 2),
                               "p99_vs_pairs": round(r["p99_ms"] / ceiling["p99_ms"], 2),
                               "cpu_vs_pairs": round(r["cpu_us_per_req"] / ceiling["cpu_us_per_req"], 2)}
                        for name, r in report["ingress"].items() if "rate" not in name}
    return report


def render(report: dict[str, Any]) -> str:
    c = report["config"]
    lines = [(f"ingress benchmark: {c['requests']} requests max, {c['concurrency']} in flight (open loop: "
              f"{c['rate']:g}/s), {c['duration_s']} s max per phase, {c['workers']} ingress process(es), "
              f"{c['cpus']} CPUs (load {c['load_before']:.2f} before), broker {c['bootstrap']}"),
             f"{'':34} {'count':>7} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU us/req':>10}"]
    for name, r in report["ingress"].items():
        lines.append(f"{'ingress ' + name:34} {r['ok']:>7} {r['per_s']:>9} {r['p50_ms']:>8} "
                     f"{r['p99_ms']:>8} {r['max_ms']:>8} {r['cpu_us_per_req']:>10}   statuses {r['statuses']}")
    raw = report["raw_producer"]
    s, p, b, cp = raw["send_and_wait"], raw["pairs"], raw["batched"], raw["confluent_pairs"]
    lines.append(f"{'raw aiokafka send_and_wait (rec)':34} {s['records']:>7} {s['per_s']:>9} {s['p50_ms']:>8} "
                 f"{s['p99_ms']:>8} {s['max_ms']:>8}")
    lines.append(f"{'raw aiokafka pairs (raw+event)':34} {p['pairs']:>7} {p['per_s']:>9} {p['p50_ms']:>8} "
                 f"{p['p99_ms']:>8} {p['max_ms']:>8} {p['cpu_us_per_req']:>10}")
    lines.append(f"{'raw confluent-kafka pairs':34} {cp['pairs']:>7} {cp['per_s']:>9} {cp['p50_ms']:>8} "
                 f"{cp['p99_ms']:>8} {cp['max_ms']:>8} {cp['cpu_us_per_req']:>10}")
    lines.append(f"{'raw aiokafka batched (record)':34} {b['records']:>7} {b['per_s']:>9}")
    for name, r in report.get("privacy", {}).get("change", {}).items():
        lines.append(f"privacy, {name}: sealed vs plaintext, best of {report['privacy']['rounds']} alternated runs: "
                     f"{r['per_s_change_pct']:+.1f} % requests/s, CPU per request {r['cpu_us_per_req_plain']} -> "
                     f"{r['cpu_us_per_req_sealed']} us ({r['cpu_change_pct']:+.1f} %)")
    for name, r in report["ratios"].items():
        lines.append(f"ratio ingress {name} / raw aiokafka pairs: {r['per_s_vs_pairs']:.2f} of the rate, "
                     f"p50 x{r['p50_vs_pairs']}, p99 x{r['p99_vs_pairs']}, CPU per request x{r['cpu_vs_pairs']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=30000, help="requests per closed-loop phase (at most)")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight (closed loop)")
    ap.add_argument("--rate", type=float, default=1000.0, help="requests/s of the open-loop phase")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per phase (at most)")
    ap.add_argument("--warmup", type=int, default=500, help="requests before each measured phase")
    ap.add_argument("--workers", type=int, default=1, help="ingress processes on the port (SO_REUSEPORT)")
    ap.add_argument("--bootstrap", default=IngressSettings().kafka.bootstrap_servers)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark's topics")
    ap.add_argument("--privacy", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the web chat and WhatsApp phases with sealing off and on, alternated "
                         "(docs/PRIVACY.md)")
    ap.add_argument("--privacy-rounds", type=int, default=2, help="alternations of the privacy A/B")
    args = ap.parse_args(argv)
    logs.configure(LogSettings(level="WARNING"), service="bench")
    report = bench(args)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
