"""`parley bench streams`: the worker's whole chain against a raw aiokafka consume->produce loop.

Two measures, each taken for the worker and for the raw loop in the same run, on fresh topics:

* throughput: N MessageReceived are written to ``parley.messages`` first, then the processor
  starts; events/s = N / (last output's timestamp - first output's timestamp), so start-up
  (group join, table recovery) is not counted. The worker's chain is identity (with its
  re-key hop), threads, enrichment, routing (with its re-key hop) and, when installed, KPIs; its
  first output is the first re-keyed record, its last the last record on ``parley.conversations``.
* latency: messages are written at a steady rate (default: half the worker's throughput) while
  the processor runs; a message's latency is from its input record's timestamp to the last
  record it caused on ``parley.conversations`` (matched by correlation id), or for the raw loop
  to its copy on the sink topic. p50/p99 are reported.

Both processors run in a child process of their own (the driver would otherwise share their
event loop); the broker and the driver share the machine with them. Results print as a table
and, with ``--json PATH``, are written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from parley import topics_admin
from parley.settings import KafkaSettings, WorkerSettings
from schemas import topics
from schemas.codec import Codec
from schemas.events import derive_id, envelope, make
from streams import testing

APP_ID = "bench-streams"
SINK = topics.Topic("bench.raw-sink", "same as input", ("MessageReceived",), 12)
EXAMPLE_RULES = Path(__file__).resolve().parent.parent / "config" / "routing.example.toml"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result = asyncio.run(_run(args))
    _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parley bench streams", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--messages", type=int, default=10_000, help="messages for the throughput run")
    p.add_argument("--customers", type=int, default=1_000)
    p.add_argument("--agents", type=int, default=20, help="agents online per tenant")
    p.add_argument("--rate", type=float, default=0, help="messages/s for the latency run (0: half the worker's rate)")
    p.add_argument("--duration", type=float, default=20, help="seconds of paced input for the latency run")
    p.add_argument("--rules", default=str(EXAMPLE_RULES) if EXAMPLE_RULES.exists() else "")
    p.add_argument("--json", default="", help="write the results here")
    return p


# --- the run ---------------------------------------------------------------------------------

async def _run(args: argparse.Namespace) -> dict[str, Any]:
    tenants = ("acme", "globex")
    inputs = [*_agents(tenants, args.agents),
              *testing.traffic(args.messages, customers=args.customers, tenants=tenants, spacing_ms=1000)]
    out: dict[str, Any] = {"messages": args.messages, "customers": args.customers, "cpus": os.cpu_count()}
    raw = await _throughput(args, "raw", inputs)
    worker = await _throughput(args, "worker", inputs)
    rate = args.rate or max(10.0, round(worker["events_per_s"] / 2))
    paced = max(1, int(rate * args.duration))
    raw_lat = await _latency(args, "raw", rate, paced, tenants)
    worker_lat = await _latency(args, "worker", rate, paced, tenants)
    out.update({
        "raw": {**raw, **raw_lat}, "worker": {**worker, **worker_lat}, "latency_rate_per_s": rate,
        "throughput_ratio": round(worker["events_per_s"] / raw["events_per_s"], 4),
        "p99_latency_ratio": round(worker_lat["p99_ms"] / raw_lat["p99_ms"], 2) if raw_lat["p99_ms"] else None,
    })
    return out


async def _throughput(args: argparse.Namespace, kind: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    k = await _fresh_topics(args.bootstrap)
    await _produce(k, inputs)
    n = sum(1 for e in inputs if e["envelope"]["event_type"] == "MessageReceived")
    proc = _start(kind, k, args.rules)
    try:
        await _quiet(k, _final_topic(kind), first_timeout=180)
    finally:
        _stop(proc)
    first_topic = topics.internal_name(k.topic_prefix, APP_ID, topics.IDENTITY_BY_TENANT) if kind == "worker" \
        else topics.named(k.topic_prefix, SINK)
    first, _ = await _span(k, first_topic)
    _, last = await _span(k, topics.named(k.topic_prefix, _final_topic(kind)))
    secs = max(1e-3, (last - first) / 1000)
    return {"events_per_s": round(n / secs, 1), "throughput_seconds": round(secs, 2)}


async def _latency(args: argparse.Namespace, kind: str, rate: float, n: int,
                   tenants: tuple[str, ...]) -> dict[str, Any]:
    k = await _fresh_topics(args.bootstrap)
    await _produce(k, list(_agents(tenants, args.agents)))
    proc = _start(kind, k, args.rules)
    try:
        warm = testing.received("warmup", testing.identity("sms", "+33700000000"), "hello", testing.T0, n="warm")
        await _produce(k, [warm])
        await _quiet(k, _final_topic(kind), first_timeout=180, settle=2.0)
        msgs = list(testing.traffic(n, customers=args.customers, tenants=tenants, seed=11,
                                    start=testing.T0 + 3_600_000))
        await _produce(k, msgs, rate=rate)
        await _quiet(k, _final_topic(kind), settle=3.0)
    finally:
        _stop(proc)
    sent = {e["envelope"]["event_id"] for e in msgs}
    lat = await _latencies(k, kind, sent)
    lat.sort()
    return {"p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "latency_samples": len(lat),
            "latency_missing": len(sent) - len(lat)}


def _final_topic(kind: str) -> topics.Topic:
    return topics.CONVERSATIONS if kind == "worker" else SINK


# --- processes -------------------------------------------------------------------------------

def _start(kind: str, k: KafkaSettings, rules: str) -> mp.Process:
    ctx = mp.get_context("spawn")
    target = _worker_process if kind == "worker" else _raw_process
    proc = ctx.Process(target=target, args=(k.model_dump(mode="json"), rules), daemon=True)
    proc.start()
    return proc


def _stop(proc: mp.Process) -> None:
    proc.terminate()
    proc.join(30)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def _worker_process(kafka: dict[str, Any], rules: str) -> None:
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Faust's banner and progress, for the process's life
    from parley.logs import configure
    from streams import worker

    settings = WorkerSettings(kafka=KafkaSettings(**kafka), app_id=APP_ID, web_enabled=False, apply_topics=False,
                              data_dir=Path(tempfile.mkdtemp(prefix="parley-bench-")),
                              routing_file=Path(rules) if rules else None, auto_resolve_after_s=0)
    settings.log.level = "WARNING"
    configure(settings.log, service="bench-worker")
    worker.run(settings)


def _raw_process(kafka: dict[str, Any], _rules: str) -> None:
    asyncio.run(_raw_loop(KafkaSettings(**kafka)))


async def _raw_loop(k: KafkaSettings) -> None:
    """The ceiling: consume parley.messages, produce each record unchanged to the sink."""
    consumer = AIOKafkaConsumer(topics.named(k.topic_prefix, topics.MESSAGES), **k.client_kwargs(),
                                group_id=f"{k.topic_prefix}raw", auto_offset_reset="earliest")
    producer = AIOKafkaProducer(**k.client_kwargs(), acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    sink = topics.named(k.topic_prefix, SINK)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            futures = [await producer.send(sink, r.value, key=r.key) for recs in batch.values() for r in recs]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


# --- Kafka helpers ---------------------------------------------------------------------------

async def _fresh_topics(bootstrap: str) -> KafkaSettings:
    k = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    await topics_admin.apply(k, (*topics.ALL, SINK))
    return k


async def _produce(k: KafkaSettings, events: list[dict[str, Any]], rate: float = 0) -> None:
    codec = Codec()
    producer = AIOKafkaProducer(**k.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        start, futures = time.monotonic(), []
        for i, e in enumerate(events):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            topic = _input_topic(e)
            futures.append(await producer.send(topics.named(k.topic_prefix, topic), codec.encode(e),
                                               key=e["envelope"]["partition_key"].encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _input_topic(e: dict[str, Any]) -> topics.Topic:
    return topics.AGENT_STATUS if e["envelope"]["event_type"] == "AgentStatusChanged" else topics.MESSAGES


async def _end_offsets(k: KafkaSettings, name: str) -> int:
    consumer = AIOKafkaConsumer(name, **k.client_kwargs(), group_id=None)
    await consumer.start()
    try:
        parts = consumer.assignment()
        return sum((await consumer.end_offsets(list(parts))).values())
    finally:
        await consumer.stop()


async def _quiet(k: KafkaSettings, t: topics.Topic, first_timeout: float = 120, settle: float = 5.0) -> None:
    """Wait until the topic has records and has stopped growing for ``settle`` seconds."""
    name, deadline = topics.named(k.topic_prefix, t), time.monotonic() + first_timeout
    last, since = -1, time.monotonic()
    while True:
        await asyncio.sleep(0.5)
        n = await _end_offsets(k, name)
        if n != last:
            last, since = n, time.monotonic()
        elif n > 0 and time.monotonic() - since >= settle:
            return
        elif n == 0 and time.monotonic() > deadline:
            raise TimeoutError(f"nothing arrived on {name} within {first_timeout}s")


async def _records(k: KafkaSettings, name: str):
    consumer = AIOKafkaConsumer(name, **k.client_kwargs(), group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        parts = consumer.assignment()
        end = await consumer.end_offsets(list(parts))
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            for recs in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for r in recs:
                    yield r
    finally:
        await consumer.stop()


async def _span(k: KafkaSettings, name: str) -> tuple[int, int]:
    first, last = None, None
    async for r in _records(k, name):
        first = r.timestamp if first is None else min(first, r.timestamp)
        last = r.timestamp if last is None else max(last, r.timestamp)
    if first is None:
        raise RuntimeError(f"{name} is empty")
    return first, last


async def _latencies(k: KafkaSettings, kind: str, sent: set[str]) -> list[float]:
    codec = Codec()
    produced: dict[str, int] = {}
    async for r in _records(k, topics.named(k.topic_prefix, topics.MESSAGES)):
        produced[codec.decode(r.value)["envelope"]["event_id"]] = r.timestamp
    done: dict[str, int] = {}
    async for r in _records(k, topics.named(k.topic_prefix, _final_topic(kind))):
        env = codec.decode(r.value)["envelope"]
        cid = env["correlation_id"]
        if cid in sent:
            done[cid] = max(done.get(cid, 0), r.timestamp)
    return [float(done[i] - produced[i]) for i in done if i in produced]


def _pct(values: list[float], p: int) -> float:
    if not values:
        return 0.0
    if len(values) < 2:
        return values[0]
    return round(statistics.quantiles(values, n=100, method="inclusive")[p - 1], 1)


def _agents(tenants: tuple[str, ...], n: int) -> list[dict[str, Any]]:
    out = []
    for tenant in tenants:
        for i in range(n):
            env = envelope("AgentStatusChanged", event_id=derive_id(tenant, "bench-agent", i),
                           occurred_at=testing.T0 - 3_600_000, tenant_id=tenant, partition_key=tenant,
                           producer="bench")
            out.append(make("AgentStatusChanged", env, agent_id=f"agent-{i}", presence="online", capacity=5,
                            skills=["billing", "vip", "escalation"] if i % 4 == 0 else [],
                            languages=["fr", "en"]))
    return out


def _print(r: dict[str, Any]) -> None:
    w, raw = r["worker"], r["raw"]
    print(f"parley bench streams: {r['messages']} messages, {r['customers']} customers, {r['cpus']} CPUs")
    print(f"{'':24}{'worker':>12}{'raw loop':>12}{'ratio':>10}")
    print(f"{'throughput (events/s)':24}{w['events_per_s']:>12}{raw['events_per_s']:>12}{r['throughput_ratio']:>10}")
    print(f"{'latency p50 (ms)':24}{w['p50_ms']:>12}{raw['p50_ms']:>12}")
    print(f"{'latency p99 (ms)':24}{w['p99_ms']:>12}{raw['p99_ms']:>12}{r['p99_latency_ratio'] or '-':>10}")
    print(f"latency at {r['latency_rate_per_s']} messages/s; samples worker {w['latency_samples']} "
          f"(missing {w['latency_missing']}), raw {raw['latency_samples']} (missing {raw['latency_missing']})")


if __name__ == "__main__":
    sys.exit(main())
