"""Routing state: the tenant's desk (agents and waiting contacts), threads and customers.

Frozen records with JSON round trips for the stage's stores, and the tenant's :class:`Desk`,
which ``evolve`` (in logic.py) changes in place. ``evolve`` is the only thing that changes state.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

Kind = tuple[str, str | None, str | None]  # a waiting contact's (queue, channel, language)


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

    @property
    def kind(self) -> Kind:
        """What decides which agents may take the contact."""
        return (self.queue, self.channel, self.language)

    def row(self) -> list[Any]:
        """Positional JSON form; ``Waiting(*row)`` reads it back."""
        return [self.thread_id, self.customer_id, self.queue, self.priority, self.enqueued_at, self.channel,
                self.language]


class Desk:
    """One tenant's agents and waiting contacts.

    The one mutable part of routing's state: a tenant's waiting line can hold thousands of
    contacts, and copying it on every event would make routing slower the longer the line. So
    ``evolve`` changes a desk in place, through the methods below, each O(log n) or better; it
    keeps one sorted line (priority, arrival, thread) per *kind* of contact (queue, channel,
    language: what decides which agents may take it), indexes who holds which thread, and
    remembers what changed since ``take_changes`` (what the stage writes to its changelog).
    Decisions read it through queries only. Lines per kind let an assignment look at the head of
    each line instead of walking the whole line past contacts no free agent may take (a closed
    queue, a language nobody online speaks), which made every decision O(waiting).
    """

    __slots__ = ("agents", "wake_at", "_waiting", "_lines", "_holder", "version", "_dirty", "_head")

    def __init__(self, agents: Mapping[str, Agent] | None = None, waiting: Iterable[Waiting] = (),
                 wake_at: int | None = None) -> None:
        self.agents: dict[str, Agent] = dict(agents or {})
        self.wake_at = wake_at
        self._waiting: dict[str, Waiting] = {}
        self._lines: dict[Kind, list[tuple[int, int, str]]] = {}
        self._holder = {tid: a.agent_id for a in self.agents.values() for tid in a.assigned}
        self.version = 0  # counts changes: a step that changed nothing leaves it alone
        self._dirty: set[str] = set()
        self._head = False
        for w in waiting:
            self.enqueue(w)
        self.take_changes()
        self.version = 0

    # --- queries ---------------------------------------------------------------------------

    @property
    def waiting(self) -> tuple[Waiting, ...]:
        """The line, by priority then arrival (a copy: O(n log n))."""
        return tuple(sorted(self._waiting.values(), key=lambda w: w.order))

    def heads(self) -> list[tuple[tuple[int, int, str], Kind]]:
        """The first contact (its order key) of each kind's line, and the kind."""
        return [(line[0], kind) for kind, line in self._lines.items()]

    def entry(self, thread_id: str) -> Waiting | None:
        return self._waiting.get(thread_id)

    def holder(self, thread_id: str) -> str | None:
        return self._holder.get(thread_id)

    def waiting_queues(self) -> list[str]:
        """The queues with contacts waiting."""
        return sorted({kind[0] for kind in self._lines})

    def __len__(self) -> int:
        return len(self._waiting)

    # --- changes ---------------------------------------------------------------------------

    def enqueue(self, w: Waiting) -> None:
        self.dequeue(w.thread_id)
        self._waiting[w.thread_id] = w
        bisect.insort(self._lines.setdefault(w.kind, []), w.order)
        self._changed(w.thread_id)

    def dequeue(self, thread_id: str) -> None:
        w = self._waiting.pop(thread_id, None)
        if w is None:
            return
        line = self._lines[w.kind]
        del line[bisect.bisect_left(line, w.order)]
        if not line:
            del self._lines[w.kind]
        self._changed(thread_id)

    def set_agent(self, agent: Agent) -> None:
        old = self.agents.get(agent.agent_id)
        if old == agent:
            return
        for tid in old.assigned if old else ():
            self._holder.pop(tid, None)
        for tid in agent.assigned:
            self._holder[tid] = agent.agent_id
        self.agents[agent.agent_id] = agent
        self._changed(None)

    def set_wake(self, wake_at: int | None) -> None:
        if wake_at != self.wake_at:
            self.wake_at = wake_at
            self._changed(None)

    def _changed(self, thread_id: str | None) -> None:
        self.version += 1
        if thread_id is None:
            self._head = True
        else:
            self._dirty.add(thread_id)

    def take_changes(self) -> tuple[bool, list[str]]:
        """(head changed, thread ids whose waiting entry changed) since the last call."""
        head, dirty = self._head, sorted(self._dirty)
        self._head, self._dirty = False, set()
        return head, dirty

    def copy(self) -> Desk:
        return Desk(self.agents, self.waiting, self.wake_at)

    # --- equality and JSON -----------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Desk):
            return NotImplemented
        return (self.agents, self._waiting, self.wake_at) == (other.agents, other._waiting, other.wake_at)

    __hash__ = None  # type: ignore[assignment]  # mutable (changed in place): not hashable

    def __repr__(self) -> str:
        return f"Desk(agents={len(self.agents)}, waiting={len(self._waiting)}, wake_at={self.wake_at})"

    def head_json(self) -> dict[str, Any]:
        """Agents and wake time: one changelog value per tenant."""
        return {"agents": [[getattr(a, f) for f in _AGENT] for a in self.agents.values()], "wake_at": self.wake_at}

    def to_json(self) -> dict[str, Any]:
        # positional rows: the waiting line can be long
        return {**self.head_json(), "waiting": [w.row() for w in self.waiting]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Desk:
        if not d:
            return cls()
        agents = {}
        for row in d["agents"]:
            # not strict: a row stored before a trailing field was added is shorter (the field's default)
            a = dict(zip(_AGENT, row, strict=False))
            agents[a["agent_id"]] = Agent(**{**a, **{k: tuple(a[k]) for k in _TUPLES}})
        return cls(agents, (Waiting(*row) for row in d.get("waiting", ())), d.get("wake_at"))


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
    """The state one event needs: its tenant's desk (changed in place), its thread and its
    customer (replaced)."""

    tenant: str
    desk: Desk
    thread: ThreadRoute | None = None
    customer: CustomerRoute | None = None
