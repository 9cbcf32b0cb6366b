"""The demo's actors act on the pipeline's decisions only: views built by hand from the events the
pipeline publishes on parley.conversations, and what each actor plans for a slice."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from parley.app.demo.actors import Actors
from parley.app.demo.view import View
from parley.app.synthetic.scenario import (
    BOT_ID,
    Context,
    Conversation,
    Inbound,
    Link,
    Merge,
    Receipt,
    Reply,
    Resolve,
    Scenario,
    Transfer,
    build_day,
    make_inbound,
)

DAY = date(2026, 11, 17)
MIN = 60_000


@pytest.fixture(scope="module")
def day() -> Scenario:
    return build_day(7, 0.3, DAY)


def _story(day: Scenario, story: str) -> Conversation:
    return next(c for c in day.conversations if c.story == story)


def _env(kind: str, at: int, eid: str, producer: str = "streams/threads") -> dict[str, Any]:
    return {"event_type": kind, "occurred_at": at, "event_id": eid, "tenant_id": "acme", "producer": producer}


class Pipeline:
    """Writes what the pipeline would publish into a View, with readable ids."""

    def __init__(self, actors: Actors) -> None:
        self.view, self.actors, self.n = View(), actors, 0

    def apply(self, kind: str, at: int, thread: str, customer: str, producer: str = "streams/routing",
              **fields: Any) -> str:
        self.n += 1
        eid = f"{kind}-{self.n}"
        self.view.apply({"envelope": _env(kind, at, eid, producer), "thread_id": thread, "customer_id": customer,
                         **fields})
        return eid

    def customer_says(self, m: Inbound, thread: str, customer: str, *, new: bool = False,
                      intents: tuple[str, ...] = ()) -> str:
        """The message (sent by the actors or the agenda), threaded and enriched."""
        self.actors.memory.record(m)
        if new:
            self.apply("ConversationStarted", m.at_ms, thread, customer, "streams/threads")
        sender = {"channel": m.channel, "id": m.customer.phone if m.channel == "rbm" else m.customer.handle(m.channel)}
        eid = self.apply("MessageReceived", m.at_ms, thread, customer, "ingress", channel=m.channel, sender=sender,
                         text=m.text)
        self.view.apply({"envelope": _env("MessageEnriched", m.at_ms, f"enr-{eid}"), "message_event_id": eid,
                         "thread_id": thread, "customer_id": customer,
                         "intents": [{"name": i, "confidence": 0.8} for i in intents]})
        return eid

    def business_says(self, at: int, thread: str, customer: str, author_type: str, author: str) -> None:
        t = self.view.threads[thread]
        last = t.last_inbound
        self.apply("MessageSent", at, thread, customer, "ingress/agent-api", channel=last.channel,
                   recipient=dict(last.identity), author_type=author_type, author_id=author, text="…")

    def assign(self, at: int, thread: str, customer: str, agent: str, queue: str = "general") -> None:
        self.apply("RoutingDecided", at, thread, customer, target_kind="agent", queue=queue, agent_id=agent,
                   reasons=[f"queue:{queue}:default", f"assigned:least_loaded:{agent}"])
        self.apply("ConversationAssigned", at, thread, customer, agent_id=agent, queue=queue)


def _opening(c: Conversation, number: int = 9000) -> Inbound:
    at, say = c.opening[0]
    return make_inbound(c, say, say.channel or c.channel, at, number, None)


def _at(day: Scenario, h: int, m: int = 0) -> int:
    return day.at(h * 60 + m)


def _plan(actors: Actors, view: View, start: int, minutes: int = 5) -> tuple[list, list]:
    return actors.plan(view, start, start + minutes * MIN)


def _agent_thread(day: Scenario, story: str = "transfer", agent: str = "a-sofia", at: int | None = None):
    c = _story(day, story)
    actors = Actors(day)
    p = Pipeline(actors)
    m = replace(_opening(c), at_ms=at or _at(day, 10, 2))
    eid = p.customer_says(m, "t-1", "cust-A", new=True)
    p.assign(m.at_ms + 1000, "t-1", "cust-A", agent, "orders")
    return c, actors, p, m, eid


def test_an_agent_answers_the_thread_routing_assigned_to_it(day: Scenario) -> None:
    c, actors, p, m, eid = _agent_thread(day)
    start = _at(day, 10, 5)
    now, later = _plan(actors, p.view, start, minutes=15)  # a slow first reply takes up to 12 min
    (reply,) = [s for s in now if isinstance(s, Reply)]
    assert (reply.author_type, reply.author_id, reply.thread_id, reply.customer_id) == ("agent", "a-sofia", "t-1",
                                                                                         "cust-A")
    assert reply.in_reply_to == eid and reply.channel == m.channel and start <= reply.at_ms < start + 15 * MIN
    assert all(start <= s.at_ms < start + 15 * MIN for s in now) and all(s.at_ms >= start + 15 * MIN for s in later)
    receipts = [s for s in [*now, *later] if isinstance(s, Receipt)]
    assert all(r.reply == reply and r.at_ms > reply.at_ms for r in receipts)


def test_nobody_answers_a_thread_the_pipeline_has_not_assigned(day: Scenario) -> None:
    c = _story(day, "transfer")
    actors = Actors(day)
    p = Pipeline(actors)
    m = replace(_opening(c), at_ms=_at(day, 10, 2))
    p.customer_says(m, "t-1", "cust-A", new=True)
    p.apply("RoutingDecided", m.at_ms, "t-1", "cust-A", target_kind="queue", queue="orders",
            reasons=["queue:orders:intent=x", "waiting:no_agent_available"])
    p.apply("ConversationQueued", m.at_ms, "t-1", "cust-A", queue="orders", priority=0)
    now, _ = _plan(actors, p.view, _at(day, 10, 5))
    assert not [s for s in now if isinstance(s, Reply | Resolve | Transfer)]


def test_the_customer_answers_an_agent_with_the_next_line_and_the_agent_transfers_billing(day: Scenario) -> None:
    c, actors, p, m, eid = _agent_thread(day)
    p.business_says(_at(day, 10, 6), "t-1", "cust-A", "agent", "a-sofia")
    now, _ = _plan(actors, p.view, _at(day, 10, 10), minutes=10)
    (ask,) = [s for s in now if isinstance(s, Inbound)]
    assert ask.label == "transfer_ask" and ask.conversation == c.key and ask.at_ms > _at(day, 10, 6)
    p.customer_says(ask, "t-1", "cust-A")
    now, _ = _plan(actors, p.view, ask.at_ms - ask.at_ms % (5 * MIN) + 5 * MIN, minutes=10)
    reply, transfer = [s for s in now if isinstance(s, Reply | Transfer)]
    assert isinstance(transfer, Transfer) and transfer.to_queue == "billing" and transfer.agent_id == "a-sofia"
    assert reply.at_ms < transfer.at_ms and transfer.reason == "billing_question"


def test_an_agent_resolves_after_thanks_or_a_long_silence(day: Scenario) -> None:
    c, actors, p, m, eid = _agent_thread(day, story="vip", agent="a-claire")
    p.business_says(_at(day, 10, 6), "t-1", "cust-A", "agent", "a-claire")
    quiet, _ = _plan(actors, p.view, _at(day, 10, 10))
    assert not [s for s in quiet if isinstance(s, Resolve)]  # the customer may still answer
    late, _ = _plan(actors, p.view, _at(day, 10, 35), minutes=10)
    (done,) = [s for s in late if isinstance(s, Resolve)]
    assert (done.resolved_by, done.agent_id, done.thread_id) == ("agent", "a-claire", "t-1")


def test_agents_hand_their_threads_back_before_going_offline(day: Scenario) -> None:
    c, actors, p, m, eid = _agent_thread(day, at=_at(day, 12, 50))  # Sofia's morning shift ends at 13:00
    p.business_says(_at(day, 12, 53), "t-1", "cust-A", "agent", "a-sofia")
    now, _ = _plan(actors, p.view, _at(day, 12, 55))
    (t,) = [s for s in now if isinstance(s, Transfer)]
    assert t.reason == "end_of_shift" and t.to_queue == "orders" and t.at_ms < _at(day, 13)


def test_agents_wait_for_the_end_of_their_break(day: Scenario) -> None:
    c, actors, p, m, eid = _agent_thread(day, agent="a-claire", at=_at(day, 10, 44))  # break 10:45-11:00
    now, _ = _plan(actors, p.view, _at(day, 10, 45), minutes=10)
    assert not [s for s in now if isinstance(s, Reply)]
    now, _ = _plan(actors, p.view, _at(day, 10, 55), minutes=20)
    (reply,) = [s for s in now if isinstance(s, Reply)]
    assert reply.at_ms >= _at(day, 11)


@pytest.mark.parametrize("story, kind", [("link", Link), ("merge", Merge)])
def test_a_customer_writing_from_another_channel_gets_linked_or_merged(day: Scenario, story: str,
                                                                      kind: type) -> None:
    c = _story(day, story)
    actors = Actors(day)
    p = Pipeline(actors)
    first = replace(_opening(c), at_ms=_at(day, 10, 2))
    p.customer_says(first, "t-1", "cust-A", new=True)
    switch = next(say for say in c.to_agent if say is not None and say.label == "switch")
    moved = make_inbound(c, switch, switch.channel, _at(day, 10, 20), 9001, first)
    p.customer_says(moved, "t-2", "cust-B", new=True)
    p.assign(moved.at_ms, "t-2", "cust-B", "a-sofia")
    now, _ = _plan(actors, p.view, _at(day, 10, 25))
    (step,) = [s for s in now if isinstance(s, Link | Merge)]
    assert isinstance(step, kind) and step.agent_id == "a-sofia"
    if isinstance(step, Link):  # the first identity joins the customer writing now
        assert (step.channel, step.customer_id) == (c.channel, "cust-B")
        assert step.identity == c.customer.handle(c.channel)
    else:  # the newer profile merges into the older one
        assert (step.customer_id, step.merged_customer_id) == ("cust-A", "cust-B")
    assert any(isinstance(s, Reply) and s.thread_id == "t-2" for s in now)


@pytest.mark.parametrize("intents, expect", [(("order_status",), "answer"), (("thanks",), "resolve"),
                                             (("refund",), "handoff")])
def test_the_bot_answers_resolves_or_asks_for_a_person(day: Scenario, intents: tuple[str, ...],
                                                        expect: str) -> None:
    c = next(c for c in day.conversations if c.intent == "order_status" and not c.story)
    actors = Actors(day)
    p = Pipeline(actors)
    m = replace(_opening(c), at_ms=_at(day, 10, 2))
    p.customer_says(m, "t-1", "cust-A", new=True, intents=intents)
    p.apply("RoutingDecided", m.at_ms, "t-1", "cust-A", target_kind="bot", queue="bot", bot_id=BOT_ID,
            reasons=["bot_first:order_status"])
    now, _ = _plan(actors, p.view, _at(day, 10, 5))
    (step,) = [s for s in now if isinstance(s, Reply | Resolve)]
    if expect == "resolve":
        assert isinstance(step, Resolve) and step.resolved_by == "bot"
    else:
        assert isinstance(step, Reply) and step.author_type == "bot" and step.author_id == BOT_ID
        assert step.template == ("handoff" if expect == "handoff" else None)


def test_the_crm_tells_the_tier_of_a_vip_once_the_pipeline_shows_them(day: Scenario) -> None:
    c = _story(day, "vip")
    actors = Actors(day)
    p = Pipeline(actors)
    p.customer_says(replace(_opening(c), at_ms=_at(day, 9, 2)), "t-1", "cust-V", new=True)
    now, _ = _plan(actors, p.view, _at(day, 9, 5))
    (ctx,) = [s for s in now if isinstance(s, Context)]
    assert (ctx.customer_id, ctx.tier) == ("cust-V", c.customer.tier)
    again, _ = _plan(actors, p.view, _at(day, 9, 10))
    assert not [s for s in again if isinstance(s, Context)]


def test_the_same_view_gives_the_same_plan(day: Scenario) -> None:
    plans = []
    for _ in range(2):
        c, actors, p, m, eid = _agent_thread(day)
        p.business_says(_at(day, 10, 6), "t-1", "cust-A", "agent", "a-sofia")
        plans.append([_plan(actors, p.view, _at(day, 10, k)) for k in (10, 15, 20)])
    assert plans[0] == plans[1]


def test_the_view_keeps_the_agent_when_routing_publishes_its_handoff_after_the_assignment() -> None:
    """Routing's bot hand-off: RoutingDecided, Queued, Assigned, then Transferred (same time, by rank)."""
    v = View()
    at = 1_000_000
    for kind, fields in (("ConversationStarted", {}),
                         ("RoutingDecided", {"target_kind": "bot", "queue": "bot", "reasons": []}),
                         ("RoutingDecided", {"target_kind": "agent", "queue": "orders", "agent_id": "a-1",
                                             "reasons": ["handoff:human_request"]}),
                         ("ConversationQueued", {"queue": "orders", "priority": 0}),
                         ("ConversationAssigned", {"agent_id": "a-1", "queue": "orders"}),
                         ("ConversationTransferred", {"from_queue": "bot", "to_queue": "orders",
                                                      "reason": "handoff:human_request"})):
        v.apply({"envelope": _env(kind, at, f"{kind}-{len(v.threads)}-{v.events}", "streams/routing"),
                 "thread_id": "t", "customer_id": "c", **fields})
    t = v.threads["t"]
    assert t.holder == "a-1" and t.queue == "orders" and [x.by_routing for x in t.transfers] == [True]
    v.apply({"envelope": _env("ConversationTransferred", at + 5, "x", "ingress/agent-api"), "thread_id": "t",
             "customer_id": "c", "from_agent_id": "a-1", "to_queue": "billing"})
    assert t.holder is None and t.queue == "billing"
    v.apply({"envelope": _env("ConversationResolved", at + 9, "r"), "thread_id": "t", "customer_id": "c",
             "resolved_by": "agent"})
    assert t.status == "resolved" and v.held_by("a-1") == []


def test_the_demo_day_is_a_weekday_and_its_files_ship_with_the_package() -> None:
    from parley.app.demo.main import packaged, the_day
    from parley.settings import DemoSettings

    s = DemoSettings()
    assert the_day(s, date(2026, 11, 30)) == date(2026, 11, 27)  # a Monday: the Friday before
    assert the_day(s, date(2026, 11, 25)) == date(2026, 11, 24)
    assert the_day(DemoSettings(day="2026-11-29"), date(2026, 11, 30)) == date(2026, 11, 29)
    for name in ("accounts.example.toml", "routing.example.toml"):
        p = packaged(name)
        assert p.is_file() and p.read_text() == (Path(__file__).parents[2] / "config" / name).read_text()
