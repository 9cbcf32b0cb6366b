"""Routing state: the tenant's desk (agents and waiting contacts), threads and customers.

Frozen records with JSON round trips for the Faust tables. ``evolve`` (in logic.py) is the
only thing that makes a new one from an old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Agent:
    agent_id: str
    presence: str = "offline"
    capacity: int = 0
    skills: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()  # empty: every channel
    queues: tuple[str, ...] = ()  # empty: every queue
    assigned: tuple[str, ...] = ()  # open thread ids, sorted
    version: tuple[int, str] = (0, "")  # (occurred_at, event_id) of the status applied last
    last_assigned_at: int = 0

    @property
    def load(self) -> int:
        return len(self.assigned)

    @property
    def available(self) -> bool:
        return self.presence == "online" and self.load < self.capacity


@dataclass(frozen=True)
class Waiting:
    """A contact waiting in a queue for a human agent."""

    thread_id: str
    customer_id: str
    queue: str
    priority: int
    enqueued_at: int
    channel: str | None = None
    language: str | None = None

    @property
    def order(self) -> tuple[int, int, str]:
        return (-self.priority, self.enqueued_at, self.thread_id)

    def row(self) -> list[Any]:
        """Positional JSON form; ``Waiting(*row)`` reads it back."""
        return [self.thread_id, self.customer_id, self.queue, self.priority, self.enqueued_at, self.channel,
                self.language]


@dataclass(frozen=True)
class Desk:
    """One tenant's agents and waiting contacts: one table entry per tenant."""

    agents: Mapping[str, Agent] = field(default_factory=dict)
    waiting: tuple[Waiting, ...] = ()  # by priority, then arrival
    wake_at: int | None = None  # when a closed queue with waiting contacts opens next

    def holder(self, thread_id: str) -> str | None:
        return next((a.agent_id for a in self.agents.values() if thread_id in a.assigned), None)

    def to_json(self) -> dict[str, Any]:
        # positional rows: the waiting line can be long and is rewritten on every change
        return {"agents": [[getattr(a, f) for f in _AGENT] for a in self.agents.values()],
                "waiting": [w.row() for w in self.waiting], "wake_at": self.wake_at}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Desk:
        if not d:
            return cls()
        agents = {}
        for row in d["agents"]:
            a = dict(zip(_AGENT, row))
            agents[a["agent_id"]] = Agent(**{**a, **{k: tuple(a[k]) for k in _TUPLES}})
        return cls(agents, tuple(Waiting(*row) for row in d["waiting"]), d.get("wake_at"))


_AGENT = tuple(f.name for f in fields(Agent))
_TUPLES = ("skills", "languages", "channels", "queues", "assigned", "version")


@dataclass(frozen=True)
class ThreadRoute:
    """What routing remembers of one thread."""

    thread_id: str
    customer_id: str
    stage: str = "new"  # new | bot | human | resolved
    queue: str | None = None
    priority: int = 0
    bot_turns: int = 0
    channel: str | None = None
    account: str | None = None
    recipient: dict[str, Any] | None = None  # the customer's channel identity: where replies go
    # (message event id, channel, account, sender) of the latest customer messages: a decision
    # answers on the channel of the message that caused it, whatever arrived since
    addresses: tuple[tuple[str, str, str, dict[str, Any]], ...] = ()
    language: str | None = None
    intents: tuple[tuple[str, float], ...] = ()  # of the last customer message
    sentiment: tuple[float, str] = (0.0, "neutral")
    handled: tuple[str, ...] = ()  # ids of events applied (bounded)
    parked: tuple[dict[str, Any], ...] = ()  # MessageEnriched that came before its message (bounded)

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _THREAD}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> ThreadRoute | None:
        if not d:
            return None
        return cls(**{**d, "intents": tuple(tuple(i) for i in d["intents"]), "sentiment": tuple(d["sentiment"]),
                      "handled": tuple(d["handled"]), "addresses": tuple(tuple(a) for a in d["addresses"]),
                      "parked": tuple(d.get("parked", ()))})


_THREAD = tuple(f.name for f in fields(ThreadRoute))


@dataclass(frozen=True)
class Contact:
    thread_id: str
    started_at: int
    negative: bool = False


@dataclass(frozen=True)
class CustomerRoute:
    customer_id: str
    tier: str | None = None
    tier_version: tuple[int, str] = (0, "")
    contacts: tuple[Contact, ...] = ()  # recent first-messages of threads (bounded)

    def to_json(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "tier": self.tier, "tier_version": self.tier_version,
                "contacts": [[c.thread_id, c.started_at, c.negative] for c in self.contacts]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> CustomerRoute | None:
        if not d:
            return None
        return cls(d["customer_id"], d["tier"], tuple(d["tier_version"]),
                   tuple(Contact(*c) for c in d["contacts"]))


@dataclass(frozen=True)
class View:
    """The state one event needs: its tenant's desk, its thread and its customer."""

    tenant: str
    desk: Desk = Desk()
    thread: ThreadRoute | None = None
    customer: CustomerRoute | None = None
