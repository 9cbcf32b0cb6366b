"""`parley bench ingress`: webhook requests/s and request->ack latency beside the raw producer.

Usage: python bench/ingress.py [--requests N] [--concurrency C] [--duration S] [--json PATH]

Under a fresh topic prefix on the configured broker, in one run:

* ``ingress``: the real service (``adapters.app.serve``) in a child process on loopback, with a
  webchat account (and a WhatsApp one, signed like Meta signs, when that adapter loads). An
  aiohttp client keeps C requests in flight until N requests or S seconds, each a new message;
  latency is request sent -> response read, and the response is only sent after Kafka
  acknowledged the raw record and the event (acks=all, idempotent producer).
* ``raw producer`` (the ceiling), same broker, same topics, same producer settings, records of
  the same size: ``send_and_wait`` one record at a time; ``pairs`` = C tasks each producing a
  raw record and an event and awaiting both (exactly the ingress's Kafka work per request,
  without HTTP, verification, parsing or encoding); ``batched`` = every record sent, then all
  acks awaited.

Ratios compare the ingress to the ``pairs`` ceiling. The topics are deleted afterwards unless
``--keep``. Exposed as ``main(argv)`` for the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from parley import logs, topics_admin
from parley.settings import IngressSettings, KafkaSettings, LogSettings
from schemas import topics
from schemas.codec import Codec
from schemas.events import derive_id, envelope, make

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


def raw_pair(i: int, run: str, raw_topic: str, messages_topic: str) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of a RawRequest and a MessageReceived like the ingress writes."""
    codec = Codec()
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
    return [(raw_topic, b"bench|webchat|bench-web", codec.encode(raw)),
            (messages_topic, key.encode(), codec.encode(msg))]


# -- the ingress in a child process ------------------------------------------------------------

def _serve(settings: IngressSettings) -> None:
    from adapters.app import serve

    serve(settings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_ready(base: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the ingress did not become ready")


async def drive(base: str, build, n: int, concurrency: int, duration_s: float, run: str) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight until ``n`` are done or ``duration_s`` elapsed."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(n))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as http:
        t0 = time.perf_counter()
        stop_at = t0 + duration_s

        async def worker() -> None:
            for i in counter:
                if time.perf_counter() > stop_at:
                    return
                path, body, headers = build(i, run)
                t = time.perf_counter()
                async with http.post(path, data=body, headers=headers) as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - t)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    ok = statuses.get(200, 0)
    return {"requests": len(latencies), "ok": ok, "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "seconds": round(elapsed, 3), "per_s": round(ok / elapsed, 1), **_percentiles(latencies)}


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 2), "p90_ms": round(q[89] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "max_ms": round(max(latencies) * 1000, 2)}


# -- the raw producer ceiling -------------------------------------------------------------------

async def raw_producer(kafka: KafkaSettings, n: int, concurrency: int, duration_s: float, run: str) -> dict[str, Any]:
    raw_topic = topics.named(kafka.topic_prefix, topics.RAW_INGRESS)
    msg_topic = topics.named(kafka.topic_prefix, topics.MESSAGES)
    pairs = [raw_pair(i, run, raw_topic, msg_topic) for i in range(n)]
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    try:
        await producer.send_and_wait(*_args(pairs[0][0]))  # metadata and producer id out of the way
        out = {"send_and_wait": await _sequential(producer, [r for p in pairs for r in p][:n], duration_s)}
        out["pairs"] = await _pairs(producer, pairs, concurrency, duration_s)
        t0 = time.perf_counter()
        futures = [await producer.send(*_args(r)) for p in pairs for r in p]
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - t0
        out["batched"] = {"records": len(futures), "seconds": round(elapsed, 3),
                          "per_s": round(len(futures) / elapsed, 1)}
        return out
    finally:
        await producer.stop()


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
    latencies: list[float] = []
    it = iter(pairs)
    t0 = time.perf_counter()

    async def worker() -> None:
        for pair in it:
            if time.perf_counter() - t0 > duration_s:
                return
            t = time.perf_counter()
            futures = [await producer.send(*_args(r)) for r in pair]
            await asyncio.gather(*futures)
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"pairs": len(latencies), "seconds": round(elapsed, 3), "per_s": round(len(latencies) / elapsed, 1),
            **_percentiles(latencies)}


# -- the run ------------------------------------------------------------------------------------

