"""One task: a stage on one partition of its inputs, with its stores, sequencer and outputs.

No I/O here. A runner (the Kafka worker, or the in-memory runner of the tests) restores the
task's stores, ``feed``s it records, calls ``advance`` with the upstream watermarks, and at each
commit takes ``finish()``: the outputs, the changelog records and the offsets to commit, which
it writes in one transaction. The stage sees the task as its context (``ctx``): stores,
``send``/``forward``, timers, the current record.

Watermarks. A task's input watermark is the smallest of its *active* sources: (a) the
watermarks published by the upstream tasks that write its sequenced inputs, each usable only
once this task has read their data up to the end offsets published with it, and (b) for records
from outside the stream runtime (ingress, agent API: no ``pt`` header), the latest event time
seen on the partition minus ``lateness_ms``, a bound that shrinks as the partition stays
caught up and quiet (event time goes on while nothing comes). A source is *idle* once caught
up and quiet for ``idle_ms`` (an upstream task is idle when all its sources are and it has read
all its input): an idle source does not hold the others back, and when every source is idle,
event time stands at the latest time any of them reached, so the last records are released
and timers up to that time fire, but no further. After a release, the task publishes that
watermark as its own: everything it emits later is caused by later records or timers.

A record from outside older than its partition's watermark is *late*: processed at once,
counted (``late``), and outside the guarantee that the output is a function of the input set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from parley import logs
from schemas import topics
from schemas.codec import Codec, DecodeError
from schemas.events import dead_letter
from streams.runtime.sequencer import NEG_INF, OffsetBook, Sequencer
from streams.runtime.stage import Stage
from streams.runtime.store import Store

log = logs.get("streams.runtime")

# Tie-break of events of the same millisecond: facts about agents, customers and identities
# first, then a thread's life in its natural order.
SEQUENCE_RANK = {
    "AgentStatusChanged": 0, "CustomerContextUpdated": 0, "IdentityLinked": 0, "IdentityUnlinked": 0,
    "IdentitiesMerged": 0, "ConversationStarted": 1, "ConversationReopened": 2, "MessageReceived": 3,
    "DeliveryStatusChanged": 3, "MessageEnriched": 4, "RoutingDecided": 5, "ConversationQueued": 6,
    "ConversationAssigned": 7, "ConversationTransferred": 8, "MessageSent": 9, "ConversationResolved": 10,
}
META = "_meta"  # the task's own bookkeeping store: frontier, offset books, timers


class Record(NamedTuple):
    """An input record; ``topic`` is the catalogue name (no prefix); ``origin`` the id of the
    task that produced it (``pt`` header), None for producers outside the stream runtime."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    origin: str | None = None


class Output(NamedTuple):
    topic: str  # catalogue name
    key: bytes
    value: bytes | None


@dataclass
class Env:
    """What every task of a runner shares."""

    codec: Codec
    upstream: Mapping[str, tuple[str, ...]]  # topic name -> ids of the tasks that write it
    lateness_ms: int = 2000
    idle_ms: int = 1000
    clock: Callable[[], float] = field(default=lambda: 0.0)  # wall seconds, for idleness only


@dataclass
class Upstream:
    """What an upstream task published: its watermark, whether all its sources are idle, and
    where its data ends per partition it writes ("topic/partition" -> offset after its last
    record so far)."""

    watermark: int
    idle: bool
    ends: dict[str, int]


@dataclass
class _Clock:
    """External records of one input partition: latest event time and when one last came."""

    max_t: int | None = None
    last_wall: float = 0.0
    caught_up: bool = False
    awake_until: float = 0.0  # wall time before which it is not idle, however quiet (``wake``)


