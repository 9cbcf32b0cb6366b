"""The KPI stage's state, named: what each store holds, how it goes to its changelog, and a
thread's measure (the stage's input), computed where the thread's events are.

State (``Stores``: any ``MutableMapping``s; the stage's stores in the worker, dicts in tests).
Values are the dataclasses below, mutated in place and written back by assignment (a store
writes a changelog record on ``__setitem__`` only); ``CODECS`` says how each store's values go to
and from its changelog (``to_json``/``from_json``: JSON objects with the field names, since a
value is written at most once per key and transaction; sizes are the measures' episode
summaries, not the key names):

* ``threads``  ``tenant|thread`` -> :class:`ThreadState`: the thread's latest measure as
  applied (a measure older than its version is ignored, so measures may arrive in any order),
  and the last summary of contacts a late event superseded.
* ``buckets``  ``tenant|interval`` -> :class:`IntervalState`: the interval's message and
  sentiment counters (sums over its threads' counters) and every (dimension, value) it ever had.
  Its size is bounded by the dimensions, not by the traffic.
* ``members``  ``tenant|interval|episode`` -> thread id: the episodes that started in the
  interval, one key each, so a new contact writes one small record and not
  the whole interval's index (the engine indexes them by interval in memory).
* ``agents``   ``tenant|agent`` -> :class:`AgentState`: presence history and open assignments.
* ``pieces``   ``tenant|agent|interval`` -> ``{span_id: [lo, hi]}``: closed assignment spans cut
  at interval boundaries, so an agent-interval is recomputed from its own pieces only.
* ``tenants``  ``tenant`` -> :class:`TenantState`: watermark, agents seen, agents online.

The input, a thread's :class:`Measure`, travels on ``kpi.threads`` with the short keys it has
always had there (``eps``, ``spans``, ``counts``, ``t``, ``v``), so records written by an older
worker still read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams.kpi import logic
from streams.kpi.logic import bucket

Cause = tuple[str, str]  # (event_id, correlation_id) of the event that triggered a change
Summary = dict[str, Any]  # an episode's summary (``logic.measure_thread``)
Span = list[Any]  # an assignment span: [span_id, agent_id, from, to or None while open]


@dataclass(slots=True)
class Measure:
    """A thread's KPI measure (``measure()``): what the conversations stage sends on
    ``kpi.threads`` for each thread whose events changed."""

    episodes: dict[str, Summary]  # episode id -> summary
    spans: list[Span]
    counters: dict[str, int]  # "interval|metric|dimension|value" -> messages (or labels)
    latest: int  # the thread's latest event time
    version: tuple[int, int]  # (events, latest time): grows with the thread's event set

    def to_json(self) -> dict[str, Any]:
        # the keys ``kpi.threads`` has always carried
        return {"eps": self.episodes, "spans": self.spans, "counts": self.counters,
                "t": self.latest, "v": self.version}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Measure:
        return cls(d["eps"], d["spans"], d["counts"], d["t"], tuple(d["v"]))


@dataclass(slots=True)
class ThreadState:
    """The ``threads`` store's value: a thread's latest measure as applied."""

    episodes: dict[str, Summary] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    version: tuple[int, int] = (-1, 0)  # of the measure applied: an older or equal one is ignored
    # contact id -> its last summary, for the contacts a later measure no longer has (or no
    # longer as a contact): they are published once more, void
    voided: dict[str, Summary] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "spans": self.spans, "counters": self.counters,
                "version": self.version, "voided": self.voided}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ThreadState:
        return cls(d["episodes"], d["spans"], d["counters"], tuple(d["version"]), d["voided"])


@dataclass(slots=True)
class IntervalState:
    """The ``buckets`` store's value: an interval's counters and keys (its contacts are in
    ``members``)."""

    messages: dict[str, int] = field(default_factory=dict)  # "metric|dimension|value" -> n
    # every (dimension, value) the interval ever had: published empty once it has no data
    keys: set[tuple[str, str]] = field(default_factory=set)
    # episode id -> thread: only in values written by a worker before ``members`` existed; the
    # engine moves them to ``members`` when it first reads the store
    legacy_episodes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": self.messages, "keys": sorted(self.keys)}
        if self.legacy_episodes:
            out["episodes"] = self.legacy_episodes
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> IntervalState:
        return cls(d["messages"], {(dim, value) for dim, value in d["keys"]}, d.get("episodes") or {})


@dataclass(slots=True)
class AgentState:
    """The ``agents`` store's value: an agent's presence and the assignments still open."""

    # [occurred_at, event_id, online (1 or 0)] per status event, sorted: the presence function
    presence: list[list[Any]] = field(default_factory=list)
    open_spans: dict[str, int] = field(default_factory=dict)  # span id -> from

    def to_json(self) -> dict[str, Any]:
        return {"presence": self.presence, "open_spans": self.open_spans}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AgentState:
        return cls(d["presence"], d["open_spans"])


@dataclass(slots=True)
class TenantState:
    """The ``tenants`` store's value."""

    watermark: int = 0  # the largest event time seen
    first_at: int | None = None  # the first event time seen
    # the watermark of this worker's last flush, written with the next advance, so a successor
    # knows from where figures may be unpublished
    flushed_at: int | None = None
    agents: list[str] = field(default_factory=list)  # every agent with a presence event
    online: list[str] = field(default_factory=list)  # the agents online at the watermark

    def to_json(self) -> dict[str, Any]:
        return {"watermark": self.watermark, "first_at": self.first_at,
                "flushed_at": self.flushed_at, "agents": self.agents, "online": self.online}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TenantState:
        return cls(d["watermark"], d["first_at"], d["flushed_at"], d["agents"], d["online"])


