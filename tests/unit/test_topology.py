"""The whole stream topology in memory (streams.runtime.local): same inputs, same outputs.

The in-memory runner runs the worker's own tasks; it interleaves partitions and producers
differently for each seed, splits partitions between simulated workers and crashes them
(losing what they had not committed). Every variant must give the same threads, customers and
KPI figures, with no event id twice on a public topic. Then each stage alone: any permutation
of its input set gives the same output set.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from parley.app.synthetic import events as f
from parley.settings import WorkerSettings
from schemas import topics
from schemas.codec import Codec
from streams import topology
from streams.runtime.local import LocalRunner
from streams.runtime.sequencer import POS_INF
from streams.runtime.stage import Stage
from streams.runtime.task import Env, Record, Task

RULES = Path(__file__).resolve().parents[2] / "config" / "routing.example.toml"
PUBLIC = (topics.CONVERSATION_MESSAGES, topics.CONVERSATIONS, topics.IDENTITY)
COMPACTED = (topics.KPI_CONTACTS, topics.KPI_INTERVALS)
CODEC = Codec()


def stages() -> list[Stage]:
    return topology.build(WorkerSettings(routing_file=RULES, auto_resolve_after_s=2 * 3600))


def phase_one(seed: int = 0) -> list[tuple[topics.Topic, dict]]:
    """Agents online, then a morning of customer messages (with an e-mail and a web chat that
    share an address, so the graph merges), redelivered now and then."""
    out: list[tuple[topics.Topic, dict]] = []
    for tenant in ("acme", "globex"):
        for i in range(4):
            out.append((topics.AGENT_STATUS, f.agent_status(tenant, f"{tenant}-a{i}", f.T0 - 1000, capacity=2,
                                                            languages=["en", "fr"])))
    for e in f.traffic(240, customers=30, tenants=("acme", "globex"), spacing_ms=700):
        out.append((topics.MESSAGES, e))
    mail = f.identity("email", "zoe@example.com", email="zoe@example.com")
    web = f.identity("webchat", "w-zoe", login="zoe-1", email="zoe@example.com")
    out.append((topics.MESSAGES, f.received("acme", mail, "Order 123456 never came", f.T0 + 5_000, n="z1",
                                            subject="Order 123456")))
    out.append((topics.MESSAGES, f.received("acme", web, "about my order 123456", f.T0 + 9_000, n="z2")))
    out.sort(key=lambda x: x[1]["envelope"]["occurred_at"])
    return redelivered(out, seed)


def redelivered(batch: list[tuple[topics.Topic, dict]], seed: int) -> list[tuple[topics.Topic, dict]]:
    """Some webhooks delivered twice, the copy a few records later (within the lateness bound)."""
    rnd = random.Random(seed)
    out = list(batch)
    for x in [x for x in batch if x[0] is topics.MESSAGES and rnd.random() < 0.08]:
        out.insert(min(len(out), out.index(x) + rnd.randint(1, 2)), x)
    return out


def phase_two(runner: LocalRunner) -> list[tuple[topics.Topic, dict]]:
    """What agents do next, decided from what the pipeline published (in event time after it):
    they reply to the threads assigned to them and resolve some; customers write again."""
    assigned = sorted({(v["envelope"]["tenant_id"], v["customer_id"], v["thread_id"], v["agent_id"])
                       for _, v in runner.read(topics.CONVERSATIONS)
                       if v["envelope"]["event_type"] == "ConversationAssigned"})
    senders = {v["customer_id"]: v["sender"] for _, v in runner.read(topics.CONVERSATIONS)
               if v["envelope"]["event_type"] == "MessageReceived"}
    later = f.T0 + 3_600_000
    out: list[tuple[topics.Topic, dict]] = []
    for i, (tenant, customer, thread, agent) in enumerate(assigned):
        at = later + i * 1000
        out.append((topics.MESSAGES, f.sent(tenant, senders[customer], "On it!", at, n=i, author_id=agent,
                                             customer_id=customer, thread_id=thread)))
        if i % 2 == 0:
            out.append((topics.CONVERSATION_MESSAGES, f.thread_command(
                "ConversationResolved", tenant, customer, thread, at + 500, n=i, resolved_by="agent")))
    for e in f.traffic(60, customers=30, tenants=("acme", "globex"), seed=9,
                       start=later + 600_000, spacing_ms=500):
        out.append((topics.MESSAGES, e))
    out.append((topics.AGENT_STATUS, f.agent_status("acme", "acme-a0", later + 300_000, presence="offline")))
    out.sort(key=lambda x: x[1]["envelope"]["occurred_at"])
    return redelivered(out, 1)


def run_scenario(seed: int, *, workers: int = 1, crash_every: int = 0, shuffle: bool = False) -> LocalRunner:
    runner = LocalRunner(stages(), seed=seed, workers=workers, lateness_ms=2000)

    def produce(batch: list[tuple[topics.Topic, dict]]) -> None:
        if shuffle:  # disorder within the lateness bound: swap neighbours 0.7 s apart
            rnd = random.Random(seed)
            for i in range(len(batch) - 1):
                if rnd.random() < 0.3:
                    batch[i], batch[i + 1] = batch[i + 1], batch[i]
        for i, (topic, event) in enumerate(batch):
            runner.produce(topic, event)
            if crash_every and i % crash_every == crash_every - 1:
                for _ in range(2):
                    for w in range(workers):
                        runner.step(w)
                runner.crash()
        runner.run()

    produce(phase_one(seed=0))
    produce(phase_two(runner))
    return runner


def tables(runner: LocalRunner) -> dict[str, dict[str, Any]]:
    """Public topics by event id (each id once), compacted topics by key (last value)."""
    out: dict[str, dict[str, Any]] = {}
    for t in PUBLIC:
        records = runner.read(t)
        ids = Counter(v["envelope"]["event_id"] for _, v in records)
        assert max(ids.values()) == 1, f"{t.name} repeats {[i for i, n in ids.items() if n > 1][:3]}"
        out[t.name] = {v["envelope"]["event_id"]: json.dumps(v, sort_keys=True) for _, v in records}
    for t in COMPACTED:
        last: dict[str, Any] = {}
        for key, v in runner.read(t):
            body = {k: val for k, val in v.items() if k != "envelope"}
            last[key.decode()] = json.dumps(body, sort_keys=True)
        out[t.name] = last
    return out


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, Any]]:
    runner = run_scenario(1)
    assert sum(t.counts["late"] for t in runner.tasks.values()) == 0
    assert runner.read(topics.DEAD_LETTER) == []
    return tables(runner)


def test_the_scenario_exercises_the_chain(reference) -> None:
    kinds = Counter(json.loads(v)["envelope"]["event_type"] for v in reference[topics.CONVERSATIONS.name].values())
    assert kinds["MessageReceived"] == 300 + 2 and kinds["MessageEnriched"] == kinds["MessageReceived"]
    for k in ("ConversationStarted", "RoutingDecided", "ConversationAssigned", "ConversationQueued",
              "ConversationResolved", "ConversationReopened", "MessageSent"):
        assert kinds[k] > 0, k
    identity = Counter(json.loads(v)["envelope"]["event_type"] for v in reference[topics.IDENTITY.name].values())
    assert identity["IdentitiesMerged"] >= 1 and identity["IdentityLinked"] > 30
    assert reference[topics.KPI_CONTACTS.name] and reference[topics.KPI_INTERVALS.name]


@pytest.mark.parametrize("seed,workers,crash_every,shuffle", [
    (2, 1, 0, False),   # another interleaving of partitions and producers
    (3, 1, 0, True),    # inputs out of order (within the lateness bound)
    (4, 2, 0, True),    # two workers, each with half the partitions
    (5, 1, 41, False),  # crashes: what was not committed is lost and done again
    (6, 2, 29, True),   # all of it
])
def test_same_inputs_same_outputs(reference, seed, workers, crash_every, shuffle) -> None:
    got = tables(run_scenario(seed, workers=workers, crash_every=crash_every, shuffle=shuffle))
    for name, want in reference.items():
        assert got[name].keys() == want.keys(), (name, sorted(got[name].keys() ^ want.keys())[:3])
        changed = [k for k in want if got[name][k] != want[k]]
        assert not changed, (name, changed[:1], got[name][changed[0]], want[changed[0]])


# --- each stage alone: any permutation of its input set -----------------------------------------

def run_alone(stage: Stage, records: list[tuple[str, bytes | None, bytes]], seed: int) -> list[str]:
    """Feed one task of ``stage`` its records in a shuffled order (as if from outside, all
    within the lateness bound), then let event time pass: its outputs, sorted."""
    order = list(records)
    random.Random(seed).shuffle(order)
    task = Task(stage, 0, Env(CODEC, {}, lateness_ms=POS_INF // 4, idle_ms=1000))
    task.start({})
    out = []
    for offset, (topic, key, value) in enumerate(order):
        task.feed(Record(topic, 0, offset, key, value), now=0.0)
        if offset % 7 == 0:
            out += task.finish()[0]
    for clock in task.clocks.values():
        clock.caught_up = True
    task.advance({}, now=10.0)
    out += task.finish()[0]
    out += task.finish()[0]  # a turn without input, as the worker's next (kpi: open intervals' last figures)
    if stage.name == "kpi":  # compacted figures: the last value of each key
        last = {o.key: o.value for o in out}
        return sorted(f"{k!r}:{json.dumps(_body(v), sort_keys=True)}" for k, v in last.items())
    if stage.name == "conversations":
        # a thread's measure changes batch by batch: keep the last; and which of a thread's
        # messages still go to routing depends on when routing's decision came back (routing
        # ignores those of a thread a human has: the topology test shows its decisions equal)
        last_measure = {o.key + bytes(json.loads(o.value)["thread"], "utf-8"): o for o in out
                        if o.topic == topics.KPI_THREADS.name}
        out = [o for o in out if o.topic != topics.KPI_THREADS.name and not _message_to_routing(o)]
        out += list(last_measure.values())
    return sorted(f"{o.topic}|{o.key!r}|{json.dumps(_body(o.value), sort_keys=True)}" for o in out)


def _message_to_routing(o: Any) -> bool:
    return o.topic == topics.ROUTING_REQUESTS.name and json.loads(o.value)["events"][0]["envelope"][
        "event_type"] in ("MessageReceived", "MessageSent")


def _body(value: bytes) -> Any:
    if value[:1] == b"{":
        d = json.loads(value)
        return {k: v for k, v in d.items() if k != "cause"}
    e = CODEC.decode(value)
    return {k: v for k, v in e.items() if k != "envelope"} if e["envelope"]["event_type"] in (
        "IntervalStat", "AgentIntervalStat", "ContactMeasured") else e


@pytest.fixture(scope="module")
def per_stage() -> tuple[list[Stage], dict[str, list[tuple[str, bytes | None, bytes]]]]:
    runner = run_scenario(1)
    found: dict[str, list[tuple[str, bytes | None, bytes]]] = {}
    for s in runner.stages.values():
        found[s.name] = [(i.topic.name, key, value) for i in s.inputs
                         for part in runner.logs[i.topic.name].records for key, value, _ in part
                         if value is not None]
    return list(runner.stages.values()), found


@pytest.mark.parametrize("name", ["identity", "identity-graph", "conversations", "routing", "kpi",
                                  "presence", "context"])
def test_a_stage_gives_the_same_outputs_for_any_order_of_its_inputs(per_stage, name) -> None:
    all_stages, inputs = per_stage
    stage = next(s for s in all_stages if s.name == name)
    records = inputs[name]
    assert records or name == "context", f"{name} has no input in the scenario"
    results = {tuple(run_alone(stage, records, seed)) for seed in range(3)}
    assert len(results) == 1


@pytest.mark.parametrize("seed", range(12))
def test_a_source_waking_after_a_quiet_spell_is_not_overtaken(seed) -> None:
    """Slices as the demo drives them: a quiet spell (every source idle), then a customer's
    message (through identity) and, a minute after it in event time but sent right after it, the
    agent's resolve (straight
    to conversations). Identity was idle: until its next commit its readers would not wait for
    it, and the resolve could overtake the message it follows. Waking tasks are active at once."""
    runner = LocalRunner(stages(), seed=seed, lateness_ms=10, idle_ms=150)
    sms = f.identity("sms", "+33611111111")
    first = f.received("acme", sms, "Order 123456 is late", f.T0, n=1)
    for e in (f.agent_status("acme", "a1", f.T0 - 1000, capacity=2), first):
        runner.produce(topics.AGENT_STATUS if e["envelope"]["event_type"] == "AgentStatusChanged"
                       else topics.MESSAGES, e)
    runner.run()  # every source idle now
    (threaded,) = [v for _, v in runner.read(topics.CONVERSATIONS) if v["envelope"]["event_type"] == "MessageReceived"]
    later = f.T0 + 3_600_000
    runner.produce(topics.MESSAGES, f.received("acme", sms, "thanks, all good", later, n=2))
    runner.produce(topics.CONVERSATION_MESSAGES, f.thread_command(
        "ConversationResolved", "acme", threaded["customer_id"], threaded["thread_id"], later + 60_000,
        resolved_by="agent"))
    runner.run()
    assert sum(t.counts["late"] for t in runner.tasks.values()) == 0
    kinds = [v["envelope"]["event_type"] for _, v in runner.read(topics.CONVERSATIONS)]
    assert "ConversationReopened" not in kinds  # the message came first, in the thread still open


def test_a_waking_task_is_active_in_the_table_at_once() -> None:
    """The worker's table of its own tasks' marks is updated at each commit; a task that was
    idle and just read records must not stay idle there until then (``wake``), nor may the
    process's other idle tasks (their records may come a moment later)."""
    from streams.runtime.task import Upstream, wake

    s = next(x for x in stages() if x.name == "identity")
    task, other = Task(s, 0, Env(CODEC, {})), Task(s, 1, Env(CODEC, {}))
    for t in (task, other):
        t.start({})
    task.seq.frontier, other.seq.frontier = 500, 650
    table = {task.id: Upstream(900, True, {"t/0": 3}), other.id: Upstream(700, True, {}),
             "remote/0": Upstream(800, True, {})}
    wake(table, {task}, {task}, [task, other], now=1.0)
    assert table[task.id] == Upstream(500, False, {"t/0": 3})
    assert table[other.id] == Upstream(650, False, {})
    assert table["remote/0"].idle  # another process's task: its own process says when it wakes
    table[task.id] = Upstream(900, False, {})
    table[other.id] = Upstream(700, True, {})
    wake(table, {task}, {task}, [task, other], now=2.0)
    assert table[other.id].idle  # the fed task was not idle: traffic had not stopped, nothing to do
    table[task.id] = Upstream(900, True, {})
    wake(table, {task}, set(), [task, other], now=3.0)  # records from another task, not from outside
    assert not table[task.id].idle and table[other.id].idle