class Task:
    """A stage on one partition: the context its ``process`` sees."""

    def __init__(self, stage: Stage, partition: int, env: Env) -> None:
        self.stage, self.partition, self.env = stage, partition, env
        self.id = f"{stage.name}/{partition}"
        self.stores = {s.name: s.make() for s in stage.stores}
        self.meta = Store(META)
        self.inputs = {i.topic.name: i for i in stage.inputs}
        self.seq = Sequencer()
        self.books: dict[str, OffsetBook] = {}
        self.clocks = {name: _Clock() for name in self.inputs}
        self.usable: dict[str, tuple[int, bool]] = {}  # upstream task id -> its last usable (watermark, idle)
        self.watermark = NEG_INF  # the input watermark of the last advance
        self.idle = False  # whether all its sources were idle then
        self.record: Record | None = None  # the record being processed
        self.out: list[Output] = []
        self.cache: dict[str, Any] = {}  # the stage's per-task memory, rebuilt from the stores
        self.counts = {"in": 0, "out": 0, "late": 0, "dead": 0}

    # --- set-up ------------------------------------------------------------------------------

    def all_stores(self) -> dict[str, Store]:
        return {**self.stores, META: self.meta}

    def start(self, committed: Mapping[str, int], now: float = 0.0) -> None:
        """After the stores are restored: the offset books and the sequencer's frontier and
        timers, from the committed offsets (topic name -> offset) and the task's bookkeeping."""
        for name in self.inputs:
            at = committed.get(name, 0)
            self.books[name] = OffsetBook.from_json(self.meta.get(f"b|{name}"), at)
            self.clocks[name] = _Clock(self.meta.get(f"x|{name}"), now)
        timers = {k[2:]: v for k, v in self.meta.items() if k.startswith("t|")}
        self.seq = Sequencer(self.meta.get("frontier", NEG_INF), timers)

    # --- records in --------------------------------------------------------------------------

    def feed(self, rec: Record, now: float) -> None:
        """Take one record: skip it if already processed, hold it if sequenced, else process."""
        book = self.books[rec.topic]
        clock = self.clocks[rec.topic]
        clock.last_wall = now
        if book.seen(rec.offset):
            book.skip(rec.offset)
            return
        if rec.value is None:
            book.fed(rec.offset, False)
            return
        try:
            t, rank, eid, event = self._decode(rec.value)
        except DecodeError as e:
            book.fed(rec.offset, False)
            self._dead(rec, "undecodable", str(e))
            return
        self.counts["in"] += 1
        if not self.inputs[rec.topic].sequenced:
            book.fed(rec.offset, False)
            self._run(rec, event)
            return
        if rec.origin is None and (clock.max_t is None or t > clock.max_t):
            clock.max_t = t
        held = self.seq.push(t, rank, eid, (rec, event))
        book.fed(rec.offset, held)
        if not held:
            late = self.counts["late"] = self.counts["late"] + 1
            if late == 1 or late % 1000 == 0:  # an anomaly to see in the log, not a line per record
                log.warning("task.late", task=self.id, late=late, topic=rec.topic, partition=rec.partition,
                            offset=rec.offset, origin=rec.origin, event_ms=t, frontier=self.seq.frontier,
                            watermark=self.watermark, idle=self.idle,
                            origin_mark=self.usable.get(rec.origin) if rec.origin else None)
            self._run(rec, event)

    def _decode(self, value: bytes) -> tuple[int, int, str, Any]:
        if value[:1] == b"{":
            try:
                obj = orjson.loads(value)
                return obj["t"], obj.get("r", 0), obj["id"], obj
            except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                raise DecodeError(f"internal record: {e}") from None
        event = self.env.codec.decode(value)
        env = event["envelope"]
        return env["occurred_at"], SEQUENCE_RANK.get(env["event_type"], 5), env["event_id"], event

    # --- watermarks and release --------------------------------------------------------------

    def input_watermark(self, table: Mapping[str, Upstream], now: float) -> tuple[int, bool]:
        """(watermark, idle): the least active source, or the latest idle one when all idle."""
        sources: list[tuple[int, bool]] = []
        for name, inp in self.inputs.items():
            if not inp.sequenced:
                continue
            here = f"{name}/{self.partition}"
            read_to = self.books[name].next
            for uid in self.env.upstream.get(name, ()):
                up = table.get(uid)
                if up is not None:
                    if read_to >= up.ends.get(here, 0):
                        self.usable[uid] = (up.watermark, up.idle)
                    elif not up.idle and (last := self.usable.get(uid)) is not None and last[1]:
                        # active again, with data not read yet: its idle mark no longer holds
                        self.usable[uid] = (last[0], False)
                sources.append(self.usable.get(uid, (NEG_INF, False)))
            ext = self._external(self.clocks[name], now)
            if ext is not None:
                sources.append(ext)
        return combine(sources, self.seq.frontier)

    def _external(self, clock: _Clock, now: float) -> tuple[int, bool] | None:
        """Records from outside: the newest time seen minus the lateness bound; once the
        partition is caught up and quiet, the bound shrinks with the quiet time (event time
        goes on while nothing comes), and after ``idle_ms`` the source is idle."""
        if clock.max_t is None:
            return None  # no outside producer has written here
        if not clock.caught_up:
            return clock.max_t - self.env.lateness_ms, False
        quiet_ms = (now - clock.last_wall) * 1000
        if quiet_ms >= self.env.idle_ms and now >= clock.awake_until:
            return clock.max_t, True
        return clock.max_t - max(0, self.env.lateness_ms - int(quiet_ms)), False

    def advance(self, table: Mapping[str, Upstream], now: float) -> None:
        """Release what the input watermark has passed, and fire due timers, in time order."""
        self.watermark, self.idle = self.input_watermark(table, now)
        for kind, item in self.seq.release(self.watermark):
            if kind == "event":
                rec, event = item
                self.books[rec.topic].processed(rec.offset)
                self._run(rec, event)
            else:
                key, at = item
                self.meta.pop(f"t|{key}")
                self.record = None
                self.stage.on_timer(self, key, at)

    def hold(self, now: float) -> None:
        """Its outside sources are not idle before ``idle_ms`` from now (see ``wake``): a wall
        time, as the skew it covers (``lateness_ms`` is event time, and can be long)."""
        until = now + self.env.idle_ms / 1000
        for clock in self.clocks.values():
            clock.awake_until = until

    def output_watermark(self) -> tuple[int, bool]:
        """What this task promises downstream (nothing it emits later is older) and whether
        all its sources are idle. A stage without sequenced inputs forwards as it reads: its
        promise is its outside sources' watermark."""
        caught_up = all(c.caught_up for c in self.clocks.values())
        if any(i.sequenced for i in self.inputs.values()):
            return self.watermark, self.idle and caught_up
        ext = [e for c in self.clocks.values() if (e := self._external(c, self.env.clock())) is not None]
        w, idle = combine(ext, NEG_INF)
        return w, idle and caught_up

    def _run(self, rec: Record, event: Any) -> None:
        self.record = rec
        try:
            self.stage.process(self, event)
        except Exception as e:  # noqa: BLE001 - a bug or an impossible record: park it, go on
            log.exception("stage.failed", task=self.id, topic=rec.topic, offset=rec.offset)
            self._dead(rec, "poison", repr(e))
        finally:
            self.record = None

    # --- what the stage calls ----------------------------------------------------------------

    def store(self, name: str) -> Store:
        return self.stores[name]

    def send(self, topic: topics.Topic, event: dict[str, Any], key: str | None = None) -> None:
        """Encode an event (Avro) and send it keyed by ``key`` or its partition key."""
        value = self.env.codec.encode(event, topic.name)
        self.forward(topic, key if key is not None else event["envelope"]["partition_key"], value)

    def encode(self, topic: topics.Topic, event: dict[str, Any]) -> bytes:
        """The event's bytes (Avro), to ``forward`` to one or more topics."""
        return self.env.codec.encode(event, topic.name)

    def send_json(self, topic: topics.Topic, key: str, obj: dict[str, Any]) -> None:
        """An internal record: JSON with ``t`` (event time), ``r`` (rank) and ``id``."""
        self.forward(topic, key, orjson.dumps(obj))

    def forward(self, topic: topics.Topic, key: str | bytes, value: bytes) -> None:
        self.out.append(Output(topic.name, key.encode() if isinstance(key, str) else key, value))
        self.counts["out"] += 1

    def timer(self, key: str, at: int | None) -> None:
        """Call ``stage.on_timer(key, at)`` once the watermark reaches ``at`` (None cancels)."""
        self.seq.set_timer(key, at)
        if at is None:
            self.meta.pop(f"t|{key}")
        else:
            self.meta[f"t|{key}"] = at

    def dead_letter(self, reason: str, error: str) -> None:
        """Park the record being processed (raw bytes, position, reason) and go on."""
        if self.record is not None:
            self._dead(self.record, reason, error)

    def _dead(self, rec: Record, reason: str, error: str) -> None:
        self.counts["dead"] += 1
        record = dead_letter(self.stage.name, reason, error, rec.value or b"", rec.topic, rec.partition,
                             rec.offset, rec.key)
        self.send(topics.DEAD_LETTER, record)

    # --- commit ------------------------------------------------------------------------------

    def finish(self) -> tuple[list[Output], list[tuple[str, bytes, bytes | None]], dict[str, int]]:
        """End of a transaction: (outputs, changelog records (store, key, value), offsets to
        commit per input topic). The outputs are taken: the next batch starts empty."""
        self.stage.end_batch(self)
        offsets = {}
        for name, book in self.books.items():
            offsets[name] = book.compact()
            done = book.to_json() if book.done else None  # offsets processed past the commit point
            if self.meta.get(f"b|{name}") != done:
                if done is None:
                    self.meta.pop(f"b|{name}")
                else:
                    self.meta[f"b|{name}"] = done
            clock = self.clocks[name]
            if clock.max_t is not None and self.meta.get(f"x|{name}") != clock.max_t:
                self.meta[f"x|{name}"] = clock.max_t
        if self.meta.get("frontier") != self.seq.frontier:
            self.meta["frontier"] = self.seq.frontier
        changes = [(s.name, k, v) for s in self.all_stores().values() for k, v in s.take_changes()]
        out, self.out = self.out, []
        return out, changes, offsets

    def pending(self) -> bool:
        """Whether it holds records (the runner must keep advancing it)."""
        return len(self.seq) > 0