def _as_is(value: Any) -> Any:
    return value


StoreCodec = tuple[Callable[[Any], Any], Callable[[Any], Any]]
# store name -> (value to JSON, JSON to value): how the stage's changelogs hold each store
CODECS: dict[str, StoreCodec] = {
    "threads": (ThreadState.to_json, ThreadState.from_json),
    "buckets": (IntervalState.to_json, IntervalState.from_json),
    "agents": (AgentState.to_json, AgentState.from_json),
    "pieces": (_as_is, _as_is),  # {span_id: [lo, hi]}
    "tenants": (TenantState.to_json, TenantState.from_json),
    "members": (_as_is, _as_is),  # thread id
}


@dataclass
class Stores:
    threads: MutableMapping[str, ThreadState] = field(default_factory=dict)
    buckets: MutableMapping[str, IntervalState] = field(default_factory=dict)
    agents: MutableMapping[str, AgentState] = field(default_factory=dict)
    pieces: MutableMapping[str, dict[str, list[int]]] = field(default_factory=dict)
    tenants: MutableMapping[str, TenantState] = field(default_factory=dict)
    members: MutableMapping[str, str] = field(default_factory=dict)


def measure(tenant: str, thread: str, items: Iterable[list[Any]], latest: int = 0) -> Measure:
    """A thread's KPI measure from its compact events (``logic.compact``): episodes, assignment
    spans, message counters per interval, its latest event time (at least ``latest``) and a
    version: (events, latest time), which only grows as the thread's event set does, so the
    aggregate keeps the newest measure whatever order measures reach it in. A function of the
    event set only."""
    items = list(items)
    episodes, spans = logic.measure_thread(tenant, thread, items)
    t = max([latest, *(i[logic.AT] for i in items)])
    return Measure(episodes, spans, counts(items), t, (len(items), t))


def counts(items: Iterable[list[Any]]) -> dict[str, int]:
    """Messages in and out, and sentiment labels, per interval of their own time:
    ``"interval|metric|dimension|value" -> n``."""
    out: dict[str, int] = {}
    for at, rank, _event_id, a, b, c in items:  # a, b, c: the type's fields (``logic.compact``)
        names: list[str] = []
        if rank == logic.R_RECEIVED:
            channel = a
            names += _dims("messages_in", channel)
        elif rank == logic.R_SENT:
            channel, author_type, author_id = a, b, c
            names += _dims("messages_out", channel)
            if author_type in ("agent", "bot"):
                names += _dims(f"messages_out_{author_type}", channel)
            if author_type == "agent" and author_id is not None:
                names.append(f"messages_out|agent|{author_id}")
        elif rank == logic.R_ENRICHED:
            label, channel = b, c
            names += _dims(f"sentiment_{label}", channel)
        interval = bucket(at)
        for name in names:
            key = f"{interval}|{name}"
            out[key] = out.get(key, 0) + 1
    return out


def _dims(metric: str, channel: str | None) -> list[str]:
    return [f"{metric}|overall|all", f"{metric}|channel|{channel or ''}"]
