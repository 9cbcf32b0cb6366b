"""`parley bench streams`: the worker's whole chain beside raw consume->produce loops, one run.

Every measure is taken in the same run, on fresh topics of the broker at ``--bootstrap``:

* **throughput**: N customer messages (plus agents) are written to ``parley.messages`` first,
  then the processor starts in a child process of its own; events/s = N / (timestamp of the
  last output - timestamp of the first output). For the worker the first output is the first
  re-keyed record (``parley.conversation.messages``) and the last the last record of the whole
  chain (``parley.conversations``, with routing's decisions republished there,
  ``parley.identity.events`` and the KPI topics), once the worker has written nothing more
  for 3 s; so start-up (group join, restore) is not counted and the tail of the chain is. Baselines: a raw
  aiokafka loop (consume, produce each record unchanged, commit: the Python ceiling of the
  old stack) and a raw confluent-kafka loop in Kafka transactions (the ceiling of this one).
* **stage ceilings**: each stage's own task, fed in this process the records the worker's run
  gave it (decode, logic, encode; no Kafka): records/s and CPU µs per input message, under the
  worker's garbage-collector settings (``parley.gc_tuning``).
* **records per message**: everything the worker wrote (outputs, changelogs, internal topics,
  watermarks) / N, and the Kafka hops a message takes to its last output.
* **latency**: messages written at a steady rate (default: half the worker's throughput), event
  time = the time written; per message, from its input record's timestamp to its last output
  on ``parley.conversations`` (p50/p99), both for its own outputs (threaded message, enrichment)
  and for everything it caused (thread start, routing decision, assignment).
* **privacy** (``--privacy``, on by default): the same messages sealed as the ingress seals them
  (docs/PRIVACY.md), through the same worker with a key store, right after the plaintext run
  of the first guarantee, then ``--privacy-rounds`` - 1 more plaintext/sealed pairs: the cost of
  the encryption in events/s (best of each), and in the stage ceilings
  (CPU us per message, each stage fed both runs' inputs alternately, best of 3: the
  conversations stage opens each text to enrich it, every stage reads larger records).
* ``--peer``: also runs the Quix Streams peer (``../shared/peers/run.sh``) and prints its figures.

Results print as a table; ``--json PATH`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from parley import gc_tuning
from parley.app.synthetic import events as synthetic
from parley.settings import KafkaSettings, PrivacySettings, WorkerSettings
from schemas import topics
from schemas.codec import Codec, codec_for
from schemas.events import derive_id, envelope, make

APP_ID = "bench-streams"
SINK = topics.Topic("bench.raw-sink", "same as input", ("MessageReceived",), 12)
ROOT = Path(__file__).resolve().parents[3]  # the checkout
EXAMPLE_RULES = ROOT / "config" / "routing.example.toml"
PEER = ROOT.parent / "shared" / "peers" / "run.sh"
OWN = frozenset({"MessageReceived", "MessageEnriched"})
# the chain's outputs: a throughput run ends with the last record on any of them (the messages'
# own outputs, what routing decided about them, the identity graph's and the KPI stage's)
CHAIN_OUTPUTS = (topics.CONVERSATIONS, topics.IDENTITY, topics.KPI_CONTACTS, topics.KPI_INTERVALS)



def _codec(k: KafkaSettings) -> Codec:
    """The codec of the measured processes: registry ids when ``k`` names a registry."""
    codec = codec_for(k)
    codec.prepare()  # once: later calls register nothing new
    return codec

def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result = run(args)
    print_result(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parley bench streams", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--messages", type=int, default=20_000, help="messages for the throughput runs")
    p.add_argument("--customers", type=int, default=1_000)
    p.add_argument("--tenants", type=int, default=1, help="tenants the traffic is spread over")
    p.add_argument("--agents", type=int, default=20, help="agents online per tenant")
    p.add_argument("--guarantees", default="exactly_once,at_least_once")
    p.add_argument("--processes", default=f"1,{os.cpu_count() or 1}",
                   help="worker processes to measure, comma-separated (PARLEY_PROCESSES); the worker's other "
                        "settings come from the environment, e.g. PARLEY_LATENESS_MS")
    p.add_argument("--rate", type=float, default=0, help="messages/s for the latency run (0: half the worker's)")
    p.add_argument("--duration", type=float, default=20, help="seconds of paced input for the latency run")
    p.add_argument("--rules", default=str(EXAMPLE_RULES) if EXAMPLE_RULES.exists() else "")
    p.add_argument("--peer", action="store_true", help="also run the Quix Streams peer (../shared/peers)")
    p.add_argument("--privacy", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the worker on the same messages sealed (docs/PRIVACY.md), in the same run")
    p.add_argument("--privacy-rounds", type=int, default=2,
                   help="plaintext/sealed pairs of worker runs, alternated; the best of each is compared")
    p.add_argument("--json", default="", help="write the results here")
    return p


# --- the run ---------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    tenants = tuple(["acme", "globex", "initech", "umbrella"][: max(1, args.tenants)])
    inputs = [*agents(tenants, args.agents),
              *synthetic.traffic(args.messages, customers=args.customers, tenants=tenants, spacing_ms=1000)]
    out: dict[str, Any] = {"messages": args.messages, "customers": args.customers, "tenants": len(tenants),
                           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}
    out["raw_aiokafka"] = throughput(args, "raw_aiokafka", inputs)
    out["raw_confluent_txn"] = throughput(args, "raw_confluent_txn", inputs)
    guarantees = [g.strip() for g in args.guarantees.split(",") if g.strip()]
    counts = sorted({max(1, int(c)) for c in args.processes.split(",") if c.strip()})
    for g in guarantees:
        out[f"worker_{g}"] = throughput(args, "worker", inputs, guarantee=g, ceilings=g == guarantees[0])
        for c in counts[1:] if g == guarantees[0] else ():
            out[f"worker_{g}_x{c}"] = throughput(args, "worker", inputs, guarantee=g, processes=c)
        if args.privacy and g == guarantees[0]:  # the same messages sealed, right after: the cost of privacy
            privacy = bench_privacy()
            sealed, out["privacy_seal"] = seal_inputs(inputs, privacy)
            out[f"worker_{g}_sealed"] = throughput(args, "worker", sealed, guarantee=g, ceilings=True,
                                                   privacy=privacy)
            more = [[throughput(args, "worker", inputs, guarantee=g)["events_per_s"],
                     throughput(args, "worker", sealed, guarantee=g, privacy=privacy)["events_per_s"]]
                    for _ in range(args.privacy_rounds - 1)]  # alternated: a shared machine's load moves
            out["privacy_cost"] = privacy_cost(out[f"worker_{g}"], out[f"worker_{g}_sealed"], args, privacy, more)
    main_g = f"worker_{guarantees[0]}"
    rate = args.rate or max(10.0, round(out[main_g]["events_per_s"] / 2))
    out["latency_rate_per_s"] = rate
    out["latency_raw"] = latency(args, "raw_confluent_txn", rate, tenants)
    out["latency_worker"] = latency(args, "worker", rate, tenants, guarantee=guarantees[0])
    if args.peer:
        out["peer"] = peer(args)
    out["loadavg_end"] = os.getloadavg()[0]
    for v in out.values():
        if isinstance(v, dict):
            v.pop("_inputs", None)  # records, kept only for the privacy A/B
    return out


def throughput(args: argparse.Namespace, kind: str, inputs: list[dict[str, Any]], guarantee: str = "",
               ceilings: bool = False, privacy: PrivacySettings | None = None, processes: int = 1) -> dict[str, Any]:
    k = fresh_topics(args.bootstrap)
    try:
        produce(k, inputs)
        n = sum(1 for e in inputs if e["envelope"]["event_type"] == "MessageReceived")
        proc = start(kind, k, args.rules, guarantee, privacy, processes)
        try:
            final = topics.CONVERSATIONS if kind == "worker" else SINK
            wait_for(k, final, n, lambda v: kind != "worker" or v["envelope"]["event_type"] == "MessageEnriched",
                     timeout=600)
            if kind == "worker":  # and what the messages caused: routing's decisions, the KPIs
                wait_quiet(k, CHAIN_OUTPUTS)
        finally:
            stop(proc)
        first_topic = topics.CONVERSATION_MESSAGES if kind == "worker" else SINK
        first = min(ts for ts, _ in records(k, first_topic, decode=False))
        last = max(ts for t in (CHAIN_OUTPUTS if kind == "worker" else (SINK,))
                   for ts, _ in records(k, t, decode=False))
        secs = max(1e-3, (last - first) / 1000)
        result: dict[str, Any] = {"events_per_s": round(n / secs), "seconds": round(secs, 2)}
        if kind == "worker":
            written = records_written(k)
            result["records_written_per_message"] = round(sum(written.values()) / n, 2)
            result["records_written"] = written
            if ceilings:
                result["_inputs"] = stage_inputs(k, args.rules)  # kept for the A/B below; not in the JSON
                result["stage_ceilings"] = stage_ceilings(k, args.rules, n, privacy, result["_inputs"])
        return result
    finally:
        drop(k)


def latency(args: argparse.Namespace, kind: str, rate: float, tenants: tuple[str, ...],
            guarantee: str = "exactly_once") -> dict[str, Any]:
    k = fresh_topics(args.bootstrap)
    try:
        now = int(time.time() * 1000)
        produce(k, agents(tenants, args.agents, at=now - 60_000))
        proc = start(kind, k, args.rules, guarantee)
        try:
            warm = synthetic.received(tenants[0], synthetic.identity("sms", "+33700000000"), "hello", now, n="warm")
            produce(k, [warm])
            wait_for(k, topics.CONVERSATIONS if kind == "worker" else SINK, 1, lambda v: True, timeout=180)
            n = max(1, int(rate * args.duration))
            start_at = int(time.time() * 1000) + 500
            msgs = list(synthetic.traffic(n, customers=args.customers, tenants=tenants, seed=11, start=start_at,
                                        spacing_ms=1000 / rate))
            produce(k, msgs, rate=rate)
            wait_for(k, topics.CONVERSATIONS if kind == "worker" else SINK, len(msgs) + 1,
                     lambda v: kind != "worker" or v["envelope"]["event_type"] == "MessageEnriched", timeout=300)
            wait_quiet(k, (topics.CONVERSATIONS if kind == "worker" else SINK,))  # what they caused too
        finally:
            stop(proc)
        sent = {e["envelope"]["event_id"] for e in msgs}
        codec = _codec(k)
        produced = {codec.decode(v)["envelope"]["event_id"]: ts for ts, v in records(k, topics.MESSAGES, decode=False)}
        own: dict[str, int] = {}
        caused: dict[str, int] = {}
        for ts, v in records(k, topics.CONVERSATIONS if kind == "worker" else SINK, decode=False):
            env = codec.decode(v)["envelope"]
            cid = env["correlation_id"]
            if cid in sent:
                caused[cid] = max(caused.get(cid, 0), ts)
                if env["event_type"] in OWN:
                    own[cid] = max(own.get(cid, 0), ts)
        own_ms = sorted(float(own[i] - produced[i]) for i in own if i in produced)
        all_ms = sorted(float(caused[i] - produced[i]) for i in caused if i in produced)
        return {"rate_per_s": rate, "messages": len(msgs), "samples": len(own_ms),
                "p50_ms": pct(own_ms, 50), "p99_ms": pct(own_ms, 99),
                "p50_all_ms": pct(all_ms, 50), "p99_all_ms": pct(all_ms, 99)}
    finally:
        drop(k)


# --- stage ceilings --------------------------------------------------------------------------

def stage_ceilings(k: KafkaSettings, rules: str, n: int, privacy: PrivacySettings | None = None,
                   inputs: dict[str, list[Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Each stage's task fed, in this process, the records the worker's run gave it (read from
    the run's topics, or ``inputs``: stage name -> records, as ``stage_inputs`` reads them)."""
    from streams import topology

    settings = _ceiling_settings(k, rules, privacy)
    inputs = inputs if inputs is not None else stage_inputs(k, rules)
    with gc_tuning.tuned():  # the worker's collector settings: the defaults would cost ~15 % more here
        return _ceilings(topology.build(settings), inputs, n)


