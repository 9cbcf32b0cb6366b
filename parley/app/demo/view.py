"""What the demo's actors know: the pipeline's decisions, folded from ``parley.conversations``.

``View.apply(event)`` takes the events of ``parley.conversations`` (decoded), in the topic's
order per partition (a customer's events are in event-time order there): threads with their
messages, who holds each thread (the bot, an agent, or nobody while it waits in a queue), the
routing decisions, transfers and resolutions, and the customer id of every channel identity the
pipeline has seen. No I/O, no clock: the same events give the same view.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ROUTING = "streams/routing"
IDENTITY_FIELDS = ("id", "display_name", "phone_e164", "email", "login_id")
ORDER_REF = re.compile(r"\bCMD-\d{5}\b")


@dataclass(frozen=True)
class Message:
    event_id: str
    at: int
    thread_id: str
    customer_id: str
    channel: str
    inbound: bool
    author_type: str  # customer | agent | bot | automation | system
    author_id: str | None
    identity: Mapping[str, Any]  # the customer's channel identity (sender in, recipient out)
    text: str


@dataclass(frozen=True)
class Transfer:
    at: int
    from_queue: str | None
    from_agent: str | None
    to_queue: str | None
    to_agent: str | None
    by_routing: bool  # a bot hand-off decided by routing, else an agent's transfer
    reason: str | None


@dataclass
class Thread:
    thread_id: str
    customer_id: str
    started_at: int
    contact_at: int  # the latest start or reopen
    status: str = "open"  # open | resolved
    resolved_at: int | None = None
    resolved_by: str | None = None
    holder: str | None = None  # "bot", an agent id, or None (waiting in a queue, or not routed)
    queue: str | None = None
    assigned_at: int | None = None
    reopened: int = 0
    decisions: list[dict[str, Any]] = field(default_factory=list)  # RoutingDecided, trimmed
    transfers: list[Transfer] = field(default_factory=list)
    assignments: list[tuple[int, str]] = field(default_factory=list)  # (at, agent)
    messages: list[Message] = field(default_factory=list)

    def after(self, at: int, *authors: str) -> list[Message]:
        """Messages later than ``at`` by these author types (all if none named)."""
        return [m for m in self.messages if m.at > at and (not authors or m.author_type in authors)]

    def last(self, *authors: str, by: str | None = None) -> Message | None:
        """The latest message by these author types (and author id)."""
        return next((m for m in reversed(self.messages)
                     if m.author_type in authors and (by is None or m.author_id == by)), None)

    @property
    def last_inbound(self) -> Message | None:
        return self.last("customer")

    def orders(self) -> set[str]:
        return {o for m in self.messages if m.inbound for o in ORDER_REF.findall(m.text)}


@dataclass
class View:
    bot_queue: str = "bot"
    threads: dict[str, Thread] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    inbound_at: dict[tuple[str, int], str] = field(default_factory=dict)  # (channel, at) -> event id
    customers: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, id) -> customer
    intents: dict[str, tuple[str, ...]] = field(default_factory=dict)  # message event id -> names
    events: int = 0
    newest: int = 0

    def apply_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        for e in events:
            self.apply(e)

    def apply(self, e: Mapping[str, Any]) -> None:
        kind = e["envelope"]["event_type"]
        self.events += 1
        self.newest = max(self.newest, e["envelope"]["occurred_at"])
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, e)

    def held_by(self, holder: str) -> list[Thread]:
        """Open threads ``holder`` ("bot" or an agent id) has, by thread id."""
        return sorted((t for t in self.threads.values() if t.status == "open" and t.holder == holder),
                      key=lambda t: t.thread_id)

    def thread_of(self, channel: str, at: int) -> Thread | None:
        """The thread of the inbound message sent on ``channel`` at ``at``."""
        eid = self.inbound_at.get((channel, at))
        m = self.messages.get(eid) if eid else None
        return self.threads.get(m.thread_id) if m else None

    def message_at(self, channel: str, at: int) -> Message | None:
        eid = self.inbound_at.get((channel, at))
        return self.messages.get(eid) if eid else None

    # -- handlers --

    def _thread(self, e: Mapping[str, Any]) -> Thread:
        tid = e["thread_id"]
        t = self.threads.get(tid)
        if t is None:
            at = e["envelope"]["occurred_at"]
            t = self.threads[tid] = Thread(tid, e["customer_id"], at, at)
        return t

    def _started(self, e: Mapping[str, Any]) -> None:
        self._thread(e)

    def _reopened(self, e: Mapping[str, Any]) -> None:
        t = self._thread(e)
        t.status, t.holder, t.assigned_at = "open", None, None
        t.contact_at = e["envelope"]["occurred_at"]
        t.reopened += 1

    def _message(self, e: Mapping[str, Any]) -> None:
        if not e.get("thread_id") or e["envelope"]["event_id"] in self.messages:
            return
        inbound = e["envelope"]["event_type"] == "MessageReceived"
        ident = e["sender"] if inbound else e["recipient"]
        m = Message(e["envelope"]["event_id"], e["envelope"]["occurred_at"], e["thread_id"],
                    e["customer_id"], e["channel"], inbound,
                    "customer" if inbound else e.get("author_type") or "agent",
                    None if inbound else e.get("author_id"),
                    {k: ident.get(k) for k in IDENTITY_FIELDS if ident.get(k)}, e.get("text") or "")
        self.messages[m.event_id] = m
        self._thread(e).messages.append(m)
        if inbound:
            self.inbound_at[(m.channel, m.at)] = m.event_id
            self.customers[(m.channel, ident["id"])] = m.customer_id

    def _enriched(self, e: Mapping[str, Any]) -> None:
        self.intents[e["message_event_id"]] = tuple(i["name"] for i in e.get("intents") or ()
                                                    if i["confidence"] >= 0.5)

    def _decided(self, e: Mapping[str, Any]) -> None:
        t = self._thread(e)
        t.decisions.append({"at": e["envelope"]["occurred_at"], "target": e["target_kind"],
                            "queue": e["queue"], "agent": e.get("agent_id"),
                            "reasons": list(e.get("reasons") or ()),
                            "open": e.get("business_hours_open")})
        if e["target_kind"] == "bot":
            t.holder, t.queue = "bot", e["queue"]
        elif t.holder == "bot":
            t.holder = None

    def _queued(self, e: Mapping[str, Any]) -> None:
        t = self._thread(e)
        t.queue = e.get("queue") or t.queue
        if t.holder == "bot":
            t.holder = None

    def _assigned(self, e: Mapping[str, Any]) -> None:
        t = self._thread(e)
        t.holder, t.assigned_at = e["agent_id"], e["envelope"]["occurred_at"]
        t.queue = e.get("queue") or t.queue
        t.assignments.append((t.assigned_at, t.holder))

    def _transferred(self, e: Mapping[str, Any]) -> None:
        t = self._thread(e)
        at = e["envelope"]["occurred_at"]
        by_routing = e["envelope"].get("producer") == ROUTING
        t.transfers.append(Transfer(at, e.get("from_queue"), e.get("from_agent_id"), e.get("to_queue"),
                                    e.get("to_agent_id"), by_routing, e.get("reason")))
        if e.get("to_agent_id"):
            t.holder, t.assigned_at = e["to_agent_id"], at
            t.assignments.append((at, t.holder))
        elif by_routing:  # a bot hand-off: routing's assignment (same time) may come first
            if t.holder == "bot":
                t.holder = None
        elif t.holder in (None, e.get("from_agent_id")):
            t.holder = None
        t.queue = e.get("to_queue") or t.queue

    def _resolved(self, e: Mapping[str, Any]) -> None:
        t = self._thread(e)
        if t.status == "resolved":
            return
        t.status, t.holder = "resolved", None
        t.resolved_at, t.resolved_by = e["envelope"]["occurred_at"], e.get("resolved_by")


_HANDLERS = {
    "ConversationStarted": View._started, "ConversationReopened": View._reopened,
    "MessageReceived": View._message, "MessageSent": View._message,
    "MessageEnriched": View._enriched, "RoutingDecided": View._decided,
    "ConversationQueued": View._queued, "ConversationAssigned": View._assigned,
    "ConversationTransferred": View._transferred, "ConversationResolved": View._resolved,
}
