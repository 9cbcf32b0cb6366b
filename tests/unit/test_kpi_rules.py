"""KPI rules through the streaming engine (streams.kpi.engine), in every delivery order.

Each scenario is a small event log written with ``Log``; ``measure`` feeds it to a fresh
engine sorted, reversed and shuffled with repeats, flushing after every event and at the end,
checks the published figures are the same in all cases, and returns them.
"""

from __future__ import annotations

import random

import pytest

from schemas.events import envelope, make
from streams.kpi.engine import KpiEngine
from streams.kpi.logic import fold_outputs

T0 = 1_740_992_400_000  # 2025-03-03 09:00 UTC, an interval start
INTERVAL = 900_000
S, MIN = 1000, 60_000


class Log:
    """A tiny writer of conversation-level events; times in seconds after T0."""

    def __init__(self, tenant: str = "acme") -> None:
        self.tenant, self.events, self.n = tenant, [], 0

    def _env(self, etype: str, at: float, key: str | None = None) -> dict:
        self.n += 1
        return envelope(etype, event_id=f"e{self.n:04d}", occurred_at=T0 + int(at * S),
                        tenant_id=self.tenant, partition_key=key or f"{self.tenant}|c1")

    def _add(self, etype: str, at: float, **fields) -> Log:
        self.events.append(make(etype, self._env(etype, at), **fields))
        return self

    def customer(self, at, thread="th1", channel="whatsapp", label=None) -> Log:
        env = self._env("MessageReceived", at)
        ident = {"channel": channel, "id": "c1", "display_name": None, "phone_e164": None,
                 "email": None, "login_id": None}
        self.events.append(make("MessageReceived", env, channel=channel, channel_account_id="a",
                                sender=ident, channel_message_id=env["event_id"],
                                raw_event_id="raw", customer_id="c1", thread_id=thread))
        if label:
            self._add("MessageEnriched", at, message_event_id=env["event_id"], thread_id=thread,
                      customer_id="c1", channel=channel, sentiment_label=label)
        return self

    def route(self, at, kind="queue", queue="general", thread="th1", agent=None) -> Log:
        return self._add("RoutingDecided", at, thread_id=thread, customer_id="c1",
                         message_event_id="m", target_kind=kind, queue=queue, agent_id=agent)

    def reply(self, at, author="a1", kind="agent", thread="th1", channel="whatsapp") -> Log:
        ident = {"channel": channel, "id": "c1", "display_name": None, "phone_e164": None,
                 "email": None, "login_id": None}
        return self._add("MessageSent", at, channel=channel, channel_account_id="a",
                         recipient=ident, message_id=f"out{self.n}", author_type=kind,
                         author_id=author, customer_id="c1", thread_id=thread)

    def assign(self, at, agent, thread="th1") -> Log:
        return self._add("ConversationAssigned", at, thread_id=thread, customer_id="c1",
                         agent_id=agent)

    def transfer(self, at, to_agent=None, thread="th1") -> Log:
        return self._add("ConversationTransferred", at, thread_id=thread, customer_id="c1",
                         to_agent_id=to_agent, to_queue=None if to_agent else "general")

    def resolve(self, at, by="agent", thread="th1") -> Log:
        return self._add("ConversationResolved", at, thread_id=thread, customer_id="c1",
                         resolved_by=by)

    def presence(self, at, agent, state) -> Log:
        return self._add("AgentStatusChanged", at, agent_id=agent, presence=state)

    def tick(self, at) -> Log:
        """Move the watermark (a watermark-only event of another thread)."""
        return self._add("ConversationQueued", at, thread_id="other", customer_id="c9",
                         queue="general")