async def _delete_topics(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        await admin.delete_topics([topics.named(kafka.topic_prefix, t) for t in topics.ALL])
    finally:
        await admin.close()


def bench(args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, topic_prefix=f"bench-{run}.")
    asyncio.run(topics_admin.apply(kafka))
    tmp = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    (tmp / "accounts.toml").write_text(ACCOUNTS_TOML)
    port = _free_port()
    settings = IngressSettings(host="127.0.0.1", port=port, accounts_file=tmp / "accounts.toml", kafka=kafka,
                               log=LogSettings(level="WARNING", format="json"))
    child = multiprocessing.get_context("spawn").Process(target=_serve, args=(settings,), daemon=True)
    child.start()
    base = f"http://127.0.0.1:{port}"
    report: dict[str, Any] = {"config": {"requests": args.requests, "concurrency": args.concurrency,
                                         "duration_s": args.duration, "bootstrap": args.bootstrap,
                                         "cpus": multiprocessing.cpu_count()}, "ingress": {}}
    try:
        asyncio.run(_wait_ready(base))
        phases = {"webchat": webchat_request}
        if _loads("whatsapp"):
            phases["whatsapp"] = whatsapp_request
        for name, build in phases.items():
            asyncio.run(drive(base, build, args.warmup, args.concurrency, args.duration, f"warm-{name}-{run}"))
            report["ingress"][name] = asyncio.run(
                drive(base, build, args.requests, args.concurrency, args.duration, f"{name}-{run}"))
    finally:
        child.terminate()
        child.join(15)
        if child.is_alive():
            child.kill()
    report["raw_producer"] = asyncio.run(raw_producer(kafka, args.requests, args.concurrency, args.duration, run))
    ceiling = report["raw_producer"]["pairs"]
    report["ratios"] = {name: {"per_s_vs_pairs": round(r["per_s"] / ceiling["per_s"], 3),
                               "p50_vs_pairs": round(r["p50_ms"] / ceiling["p50_ms"], 2),
                               "p99_vs_pairs": round(r["p99_ms"] / ceiling["p99_ms"], 2),
                               "per_s_vs_batched_records_over_2": round(
                                   2 * r["per_s"] / report["raw_producer"]["batched"]["per_s"], 3)}
                        for name, r in report["ingress"].items()}
    if not args.keep:
        asyncio.run(_delete_topics(kafka))
    return report


def _loads(adapter: str) -> bool:
    from adapters.channels import AdapterUnavailable, Registry

    try:
        Registry().get(adapter)
        return True
    except (KeyError, AdapterUnavailable):
        return False


def render(report: dict[str, Any]) -> str:
    c = report["config"]
    lines = [(f"ingress benchmark: {c['requests']} requests max, {c['concurrency']} in flight, "
              f"{c['duration_s']} s max per phase, {c['cpus']} CPUs, broker {c['bootstrap']}"),
             f"{'':28} {'count':>7} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for name, r in report["ingress"].items():
        lines.append(f"{'ingress ' + name + ' (req)':28} {r['ok']:>7} {r['per_s']:>9} {r['p50_ms']:>8} "
                     f"{r['p99_ms']:>8} {r['max_ms']:>8}   statuses {r['statuses']}")
    raw = report["raw_producer"]
    s, p, b = raw["send_and_wait"], raw["pairs"], raw["batched"]
    lines.append(f"{'raw send_and_wait (record)':28} {s['records']:>7} {s['per_s']:>9} {s['p50_ms']:>8} "
                 f"{s['p99_ms']:>8} {s['max_ms']:>8}")
    lines.append(f"{'raw pairs (raw+event)':28} {p['pairs']:>7} {p['per_s']:>9} {p['p50_ms']:>8} "
                 f"{p['p99_ms']:>8} {p['max_ms']:>8}")
    lines.append(f"{'raw batched (record)':28} {b['records']:>7} {b['per_s']:>9}")
    for name, r in report["ratios"].items():
        lines.append(f"ratio {name}: {r['per_s_vs_pairs']:.1%} of the pairs rate, p50 x{r['p50_vs_pairs']}, "
                     f"p99 x{r['p99_vs_pairs']} the pairs latency; {r['per_s_vs_batched_records_over_2']:.1%} "
                     f"of the batched rate (2 records per request)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000, help="requests per phase (at most)")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per phase (at most)")
    ap.add_argument("--warmup", type=int, default=200, help="requests before each measured phase")
    ap.add_argument("--bootstrap", default=IngressSettings().kafka.bootstrap_servers)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark's topics")
    args = ap.parse_args(argv)
    logs.configure(LogSettings(level="WARNING"), service="bench")
    report = bench(args)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