def combine(sources: list[tuple[int, bool]], otherwise: int) -> tuple[int, bool]:
    """The watermark of several sources: the least active one; when all are idle the latest
    (event time stands where the sources stopped); ``otherwise`` when there is none."""
    active = [w for w, idle in sources if not idle]
    if active:
        return min(active), False
    if sources:
        return max(w for w, _ in sources), True
    return otherwise, True


def wake(table: dict[str, Upstream], fed: set[Task], outside: set[Task], every: Iterable[Task],
         now: float) -> None:
    """Tasks of this process that were idle and just read records are active again, at once;
    and when records from outside come to a task that was idle, traffic has started again:
    every task of the process is active again, and none goes idle before ``idle_ms`` from now.

    An idle source does not hold its readers back. Its table entry says idle until its next
    commit, so a task that just read records must be active there now: otherwise its readers
    in this process could let event time run past the records it just read (seen by them only
    after that commit), which would then be late. And after a quiet spell, the other idle tasks
    too: one write from outside reaches several partitions a little apart (the producer, the
    fetch, the consumer's batches), and a partition whose records come a moment later than
    another's must still hold its readers back when they come: they are expected within
    ``idle_ms`` of the first. (Records between tasks need no such wake: a reader uses an
    upstream's mark only once it has read the data the mark covers.)"""
    restart = any((up := table.get(t.id)) is not None and up.idle for t in outside)
    for task in every if restart else fed:
        up = table.get(task.id)
        if up is not None and up.idle:
            table[task.id] = Upstream(min(up.watermark, task.seq.frontier), False, up.ends)
        if restart:
            task.hold(now)