def _ceilings(stages: list[Any], inputs: dict[str, list[Any]], n: int) -> dict[str, dict[str, Any]]:
    from streams.runtime.sequencer import POS_INF
    from streams.runtime.task import Env, Task

    out = {}
    for stage in stages:
        recs = inputs.get(stage.name) or []
        if not recs:
            continue
        task = Task(stage, 0, Env(codec_for(), {}, lateness_ms=POS_INF // 4, idle_ms=0))
        task.start({})
        t0, c0 = time.perf_counter(), time.process_time()
        for off, rec in enumerate(recs):
            task.feed(rec._replace(offset=off), now=0.0)
            if off % 500 == 499:
                task.advance({}, now=0.0)
                task.finish()
        for clock in task.clocks.values():
            clock.caught_up = True
        task.advance({}, now=1.0)
        task.finish()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[stage.name] = {"records": len(recs), "records_per_s": round(len(recs) / wall),
                           "messages_per_s": round(n / wall), "cpu_us_per_message": round(cpu * 1e6 / n, 1)}
    return out


def _ceiling_settings(k: KafkaSettings, rules: str, privacy: PrivacySettings | None) -> WorkerSettings:
    return WorkerSettings(kafka=k, app_id=APP_ID, routing_file=Path(rules) if rules else None,
                          auto_resolve_after_s=0, privacy=privacy or PrivacySettings())


def stage_inputs(k: KafkaSettings, rules: str) -> dict[str, list[Any]]:
    """Every stage's input records of the run (stage name -> records), read from its topics."""
    from streams import topology
    from streams.runtime.task import Record
    from streams.runtime.worker import Names

    names = Names(k.topic_prefix, APP_ID)
    return {stage.name: [Record(i.topic.name, 0, off, key, value) for i in stage.inputs
                         for off, (key, value) in enumerate(raw_records(k, names.topic(i.topic.name)))]
            for stage in topology.build(_ceiling_settings(k, rules, None))}


# --- processes -------------------------------------------------------------------------------

def start(kind: str, k: KafkaSettings, rules: str, guarantee: str,
          privacy: PrivacySettings | None = None, processes: int = 1) -> BaseProcess:
    ctx = mp.get_context("spawn")
    targets: dict[str, Callable[..., None]] = {"worker": worker_process, "raw_aiokafka": raw_aiokafka_process,
                                               "raw_confluent_txn": raw_confluent_process}
    target = targets[kind]
    extra: tuple[Any, ...] = (_privacy_dict(privacy),) if privacy is not None else ()
    if processes > 1:
        extra = (extra[0] if extra else None, processes)
    # a daemonic process may not have children: the worker with several processes is not one
    proc = ctx.Process(target=target, args=(k.model_dump(mode="json"), rules, guarantee, *extra), daemon=processes == 1)
    proc.start()
    return proc


def stop(proc: BaseProcess) -> None:
    proc.terminate()
    proc.join(30)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def worker_process(kafka: dict[str, Any], rules: str, guarantee: str, privacy: dict[str, Any] | None = None,
                   processes: int = 1) -> None:
    from streams.runtime import worker

    settings = WorkerSettings(kafka=KafkaSettings(**kafka), app_id=APP_ID, apply_topics=False,
                              routing_file=Path(rules) if rules else None, auto_resolve_after_s=0,
                              processing_guarantee=guarantee or "exactly_once", instance_id="bench",
                              processes=processes,
                              privacy=PrivacySettings(**privacy) if privacy else PrivacySettings())
    settings.log.level = "WARNING"
    worker.run(settings)


def raw_aiokafka_process(kafka: dict[str, Any], _rules: str, _g: str) -> None:
    """The old stack's ceiling: consume parley.messages, produce each record unchanged, commit."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def loop() -> None:
        k = KafkaSettings(**kafka)
        consumer = AIOKafkaConsumer(topics.named(k.topic_prefix, topics.MESSAGES), **k.client_kwargs(),
                                    group_id=f"{k.topic_prefix}raw", auto_offset_reset="earliest")
        producer = AIOKafkaProducer(**k.client_kwargs(), acks="all", enable_idempotence=True)
        await consumer.start()
        await producer.start()
        sink = topics.named(k.topic_prefix, SINK)
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            futures = [await producer.send(sink, r.value, key=r.key) for recs in batch.values() for r in recs]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()

    asyncio.run(loop())


def raw_confluent_process(kafka: dict[str, Any], _rules: str, _g: str) -> None:
    """This stack's ceiling: consume, produce each record unchanged, commit offsets in a Kafka
    transaction every 50 ms (what the worker does, minus all the work)."""
    k = KafkaSettings(**kafka)
    c = Consumer(k.librdkafka_config(**{"group.id": f"{k.topic_prefix}rawc", "auto.offset.reset": "earliest",
                                        "enable.auto.commit": False, "isolation.level": "read_committed"}))
    c.subscribe([topics.named(k.topic_prefix, topics.MESSAGES)])
    p = Producer(k.librdkafka_config(**{"transactional.id": f"{k.topic_prefix}rawc", "linger.ms": 2,
                                        "retry.backoff.ms": 5, "partitioner": "murmur2_random"}))
    p.init_transactions()
    sink = topics.named(k.topic_prefix, SINK)
    opened = None
    while True:
        msgs = c.consume(5000, 0.02)
        for m in msgs:
            if m.error() is None:
                if opened is None:
                    p.begin_transaction()
                    opened = time.monotonic()
                while True:
                    try:
                        p.produce(sink, m.value(), m.key())
                        break
                    except BufferError:
                        p.poll(0.01)
        if opened is not None and time.monotonic() - opened >= 0.05:
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata())
            p.commit_transaction()
            opened = None


def peer(args: argparse.Namespace) -> dict[str, Any]:
    """The Quix Streams peer's own run (its virtualenv, its topics), parsed from its JSON."""
    if not PEER.exists():
        return {"error": f"{PEER} not found"}
    out = Path(tempfile.mkdtemp(prefix="parley-peer-")) / "peer.json"
    proc = subprocess.run(["bash", str(PEER), "--bootstrap", args.bootstrap, "--n", str(args.messages),
                           "--json", str(out)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0 or not out.exists():
        return {"error": proc.stderr[-2000:]}
    return json.loads(out.read_text())


# --- privacy ---------------------------------------------------------------------------------

def bench_privacy() -> PrivacySettings:
    """A master key and a key store of its own for this run (SQLite in a temporary directory)."""
    from pydantic import SecretStr

    from parley.privacy.crypto import new_master_key

    keys = Path(tempfile.mkdtemp(prefix="parley-bench-keys-")) / "keys.db"
    return PrivacySettings(enabled=True, master_key=SecretStr(new_master_key()), keys_url=f"sqlite:///{keys}")


def _privacy_dict(p: PrivacySettings) -> dict[str, Any]:
    return {**p.model_dump(mode="json"), "master_key": p.master_key.get_secret_value() if p.master_key else None,
            "previous_master_keys": [], "admin_tokens": []}


def seal_inputs(inputs: list[dict[str, Any]], privacy: PrivacySettings) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages sealed as the ingress seals them, and what that cost here (CPU per message,
    the key store's first key of each customer and day included)."""
    from adapters.sealing import Sealer
    from parley.privacy.keyring import Keyring

    sealer = Sealer(Keyring(privacy))
    c0 = time.process_time()
    out = [sealer.message(e) if e["envelope"]["event_type"] == "MessageReceived" else e for e in inputs]
    n = sum(1 for e in inputs if e["envelope"]["event_type"] == "MessageReceived")
    cpu = time.process_time() - c0
    c1 = time.process_time()
    for e in inputs[:2000]:  # again, every key now in the cache: the steady state of an ingress
        if e["envelope"]["event_type"] == "MessageReceived":
            sealer.message(e)
    warm_n = sum(1 for e in inputs[:2000] if e["envelope"]["event_type"] == "MessageReceived")
    return out, {"messages": n, "cpu_us_per_message": round(cpu * 1e6 / max(1, n), 1),
                 "cpu_us_per_message_cached_keys": round((time.process_time() - c1) * 1e6 / max(1, warm_n), 1)}


def privacy_cost(plain: dict[str, Any], sealed: dict[str, Any], args: argparse.Namespace,
                 privacy: PrivacySettings, more: Sequence[list[float]] = (), rounds: int = 3) -> dict[str, Any]:
    """Sealed vs plaintext, same run: the throughput ratio (the best of each over the first pair of
    worker runs and the ``more`` pairs after it, alternated), and the stages' CPU per message
    measured A/B: each stage fed the plaintext run's inputs and the sealed run's, alternately,
    ``rounds`` times, the least CPU of each kept (a shared machine's load moves between runs)."""
    runs = [[plain["events_per_s"], sealed["events_per_s"]], *more]
    best_plain, best_sealed = max(r[0] for r in runs), max(r[1] for r in runs)
    out: dict[str, Any] = {"events_per_s_plain": best_plain, "events_per_s_sealed": best_sealed,
                           "throughput_change_pct": round(100 * (best_sealed / best_plain - 1), 1),
                           "worker_runs": runs}
    a_in, b_in = plain.pop("_inputs", None), sealed.pop("_inputs", None)
    if a_in is None or b_in is None:
        return out
    k, n = KafkaSettings(bootstrap_servers=args.bootstrap), args.messages
    best: list[dict[str, dict[str, Any]]] = [{}, {}]
    for _ in range(rounds):
        for i, (inputs, p) in enumerate(((a_in, None), (b_in, privacy))):
            for name, v in stage_ceilings(k, args.rules, n, p, inputs).items():
                if name not in best[i] or v["cpu_us_per_message"] < best[i][name]["cpu_us_per_message"]:
                    best[i][name] = v
    a, b = best
    cpu_a = sum(v["cpu_us_per_message"] for v in a.values())
    cpu_b = sum(v["cpu_us_per_message"] for v in b.values())
    if cpu_a:
        out["stages_cpu_us_per_message_plain"] = round(cpu_a, 1)
        out["stages_cpu_us_per_message_sealed"] = round(cpu_b, 1)
        out["stages_cpu_change_pct"] = round(100 * (cpu_b / cpu_a - 1), 1)
        out["per_stage_cpu_us"] = {name: [a[name]["cpu_us_per_message"], b.get(name, {}).get("cpu_us_per_message")]
                                   for name in a}
    return out


# --- Kafka helpers ---------------------------------------------------------------------------

def fresh_topics(bootstrap: str) -> KafkaSettings:
    import asyncio

    from parley import topics_admin

    k = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    asyncio.run(topics_admin.apply(k, (*topics.ALL, SINK)))
    return k


def drop(k: KafkaSettings) -> None:
    import asyncio

    from parley import topics_admin

    try:
        asyncio.run(topics_admin.delete_prefixed(k))
    except Exception as e:  # noqa: BLE001 - cleanup only
        print(f"could not delete {k.topic_prefix}* topics: {e}", file=sys.stderr)


def produce(k: KafkaSettings, events: list[dict[str, Any]], rate: float = 0) -> None:
    p = Producer(k.librdkafka_config(**{"linger.ms": 5, "acks": "all", "enable.idempotence": True,
                                        "partitioner": "murmur2_random"}))
    codec = _codec(k)
    t0 = time.monotonic()
    for i, e in enumerate(events):
        if rate:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        t = topics.AGENT_STATUS if e["envelope"]["event_type"] == "AgentStatusChanged" else topics.MESSAGES
        while True:
            try:
                p.produce(topics.named(k.topic_prefix, t), codec.encode(e, t.name),
                          e["envelope"]["partition_key"].encode())
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    assert p.flush(60) == 0


def raw_records(k: KafkaSettings, name: str) -> list[tuple[bytes | None, bytes]]:
    return [(key, value) for _, key, value in _read(k, name)]


def records(k: KafkaSettings, t: topics.Topic, decode: bool = True) -> list[tuple[int, Any]]:
    """(timestamp, value) of every committed record of a catalogue topic."""
    codec = _codec(k)
    return [(ts, codec.decode(v) if decode else v) for ts, _, v in _read(k, topics.named(k.topic_prefix, t))]


def _read(k: KafkaSettings, name: str) -> list[tuple[int, bytes | None, bytes]]:
    c = Consumer(k.librdkafka_config(**{"group.id": "bench-reader", "enable.auto.commit": False,
                                        "isolation.level": "read_committed", "enable.partition.eof": True}))
    try:
        md = c.list_topics(name, timeout=10).topics.get(name)
        if md is None or md.error is not None:
            return []
        parts = {p for p in md.partitions if c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] > 0}
        c.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in parts])
        out = []
        while parts:
            for m in c.consume(10_000, 1.0):
                error, value = m.error(), m.value()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        parts.discard(m.partition())
                    continue
                if value is not None:
                    out.append((m.timestamp()[1], m.key(), value))
        return out
    finally:
        c.close()


def records_written(k: KafkaSettings) -> dict[str, int]:
    """Records (offsets, with transaction markers) in every topic of the run, inputs aside."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(k.librdkafka_config())
    c = Consumer(k.librdkafka_config(**{"group.id": "bench-counter"}))
    try:
        out = {}
        inputs = {topics.named(k.topic_prefix, t) for t in (topics.MESSAGES, topics.AGENT_STATUS)}
        for name, md in admin.list_topics(timeout=10).topics.items():
            if not name.startswith(k.topic_prefix) or name in inputs:
                continue
            total = sum(c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in md.partitions)
            if total:
                out[name[len(k.topic_prefix):]] = total
        return out
    finally:
        c.close()


def wait_for(k: KafkaSettings, t: topics.Topic, n: int, counts: Any, timeout: float) -> None:
    """Until ``n`` committed records of ``t`` satisfy ``counts`` (decoded)."""
    name, codec = topics.named(k.topic_prefix, t), _codec(k)
    c = Consumer(k.librdkafka_config(**{"group.id": f"bench-wait-{uuid.uuid4().hex[:6]}",
                                        "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                        "isolation.level": "read_committed"}))
    c.subscribe([name])
    seen, deadline = 0, time.monotonic() + timeout
    try:
        while seen < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen}/{n} records on {name} after {timeout}s")
            for m in c.consume(10_000, 0.5):
                value = m.value()
                if m.error() is None and value is not None and counts(codec.decode(value)):
                    seen += 1
    finally:
        c.close()


def wait_quiet(k: KafkaSettings, ts: tuple[topics.Topic, ...], quiet_s: float = 3.0, timeout: float = 600) -> None:
    """Until nothing more is written to ``ts`` for ``quiet_s`` seconds (end offsets unchanged)."""
    c = Consumer(k.librdkafka_config(**{"group.id": "bench-quiet"}))
    try:
        parts = [TopicPartition(topics.named(k.topic_prefix, t), p) for t in ts for p in range(t.partitions)]
        last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)
            if ends != last:
                last, since = ends, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.25)
        raise TimeoutError(f"outputs still growing after {timeout}s")
    finally:
        c.close()


def pct(values: list[float], p: int) -> float:
    """Nearest rank."""
    if not values:
        return 0.0
    return round(values[max(1, -(-p * len(values) // 100)) - 1], 1)


def agents(tenants: tuple[str, ...], n: int, at: int = synthetic.T0 - 3_600_000) -> list[dict[str, Any]]:
    out = []
    for tenant in tenants:
        for i in range(n):
            env = envelope("AgentStatusChanged", event_id=derive_id(tenant, "bench-agent", i, at), occurred_at=at,
                           tenant_id=tenant, partition_key=topics.AGENT_STATUS.key(tenant), producer="bench")
            out.append(make("AgentStatusChanged", env, agent_id=f"agent-{i}", presence="online", capacity=5,
                            skills=["billing", "vip", "escalation"] if i % 4 == 0 else [],
                            languages=["fr", "en"]))
    return out


# --- printing --------------------------------------------------------------------------------

def _label(key: str) -> str:
    """``worker_exactly_once_x2`` -> ``worker, exactly-once, 2 processes``."""
    name, _, n = key[7:].partition("_x")
    return f"worker, {name.replace('_', '-')}" + (f", {n} processes" if n else "")


def print_result(r: dict[str, Any]) -> None:
    print(f"parley bench streams: {r['messages']} messages, {r['customers']} customers, {r['tenants']} tenant(s), "
          f"{r['cpus']} CPUs, load {r['loadavg_start']:.2f} -> {r['loadavg_end']:.2f}")
    base = r["raw_aiokafka"]["events_per_s"]
    print(f"\n{'throughput':34}{'events/s':>10}{'x aiokafka loop':>17}{'x txn loop':>12}")
    rows = [("raw aiokafka loop", r["raw_aiokafka"]), ("raw confluent-kafka txn loop", r["raw_confluent_txn"])]
    rows += [(_label(k), v) for k, v in r.items() if k.startswith("worker_")]
    for label, v in rows:
        print(f"{label:34}{v['events_per_s']:>10}{v['events_per_s'] / base:>17.2f}"
              f"{v['events_per_s'] / r['raw_confluent_txn']['events_per_s']:>12.3f}")
    main_w = next(v for k, v in r.items() if k.startswith("worker_"))
    print(f"\nrecords written per message: {main_w['records_written_per_message']} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(main_w['records_written'].items()))})")
    print("kafka hops to the last output: identity -> conversations (threaded message, enrichment: 2 hops); "
          "-> routing -> conversations (routing decision: 4 hops)")
    if main_w.get("stage_ceilings"):
        print(f"\n{'stage ceiling (no Kafka)':34}{'records/s':>10}{'messages/s':>12}{'CPU us/msg':>12}")
        for name, v in main_w["stage_ceilings"].items():
            print(f"{name:34}{v['records_per_s']:>10}{v['messages_per_s']:>12}{v['cpu_us_per_message']:>12}")
    lw, lr = r["latency_worker"], r["latency_raw"]
    print(f"\nlatency at {r['latency_rate_per_s']} messages/s (event time = time written):")
    print(f"  worker: own outputs p50 {lw['p50_ms']} ms, p99 {lw['p99_ms']} ms; everything caused "
          f"p50 {lw['p50_all_ms']} ms, p99 {lw['p99_all_ms']} ms ({lw['samples']}/{lw['messages']} messages)")
    print(f"  raw confluent-kafka txn loop: p50 {lr['p50_ms']} ms, p99 {lr['p99_ms']} ms")
    if "privacy_cost" in r:
        c, s = r["privacy_cost"], r["privacy_seal"]
        print(f"\nprivacy (the same messages sealed, same run, best of {len(c['worker_runs'])} alternated worker "
              f"runs each): {c['events_per_s_plain']} -> {c['events_per_s_sealed']} events/s "
              f"({c['throughput_change_pct']:+.1f} %); runs (plaintext, sealed): {c['worker_runs']}")
        if "stages_cpu_change_pct" in c:
            per = ", ".join(f"{k} {v[0]}->{v[1]}" for k, v in c["per_stage_cpu_us"].items())
            print(f"  stages' CPU per message {c['stages_cpu_us_per_message_plain']} -> "
                  f"{c['stages_cpu_us_per_message_sealed']} us ({c['stages_cpu_change_pct']:+.1f} %): {per}")
        print(f"  sealing at the ingress: {s['cpu_us_per_message']} us CPU per message with a new key per customer, "
              f"{s['cpu_us_per_message_cached_keys']} us with the keys cached")
    if "peer" in r:
        print(f"\nQuix Streams peer (same session): {json.dumps(r['peer'])[:2000]}")


if __name__ == "__main__":
    sys.exit(main())
