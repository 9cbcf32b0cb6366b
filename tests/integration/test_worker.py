"""The stream worker against the real broker: the chain end to end, two runs over one log,
five kill -9s, and two workers sharing a single tenant's partitions.

Every comparison is on what readers see (``read_committed``): the public topics by event id
(each id exactly once) and the compacted KPI topics by key (their last value).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaException

from parley.app.synthetic import events as f
from parley.settings import KafkaSettings, WorkerSettings
from schemas import topics
from streams import topology
from streams.identity.logic import new_customer_id
from streams.routing import config
from streams.runtime.stage import Input, Stage, StoreSpec
from streams.runtime.task import Task
from tests.integration.stream_support import (
    copy_log,
    diff,
    events,
    idle,
    of_type,
    produce,
    read_all,
    running,
    settled,
    tables,
    wait_until,
)

pytestmark = pytest.mark.integration

T, MIN, HOUR = f.T0, f.MIN, f.HOUR  # Monday 09:00 in Paris
RULES_TEXT = """
[tenants.acme]
timezone = "Europe/Paris"
[tenants.acme.hours.office]
mon = ["09:00-18:00"]
[[tenants.acme.queues]]
name = "general"
hours = "office"
[[tenants.acme.queues]]
name = "billing"
intents = ["billing", "refund"]
skills = ["billing"]
hours = "office"
[[tenants.acme.queues]]
name = "escalation"
skills = ["escalation"]
hours = "office"
[tenants.acme.bot]
enabled = true
intents = ["greeting"]
"""
RULES = config.parse(RULES_TEXT)
PHONE = "+33612345678"
WA = f.identity("whatsapp", PHONE.lstrip("+"), phone=PHONE, name="Zoé")
SMS = f.identity("sms", PHONE, phone=PHONE)
MAIL = f.identity("email", "zoe@example.com", email="zoe@example.com")
WEB = f.identity("webchat", "w-42", login="zoe-login")
WEB_VERIFIED = f.identity("webchat", "w-42", login="zoe-login", email="zoe@example.com")


def settings(k: KafkaSettings, **kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {"kafka": k, "app_id": f"w{uuid.uuid4().hex[:8]}", "apply_topics": False,
                            "auto_resolve_after_s": 0, "lateness_ms": 500, "idle_ms": 500,
                            "stats_interval_s": 3600}
    return WorkerSettings(**{**base, **kw})


def scenario() -> list[tuple[topics.Topic, Any]]:
    """What ingress and the agent API would have written, in event-time order."""
    return [
        (topics.AGENT_STATUS, f.agent_status("acme", "a1", T - HOUR, capacity=5, skills=["billing"])),
        (topics.AGENT_STATUS, f.agent_status("acme", "a2", T - HOUR, capacity=5)),
        (topics.MESSAGES, f.received("acme", WA, "Bonjour, ma commande 123456 n'est toujours pas arrivée !", T, n=1)),
        (topics.MESSAGES, f.received("acme", SMS, "Des nouvelles de la commande 123456 ?", T + 5 * MIN, n=2)),
        (topics.MESSAGES, f.received("acme", MAIL, "I want a refund for my invoice please", T + 10 * MIN, n=3,
                                     subject="Refund for invoice 998877")),
        (topics.MESSAGES, f.received("acme", WEB, "Hi there, good morning! About order 555555", T + 15 * MIN, n=4)),
        (topics.MESSAGES, f.received("acme", WEB_VERIFIED, "Any news on my refund?", T + 20 * MIN, n=6)),
        (topics.MESSAGES, f.received("acme", WA, "Ma commande 123456 ?", T + 30 * MIN, n=5)),
        (topics.MESSAGES, f.received("acme", WA, "Ma commande 123456 ?", T + 30 * MIN, n=5)),  # a redelivery
    ]


def test_the_chain_resolves_threads_enriches_routes_and_measures(applied_topics) -> None:
    k = applied_topics
    s = settings(k)
    produce(k, [*scenario(), (topics.MESSAGES, b"\x00\x00\x00\x00\x01not avro")])
    messages = {e["envelope"]["event_id"] for t, e in scenario() if t is topics.MESSAGES}
    with running(s, topology.build(s, routing_rules=RULES)):
        assert wait_until(settled(k, messages, extra=lambda conv: len(of_type(conv, "RoutingDecided")) >= 3), 90)
        assert wait_until(lambda: len(events(k, topics.KPI_CONTACTS)) >= 2, 30)
    records = events(k, topics.CONVERSATIONS)

    received = {r["envelope"]["event_id"]: r for r in of_type(records, "MessageReceived")}
    assert len(received) == 6 == len(of_type(records, "MessageReceived"))  # the redelivery is dropped
    wa, sms, mail, web, web2, wa2 = sorted(received.values(), key=lambda r: r["envelope"]["occurred_at"])
    zoe = new_customer_id("acme", f"phone:{PHONE}")
    # identity: one phone on WhatsApp and SMS is one customer; the web login seen with the
    # verified e-mail merges the web customer's profile into the (older) e-mail customer
    assert wa["customer_id"] == sms["customer_id"] == wa2["customer_id"] == zoe
    assert web["customer_id"] == web2["customer_id"] != mail["customer_id"]
    identity = events(k, topics.IDENTITY)
    (merged,) = of_type(identity, "IdentitiesMerged")
    assert (merged["customer_id"], merged["merged_customer_id"]) == (mail["customer_id"], web["customer_id"])
    assert any(e["signal"] == "same_phone" and e["identity_key"] == f"channel:sms:{PHONE}"
               for e in of_type(identity, "IdentityLinked"))
    # threads: order 123456 on two channels is one thread; the refund e-mail is another
    assert wa["thread_id"] == sms["thread_id"] == wa2["thread_id"] != mail["thread_id"]
    assert web2["thread_id"] == web["thread_id"] not in (wa["thread_id"], mail["thread_id"])
    assert len({s["thread_id"] for s in of_type(records, "ConversationStarted")}) == 3
    # enrichment: one per customer message, same key as the message
    enriched = {e["message_event_id"]: e for e in of_type(records, "MessageEnriched")}
    assert set(enriched) == set(received)
    assert enriched[mail["envelope"]["event_id"]]["language"] == "en"
    assert enriched[wa["envelope"]["event_id"]]["language"] == "fr"
    # routing: the refund goes to the billing agent, the greeting to the bot
    decided = {d["thread_id"]: d for d in of_type(records, "RoutingDecided")}
    assert decided[mail["thread_id"]]["queue"] == "billing"
    assigned = {a["thread_id"]: a["agent_id"] for a in of_type(records, "ConversationAssigned")}
    assert assigned[mail["thread_id"]] == "a1"
    assert decided[web["thread_id"]]["target_kind"] == "bot"
    assert decided[wa["thread_id"]]["target_kind"] == "agent"
    # KPIs: a contact per human-routed thread
    contacts = events(k, topics.KPI_CONTACTS)
    assert {c["thread_id"] for c in contacts} >= {wa["thread_id"], mail["thread_id"]}
    # the undecodable record is parked with its bytes, and the stream went on
    (dead,) = events(k, topics.DEAD_LETTER)
    assert (dead["stage"], dead["reason"], dead["payload"]) == ("identity", "undecodable",
                                                                b"\x00\x00\x00\x00\x01not avro")
    for r in records:  # every output keyed by tenant|customer
        assert r["envelope"]["partition_key"].startswith("acme|")


# --- one log, two runs -------------------------------------------------------------------------

def day(n: int = 400) -> list[tuple[topics.Topic, Any]]:
    """Agents online, then customers on several channels, some webhooks delivered twice."""
    out: list[tuple[topics.Topic, Any]] = [
        (topics.AGENT_STATUS, f.agent_status("acme", f"a{i}", T - HOUR, capacity=2, languages=["en", "fr"]))
        for i in range(6)]
    out += [(topics.MESSAGES, e) for e in f.traffic(n, customers=60, tenants=("acme",), spacing_ms=2000)]
    rnd = random.Random(5)
    for x in [x for x in out if x[0] is topics.MESSAGES and rnd.random() < 0.05]:
        out.insert(out.index(x) + 1, x)
    return out


def _copy_of(k: KafkaSettings) -> KafkaSettings:
    """The same cluster under a fresh topic prefix (another copy of the input log)."""
    import asyncio

    from parley import topics_admin

    other = k.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    asyncio.run(topics_admin.apply(other))
    return other


def test_two_runs_over_one_log_give_the_same_outputs(applied_topics) -> None:
    """The same input log written twice, the second time with partitions filled in another
    order (one partition at a time, reversed): the same threads, customers and KPI tables."""
    k1, k2 = applied_topics, _copy_of(applied_topics)
    inputs = day()
    produce(k1, inputs)
    produce(k2, sorted(inputs, key=lambda x: x[1]["envelope"]["partition_key"], reverse=True))
    messages = {e["envelope"]["event_id"] for t, e in inputs if t is topics.MESSAGES}
    results = []
    for k in (k1, k2):
        s = settings(k)
        with running(s, topology.build(s, routing_rules=RULES)):
            assert wait_until(settled(k, messages), 120)
            assert wait_until(idle(k, s.app_id), 60), "the worker never went idle"  # the last KPI figures
        results.append(tables(k))
    assert results[0][topics.CONVERSATIONS.name]
    assert diff(results[0], results[1]) == {}
    _drop(k2)


def _drop(k: KafkaSettings) -> None:
    import asyncio

    from parley import topics_admin

    asyncio.run(topics_admin.delete_prefixed(k))


# --- kill -9 -------------------------------------------------------------------------------------

def _worker_process(kafka: dict[str, Any], app_id: str, crash_before_commit: int, log_path: str) -> None:
    import sys

    from streams.runtime import worker

    sys.stderr = open(log_path, "a", buffering=1)  # noqa: SIM115 - one JSON line each, kept through a SIGKILL

    # small batches, so that the work spreads over many transactions and kills land mid-stream
    s = WorkerSettings(kafka=KafkaSettings(**kafka), app_id=app_id, instance_id="w-1", apply_topics=False,
                       auto_resolve_after_s=0, lateness_ms=500, idle_ms=500, routing_file=None,
                       crash_before_commit=crash_before_commit, max_batch=100)
    s.log.level = "INFO"  # into the file: starts, assignments, late records (nothing per record)
    worker.run(s)


def test_five_kill9s_give_the_same_tables_as_a_clean_run(applied_topics, tmp_path) -> None:
    """A run killed five times with SIGKILL while its input keeps coming (the first kill
    inside a transaction: outputs and state changes written, not committed), each time
    restarted under the same instance id; then one clean run over a copy of the same input
    log. Same tables, no id twice on a public topic, and output resumes within seconds of
    each restart."""
    import threading

    k_kill, k_clean = applied_topics, _copy_of(applied_topics)
    inputs = day(3000)
    messages = {e["envelope"]["event_id"] for t, e in inputs if t is topics.MESSAGES}
    produce(k_kill, inputs[:600])  # every partition has data before the worker starts

    def feed() -> None:  # the rest arrives while the worker is being killed
        for i in range(600, len(inputs), 40):  # about 45 s
            produce(k_kill, inputs[i:i + 40])
            time.sleep(0.75)  # the pace of the input: time passing is the test here

    feeder = threading.Thread(target=feed, daemon=True)
    ctx, app_id = mp.get_context("spawn"), f"w{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "workers.log"  # every incarnation's warnings: a late record says which
    args = (k_kill.model_dump(mode="json"), app_id)
    enriched = lambda: len(of_type(events(k_kill, topics.CONVERSATIONS), "MessageEnriched"))  # noqa: E731
    resumed = []
    for kill in range(5):
        proc = ctx.Process(target=_worker_process, args=(*args, 3 if kill == 0 else 0, str(log_path)), daemon=True)
        started, before = time.monotonic(), enriched()
        proc.start()
        if kill == 0:
            feeder.start()
            proc.join(120)  # it kills itself inside its 3rd transaction
            assert proc.exitcode == -signal.SIGKILL
            continue
        assert wait_until(lambda before=before: enriched() > before, 60, every=0.2), "no output after a restart"
        resumed.append(time.monotonic() - started)
        time.sleep(random.Random(kill).uniform(0.5, 2.0))  # it works a while: the kill lands anywhere
        assert enriched() < len(messages), "the work ended before the kill: more input needed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    last = ctx.Process(target=_worker_process, args=(*args, 0, str(log_path)), daemon=True)
    last.start()
    try:
        feeder.join(120)
        assert wait_until(settled(k_kill, messages), 240)
        assert wait_until(idle(k_kill, app_id), 60), "the last run never went idle"
    finally:
        last.terminate()
        last.join(30)
    killed = tables(k_kill)  # asserts each id once on the public topics
    # the input comes in event-time order: a record processed out of order (late) means a task
    # released past records an upstream had not handed over yet (after a restart or a quiet spell)
    late = [line for line in log_path.read_text().splitlines() if '"task.late"' in line]
    assert late == []

    copy_log(k_kill, k_clean, (topics.AGENT_STATUS, topics.MESSAGES))
    s = settings(k_clean, routing_file=None)
    with running(s, topology.build(s)) as clean:
        assert wait_until(settled(k_clean, messages), 240)
        assert wait_until(idle(k_clean, s.app_id), 60), "the clean run never went idle"
    assert sum(c["late"] for c in clean.stats.per_stage.values()) == 0
    assert diff(tables(k_clean), killed) == {}
    # from each restart (process start, restore) to new output: a figure, not a check (the wait
    # above bounds it at 60 s); `pytest -s` shows it
    print(f"restart to first output: {', '.join(f'{s:.1f}' for s in resumed)} s")
    _drop(k_clean)


# --- two workers ---------------------------------------------------------------------------------

def live(n: int, rate: float) -> list[tuple[topics.Topic, Any]]:
    """Traffic as it comes in: event time is the time it is written (one tenant)."""
    now = int(time.time() * 1000)
    out: list[tuple[topics.Topic, Any]] = [
        (topics.AGENT_STATUS, f.agent_status("acme", f"a{i}", now - 1000, capacity=2, languages=["en", "fr"]))
        for i in range(6)]
    return out + [(topics.MESSAGES, e) for e in f.traffic(n, customers=80, tenants=("acme",), start=now,
                                                           spacing_ms=int(1000 / rate))]


def test_two_workers_each_take_half_of_a_single_tenants_partitions_and_agree_with_one(applied_topics) -> None:
    """One tenant's live traffic: two workers share every stage's partitions (range assignment)
    and exchange watermarks through Kafka; one worker over a copy of the same log publishes
    exactly what the two did."""
    k_two, k_one = applied_topics, _copy_of(applied_topics)
    app_id = f"w{uuid.uuid4().hex[:8]}"
    sa, sb = (settings(k_two, app_id=app_id, instance_id=i) for i in ("w-a", "w-b"))
    with running(sa, topology.build(sa, routing_rules=RULES)) as a, \
            running(sb, topology.build(sb, routing_rules=RULES)) as b:
        assert wait_until(lambda: len(a.tasks) + len(b.tasks) == 48 and len(a.tasks) and len(b.tasks), 90)
        for stage in ("identity", "conversations"):
            mine = [sum(t.startswith(f"{stage}/") for t in w.tasks) for w in (a, b)]
            assert mine == [6, 6], (stage, mine)  # each worker owns half of the per-message stage
        inputs = live(1000, rate=200.0)
        messages = {e["envelope"]["event_id"] for t, e in inputs if t is topics.MESSAGES}
        for i in range(0, len(inputs), 20):  # paced: 200 messages/s
            produce(k_two, inputs[i:i + 20])
            time.sleep(0.1)  # the pace of live traffic: time passing is the test here
        assert wait_until(settled(k_two, messages), 120)
        assert wait_until(idle(k_two, app_id), 60), "the two workers never went idle"
        done = {w.instance: {stage: w.stats.per_stage[stage]["in"] for stage in ("identity", "conversations")}
                for w in (a, b)}
        late = {w.instance: sum(c["late"] for c in w.stats.per_stage.values()) for w in (a, b)}
    assert all(n > 0 for d in done.values() for n in d.values()), done  # both did per-message work
    assert late == {"w-a": 0, "w-b": 0}
    two = tables(k_two)

    copy_log(k_two, k_one, (topics.AGENT_STATUS, topics.MESSAGES))
    s = settings(k_one)
    with running(s, topology.build(s, routing_rules=RULES)):
        assert wait_until(settled(k_one, messages), 180)
        assert wait_until(idle(k_one, s.app_id), 60), "the worker never went idle"
    assert diff(two, tables(k_one)) == {}
    _drop(k_one)


# --- big state ----------------------------------------------------------------------------------

class Hoard(Stage):
    """A stage whose state value outgrows the broker's default record size (1 MB): a busy
    interval's KPI state, or a tenant's desk, can. Each message stores a 2 MB value under its key
    (once) and says how big the value it found was."""

    name = "hoard"
    inputs = (Input(topics.MESSAGES),)
    outputs = (topics.KPI_THREADS,)
    stores = (StoreSpec("blob"),)
    SIZE = 2_000_000

    def process(self, ctx: Task, event: Any) -> None:
        key, blob = event["envelope"]["partition_key"], ctx.store("blob")
        found = blob.get(key)
        if found is None:
            blob[key] = "x" * self.SIZE
        ctx.send_json(topics.KPI_THREADS, key, {"t": event["envelope"]["occurred_at"], "r": 0,
                                                 "id": event["envelope"]["event_id"], "found": len(found or "")})


def test_a_state_value_over_a_megabyte_is_committed_and_restored(applied_topics) -> None:
    k = applied_topics
    s = settings(k)
    out = topics.internal_name(k.topic_prefix, s.app_id, topics.KPI_THREADS)

    def found() -> list[int]:
        try:
            return [v["found"] for _, v in read_all(k, name=out)]
        except KafkaException:  # the worker creates the topic: not there yet, or no leader yet
            return []

    produce(k, [(topics.MESSAGES, f.received("acme", WA, "one", T))])
    with running(s, [Hoard()]):
        assert wait_until(lambda: found() == [0], 60), found()
    produce(k, [(topics.MESSAGES, f.received("acme", WA, "two", T + MIN))])
    with running(s, [Hoard()]):  # a new worker of the same app: the 2 MB value from its changelog
        assert wait_until(lambda: len(found()) == 2, 60), found()
    assert found() == [0, Hoard.SIZE]  # the second worker had it only from the changelog
    _drop(k)