def _deliveries(events: list[dict]) -> list[list[dict]]:
    rng = random.Random(4)
    with_repeats = events + [dict(e) for e in rng.sample(events, len(events) // 2)]
    rng.shuffle(with_repeats)
    return [sorted(events, key=lambda e: e["envelope"]["occurred_at"]),
            list(reversed(events)), with_repeats]


def run(events: list[dict], flush_each: bool = True) -> tuple[dict, list[dict]]:
    engine, out = KpiEngine(), []
    for e in events:
        engine.apply(e)
        if flush_each:
            out += engine.flush()
    out += engine.flush()
    return fold_outputs(out), out


def measure(log: Log) -> dict:
    results = [run(d, each)[0] for d in _deliveries(log.events) for each in (True, False)]
    for r in results[1:]:
        assert r == results[0]
    return results[0]


def contacts(result: dict) -> list[dict]:
    return sorted(result["contacts"].values(), key=lambda c: (c["thread_id"], c["started_at"]))


def overall(result: dict, at_s: float = 0) -> dict:
    return result["intervals"][("acme", T0 + int(at_s * S) // INTERVAL * INTERVAL, "overall", "all")]


# --- contacts and service level ------------------------------------------------------------

CONTACT_CASES = {
    "answered within 300": (
        Log().customer(0).route(0.1).reply(120),
        {"frt_ms": 120_000, "status": "answered", "agent_id": "a1"},
        {"answered_within_300": 1, "answered_after_20": 1, "sl_300": 1.0, "sl_300_met": 1.0}),
    "answered at exactly 300 s": (
        Log().customer(0).route(0.1).reply(300),
        {"frt_ms": 300_000}, {"answered_within_300": 1, "sl_300": 1.0}),
    "answered after 300": (
        Log().customer(0).route(0.1).reply(301),
        {"frt_ms": 301_000}, {"answered_after_300": 1, "sl_300": 0.0, "sl_300_met": 0.0}),
    "pending: waiting less than T as of the watermark": (
        Log().customer(0).route(0.1).tick(200),
        {"status": "waiting", "frt_ms": None},
        {"unanswered_within_300": 1, "unanswered_over_20": 1, "sl_20": 0.0, "sl_300": None}),
    "late: still waiting longer than T": (
        Log().customer(0).route(0.1).tick(301),
        {"status": "waiting"}, {"unanswered_over_300": 1, "sl_300": 0.0, "waiting": 1}),
    "short abandon within 30 s": (
        Log().customer(0).route(0.1).resolve(25, by="customer"),
        {"status": "abandoned", "short_abandon": True, "resolved_at": T0 + 25_000},
        {"short_abandoned": 1, "abandoned": 1, "sl_20": None, "sl_300": None}),
    "abandon at 45 s is no short abandon: missed, even before T": (
        Log().customer(0).route(0.1).resolve(45, by="customer"),
        {"status": "abandoned", "short_abandon": False},
        {"short_abandoned": 0, "long_abandoned": 1, "unanswered_over_20": 0, "sl_20": 0.0,
         "unanswered_within_300": 0, "sl_300": 0.0, "sl_300_met": 0.0}),
    "bot replies are excluded from FRT": (
        Log().customer(0).route(0.1, kind="bot", queue="bot").reply(2, kind="bot", author="b")
        .customer(40).route(40.1, queue="billing").reply(200),
        {"frt_ms": 200_000, "first_reply_at": T0 + 2000, "queue": "billing"},
        {"frt_mean_ms": 200_000.0, "first_reply_mean_ms": 2000.0, "bot_contained": 0}),
    "automation notices are no reply at all": (
        Log().customer(0).route(0.1).reply(1, kind="automation", author=None).tick(400),
        {"first_reply_at": None, "status": "waiting"}, {"unanswered_over_300": 1}),
    "reply gaps: each run to the next human reply": (
        Log().customer(0).route(0.1).customer(10).reply(60).customer(100).reply(130)
        .customer(200),
        {"reply_gap_count": 2, "reply_gap_total_ms": 90_000, "reply_gap_max_ms": 60_000},
        {"reply_gap_count": 2, "reply_gap_mean_ms": 45_000.0, "customer_wait_total_ms": 90_000}),
    "last customer message negative": (
        Log().customer(0, label="positive").route(0.1).reply(50).customer(60, label="negative"),
        {"last_customer_sentiment": "negative"},
        {"last_negative": 1, "last_negative_share": 1.0, "sentiment_negative": 1,
         "sentiment_positive": 1}),
    "last customer message not negative": (
        Log().customer(0, label="negative").route(0.1).reply(50).customer(60, label="neutral"),
        {"last_customer_sentiment": "neutral"}, {"last_negative": 0, "last_negative_share": 0.0}),
}


@pytest.mark.parametrize("name", list(CONTACT_CASES))
def test_contact_rules(name):
    log, contact, metrics = CONTACT_CASES[name]
    result = measure(log)
    (c,) = contacts(result)
    for k, v in contact.items():
        assert c[k] == v, k
    m = overall(result)
    for k, v in metrics.items():
        assert m.get(k) == v, k


def test_reopen_restarts_a_contact():
    log = (Log().customer(0).route(0.1).reply(60).resolve(100)
           .customer(1000).route(1000.1).reply(1100))
    first, second = contacts(measure(log))
    assert (first["started_at"], first["frt_ms"], first["status"]) == (T0, 60_000, "resolved")
    assert (second["started_at"], second["frt_ms"], second["status"]) == (T0 + 1_000_000, 100_000,
                                                                        "answered")
    assert second["interval_start"] == T0 + INTERVAL  # offered in its own interval


def test_watermark_alone_makes_a_pending_contact_late_in_an_earlier_interval():
    log = Log().customer(840).route(840.1)  # 09:14, interval 09:00
    engine, out = KpiEngine(), []
    for e in log.tick(960).events:  # 09:16: still pending
        engine.apply(e)
    out += engine.flush()
    assert "sl_300" not in overall(fold_outputs(out))
    engine.apply(log.tick(1200).events[-1])  # 09:20: waited 6 min, and nothing else happened
    out += engine.flush()
    assert overall(fold_outputs(out))["unanswered_over_300"] == 1


def test_a_message_in_the_same_millisecond_as_the_resolution_belongs_to_the_resolved_episode():
    log = Log().customer(0).route(0.1).reply(10).resolve(50).customer(50).route(50)
    (c,) = contacts(measure(log))
    assert (c["status"], c["reply_gap_count"], c["started_at"]) == ("resolved", 1, T0)


def test_bot_only_conversation_is_no_contact_but_counts_for_containment():
    log = (Log().customer(0).route(0.1, kind="bot", queue="bot").reply(2, kind="bot", author="b")
           .resolve(60, by="bot").customer(70, thread="th2").route(70.1, thread="th2"))
    result = measure(log)
    assert [c["thread_id"] for c in contacts(result)] == ["th2"]
    m = overall(result)
    assert (m["conversations"], m["threads"], m["bot_contained"], m["bot_containment"],
            m["offered"]) == (2, 2, 1, 0.5, 1)
    assert result["intervals"][("acme", T0, "queue", "bot")]["bot_containment"] == 1.0


def test_containment_counts_threads_not_reopens():
    """Two threads: one bot-resolved twice (a reopen), one handed to a human: 1 of 2, not 2 of 3."""
    log = (Log().customer(0).route(0.1, kind="bot", queue="bot").resolve(20, by="bot")
           .customer(100).route(100.1, kind="bot", queue="bot").resolve(130, by="bot")
           .customer(200, thread="th2").route(200.1, kind="bot", queue="bot", thread="th2")
           .route(260, thread="th2").reply(300, thread="th2").resolve(400, thread="th2"))
    m = overall(measure(log))
    assert (m["conversations"], m["threads"], m["bot_contained"], m["bot_containment"]) == (
        3, 2, 1, 0.5)


def test_a_reopen_handed_to_a_human_uncontains_the_thread_in_its_first_interval():
    log = (Log().customer(0).route(0.1, kind="bot", queue="bot").resolve(20, by="bot")
           .customer(1000).route(1000.1, queue="billing"))  # next interval, to a human
    result = measure(log)
    first = overall(result)
    assert (first["threads"], first["bot_contained"], first["bot_containment"]) == (1, 0, 0.0)
    second = overall(result, 1000)
    assert (second["conversations"], second["threads"], second["offered"]) == (1, 0, 1)
    assert "bot_containment" not in second


def test_late_event_updates_its_own_interval():
    late = Log().customer(0).route(0.1).customer(7200, thread="th2").route(7200.1, thread="th2")
    late.reply(7260, thread="th2")
    engine = KpiEngine()
    for e in late.events:
        engine.apply(e)
    before = fold_outputs(engine.flush())
    assert overall(before)["sl_300"] == 0.0  # waited two hours as of the watermark
    late.reply(100)  # arrives now, happened at 09:01:40
    assert engine.apply(late.events[-1])
    out = engine.flush()
    assert {r["interval_start"] for r in out if "interval_start" in r} == {T0}
    after = fold_outputs(out)
    assert overall(after)["sl_300"] == 1.0
    assert [c["frt_ms"] for c in after["contacts"].values()] == [100_000]


def test_duplicates_change_nothing():
    log = (Log().presence(0, "a1", "online").customer(0).route(0.1).assign(1, "a1").reply(50)
           .resolve(300).tick(2000))
    engine = KpiEngine()
    for e in log.events:
        engine.apply(e)
    first = engine.flush()
    assert first
    redelivered = [engine.apply(dict(e)) for e in log.events]
    assert not any(r for e, r in zip(log.events, redelivered, strict=True)
                   if e["envelope"]["event_type"] != "ConversationQueued")
    assert engine.flush() == []
    assert run(log.events + log.events)[0] == run(log.events)[0]


def test_a_late_earlier_message_supersedes_the_contact():
    log = Log().customer(10).route(10.1).customer(0).reply(100)  # the 0 s message arrives late
    result, out = run(log.events)
    (c,) = contacts(result)
    assert (c["started_at"], c["frt_ms"]) == (T0, 100_000)
    assert [r["status"] for r in out if r["envelope"]["event_type"] == "ContactMeasured"
            and r["status"] == "void"] == ["void"]


# --- agents: presence, concurrency, idle ------------------------------------------------------

def _concurrency_log(pause: str) -> Log:
    return (Log().presence(600, "a1", "online")
            .customer(700).route(700.1).assign(720, "a1")
            .customer(800, thread="th2").route(800.1, thread="th2").assign(840, "a1", thread="th2")
            .resolve(1200)
            .presence(1500, "a1", pause).presence(2100, "a1", "online")
            .resolve(2400, thread="th2").presence(3000, "a1", "offline").tick(3600))


@pytest.mark.parametrize("pause", ["offline", "away"])
@pytest.mark.parametrize("interval,figures", [
    # 09:10 online; th1 from 09:12, th2 from 09:14
    (0, {"online_ms": 5 * MIN, "open_ms": 4 * MIN, "idle_ms": 2 * MIN, "peak": 2,
         "levels": {"0": 2 * MIN, "1": 2 * MIN, "2": MIN}}),
    # th1 resolved 09:20, offline/away 09:25-09:35 (th2 still assigned: not counted)
    (1, {"online_ms": 10 * MIN, "open_ms": 15 * MIN, "idle_ms": 0, "peak": 2,
         "levels": {"1": 5 * MIN, "2": 5 * MIN}}),
    # back 09:35, th2 resolved 09:40
    (2, {"online_ms": 10 * MIN, "open_ms": 5 * MIN, "idle_ms": 5 * MIN, "peak": 1,
         "levels": {"0": 5 * MIN, "1": 5 * MIN}}),
    # offline 09:50
    (3, {"online_ms": 5 * MIN, "open_ms": 0, "idle_ms": 5 * MIN, "peak": 0,
         "levels": {"0": 5 * MIN}}),
])
def test_concurrency_is_time_weighted_over_online_time_across_intervals(pause, interval, figures):
    result = measure(_concurrency_log(pause))
    assert result["agents"][("acme", "a1", T0 + interval * INTERVAL)] == figures
    assert ("acme", "a1", T0 + 4 * INTERVAL) not in result["agents"]  # offline: nothing published
    team = overall(result, interval * INTERVAL / S)
    assert team["team_concurrency"] == figures["open_ms"] / figures["online_ms"]


def test_open_assignment_and_presence_run_to_the_watermark():
    log = Log().presence(0, "a1", "online").customer(300).route(300.1).assign(300, "a1").tick(1200)
    result = measure(log)
    assert result["agents"][("acme", "a1", T0)]["levels"] == {"0": 5 * MIN, "1": 10 * MIN}
    assert result["agents"][("acme", "a1", T0 + INTERVAL)] == {
        "online_ms": 5 * MIN, "open_ms": 5 * MIN, "idle_ms": 0, "peak": 1, "levels": {"1": 5 * MIN}}


def test_transfer_moves_the_conversation_between_agents():
    log = (Log().presence(0, "a1", "online").presence(0, "a2", "online")
           .customer(0).route(0.1).assign(0, "a1").transfer(300, to_agent="a2")
           .transfer(600).resolve(800).tick(900))
    agents = measure(log)["agents"]
    assert agents[("acme", "a1", T0)]["open_ms"] == 5 * MIN
    assert agents[("acme", "a2", T0)]["open_ms"] == 5 * MIN  # to a queue at 600 s: unassigned
