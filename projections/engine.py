"""The projection engine: pure ``apply`` over rows, one transaction per batch of records.

A projection is declared as data (``Projection``): the topics it reads, its tables, a ``route``
function naming the rows an event touches, and an ``apply(table, row, event) -> row`` function
(the row is the stored one, or ``table.blank(key)`` when there is none; returning None deletes
it). Both are pure: they never mutate their input row. This module does the I/O around them:

- ``decode_batch``: Kafka records -> (topic, partition, offset, event | error).
- ``Batcher.apply``: routes each event, loads the rows it needs (bulk ``SELECT ... IN``, or none at
  all while a rebuild fills empty tables), applies, and keeps the results in a row cache.
- ``Batcher.commit``: in ONE transaction, upserts the changed rows (``executemany``), records the
  applied event ids (dedup) and the next offset per (projection, topic, partition).

The live run and a rebuild use this same code, with different batch sizes; that is why a rebuild
yields exactly what the live run built.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from projections.store import CHUNK, Store, Tx
from schemas.codec import Codec, DecodeError
from schemas.topics import Topic

Event = dict[str, Any]
Row = dict[str, Any]
Key = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    """A projection table: name, primary key, columns (in DDL order), JSON columns, defaults."""

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()
    defaults: dict[str, Any] = field(default_factory=dict)

    def blank(self, key: Key) -> Row:
        """A new row: the key, the defaults, every other column None."""
        row = dict(self._template)
        for c in self._mutable:
            row[c] = copy.deepcopy(row[c])
        row.update(zip(self.key, key, strict=True))
        return row

    @cached_property
    def _template(self) -> Row:
        return {c: self.defaults.get(c) for c in self.columns}

    @cached_property
    def _mutable(self) -> tuple[str, ...]:
        return tuple(c for c, v in self.defaults.items() if isinstance(v, (list, dict)))

    def key_of(self, row: Row) -> Key:
        return tuple(row[k] for k in self.key)

    def to_db(self, row: Row) -> tuple[Any, ...]:
        return tuple([_dump(row[c]) if j else _db_value(row[c]) for c, j in self._plan])

    @cached_property
    def _plan(self) -> tuple[tuple[str, bool], ...]:
        return tuple((c, c in self.json_columns) for c in self.columns)

    def from_db(self, rec: dict[str, Any]) -> Row:
        return {c: (json.loads(rec[c]) if c in self.json_columns and rec[c] is not None else rec[c])
                for c in self.columns}


@dataclass(frozen=True)
class Projection:
    """A projection declared as data; ``route`` and ``apply`` are pure functions.

    ``reads`` pairs each topic with the event types taken from it (others are skipped, so the
    same event type read from two topics is never applied twice).
    """

    name: str
    reads: tuple[tuple[Topic, frozenset[str]], ...]
    tables: tuple[Table, ...]
    route: Callable[[Event], list[tuple[Table, Key]]]
    apply: Callable[[Table, Row, Event], Row | None]  # row: current, or ``table.blank(key)``
    dedup: bool = True  # record applied event ids; needed where an apply is not idempotent

    @property
    def topics(self) -> tuple[Topic, ...]:
        return tuple(t for t, _ in self.reads)

    def accepts(self, topic_name: str, event_type: str) -> bool:
        """Does this projection take ``event_type`` from the (unprefixed) topic?"""
        return (topic_name, event_type) in self._accepted

    @cached_property
    def _accepted(self) -> frozenset[tuple[str, str]]:
        return frozenset((t.name, typ) for t, types in self.reads for typ in types)


@dataclass
class Decoded:
    topic: str
    partition: int
    offset: int
    event: Event | None
    error: str | None = None
    raw: bytes | None = None
    key: bytes | None = None  # the record's key, for its dead letter


def decode_batch(codec: Codec, records: Iterable[Any],
                 wanted: Callable[[str, str], bool] | None = None) -> list[Decoded]:
    """Decode a batch of aiokafka records; a record that does not decode carries its error.

    ``wanted(topic, event_type)``: records of other types are not decoded at all (the type is
    known from the schema id in the wire header), which is most of a topic read for one type.
    """
    out = []
    for r in records:
        if r.value is None:  # a tombstone on a compacted topic: nothing to apply
            out.append(Decoded(r.topic, r.partition, r.offset, None))
            continue
        try:
            if wanted is not None and not wanted(r.topic, codec.writer_of(r.value).name):
                out.append(Decoded(r.topic, r.partition, r.offset, None))
                continue
            out.append(Decoded(r.topic, r.partition, r.offset, codec.decode(r.value), key=r.key))
        except DecodeError as e:
            out.append(Decoded(r.topic, r.partition, r.offset, None, str(e), r.value, r.key))
    return out


class Batcher:
    """Applies decoded records of one projection and writes them, a batch per transaction.

    ``fresh=True`` (a rebuild, tables just emptied): a row missing from the cache does not exist,
    so nothing is read back from the database until the cache had to evict.
    """

    def __init__(self, store: Store, projection: Projection, *, topic_prefix: str = "",
                 fresh: bool = False, cache_rows: int = 200_000) -> None:
        self.store, self.p, self.prefix = store, projection, topic_prefix
        self.cache_rows = cache_rows
        self._rows: dict[str, dict[Key, Row | None]] = {t.name: {} for t in projection.tables}
        self._dirty: dict[str, set[Key]] = {t.name: set() for t in projection.tables}
        self._fresh = {t.name: fresh for t in projection.tables}
        self._seen: set[str] = set()
        self._seen_fresh = fresh
        self._new_ids: list[str] = []
        self._offsets: dict[tuple[str, int], int] = {}
        self._failed: list[Decoded] = []
        self.applied = self.duplicates = self.ignored = 0

    # -- apply -------------------------------------------------------------------------
    def apply(self, batch: Sequence[Decoded]) -> None:
        """Apply a batch in order; rows stay in the cache until ``commit``."""
        routed = []
        for d in batch:
            try:
                routed.append((d, self._route(d)))
            except Exception as e:  # an event without the fields its type promises
                d.error = f"route failed: {e!r}"
                self._failed.append(d)
                routed.append((d, []))
        self._load([t for _, targets in routed for t in targets])
        ids = [d.event["envelope"]["event_id"] for d, targets in routed if targets and d.event is not None]
        known = self._known_ids(ids) if self.p.dedup else set()
        for d, targets in routed:
            self._offsets[(d.topic, d.partition)] = d.offset + 1
            if not targets or d.event is None:  # (a tombstone routes nowhere)
                self.ignored += 1
                continue
            eid = d.event["envelope"]["event_id"]
            if self.p.dedup and (eid in known or eid in self._seen):
                self.duplicates += 1
                continue
            try:  # all of an event's rows, or none of them
                rows = [(t, k, self.p.apply(t, self._rows[t.name].get(k) or t.blank(k), d.event))
                        for t, k in targets]
            except Exception as e:  # a poison event: dead-lettered by the runner, not retried
                d.error = f"apply failed: {e!r}"
                self._failed.append(d)
                continue
            for table, key, row in rows:
                self._put(table, key, row)
            if self.p.dedup:
                self._seen.add(eid)
                self._new_ids.append(eid)
            self.applied += 1

    def take_failed(self) -> list[Decoded]:
        """Events whose apply raised since the last call (their offsets still advance)."""
        out, self._failed = self._failed, []
        return out

    def wanted(self, topic: str, event_type: str) -> bool:
        """Is this (prefixed) topic's event type one the projection applies?"""
        return self.p.accepts(topic[len(self.prefix):] if topic.startswith(self.prefix) else topic,
                              event_type)

    def _route(self, d: Decoded) -> list[tuple[Table, Key]]:
        if d.event is None:
            return []
        topic = d.topic[len(self.prefix):] if d.topic.startswith(self.prefix) else d.topic
        if not self.p.accepts(topic, d.event["envelope"]["event_type"]):
            return []
        return self.p.route(d.event)

    def _put(self, table: Table, key: Key, row: Row | None) -> None:
        self._rows[table.name][key] = row
        self._dirty[table.name].add(key)

    def _load(self, targets: list[tuple[Table, Key]]) -> None:
        """Read the rows this batch needs and the cache lacks (never while fresh)."""
        missing: dict[str, tuple[Table, set[Key]]] = {}
        for table, key in targets:
            if key not in self._rows[table.name]:
                if self._fresh[table.name]:
                    self._rows[table.name][key] = None
                else:
                    missing.setdefault(table.name, (table, set()))[1].add(key)
        for table, keys in missing.values():
            cache = self._rows[table.name]
            for k in keys:
                cache[k] = None
            for chunk in _chunks(sorted(keys, key=repr), CHUNK):
                sql = f"SELECT * FROM {table.name} WHERE {Store.key_filter(table.key, len(chunk))}"
                for rec in self.store.query(sql, [v for k in chunk for v in k]):
                    row = table.from_db(rec)
                    cache[table.key_of(row)] = row

    def _known_ids(self, ids: list[str]) -> set[str]:
        if self._seen_fresh:
            return set()
        todo = [i for i in set(ids) if i not in self._seen]
        known: set[str] = set()
        for chunk in _chunks(todo, CHUNK):
            rows = self.store.query(
                "SELECT event_id FROM projection_events WHERE projection = ? AND "
                f"event_id IN ({', '.join('?' for _ in chunk)})", [self.p.name, *chunk])
            known.update(r["event_id"] for r in rows)
        return known

    # -- write -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return sum(len(d) for d in self._dirty.values()) + len(self._offsets)

    def commit(self) -> None:
        """Write changed rows, new event ids and offsets in one transaction."""
        if not self.pending:
            return
        with self.store.transaction() as tx:
            self._write_rows(tx)
            tx.executemany(
                "INSERT INTO projection_events (projection, event_id) VALUES (?, ?) "
                "ON CONFLICT (projection, event_id) DO NOTHING",
                [(self.p.name, e) for e in self._new_ids])
            tx.executemany(
                Store.upsert_sql("projection_offsets", ("projection", "topic", "partition"),
                                 ("projection", "topic", "partition", "next_offset")),
                [(self.p.name, t, p, o) for (t, p), o in sorted(self._offsets.items())])
        self._after_commit()

    def _write_rows(self, tx: Tx) -> None:
        for table in self.p.tables:
            cache, dirty = self._rows[table.name], self._dirty[table.name]
            keys = sorted(dirty, key=repr)  # a stable write order: no deadlocks between writers
            upserts = [table.to_db(row) for k in keys if (row := cache[k]) is not None]
            deletes = [k for k in keys if cache[k] is None]
            tx.executemany(Store.upsert_sql(table.name, table.key, table.columns), upserts)
            if deletes:
                where = " AND ".join(f"{c} = ?" for c in table.key)
                tx.executemany(f"DELETE FROM {table.name} WHERE {where}", deletes)

    def _after_commit(self) -> None:
        for table in self.p.tables:
            self._dirty[table.name].clear()
            if len(self._rows[table.name]) > self.cache_rows:
                self._rows[table.name].clear()
                self._fresh[table.name] = False  # rows now live only in the database
        self._new_ids.clear()
        self._offsets.clear()
        if len(self._seen) > self.cache_rows:
            self._seen.clear()
            self._seen_fresh = False

    def rollback(self) -> None:
        """Forget uncommitted work (after a failed commit): reload from the database next time."""
        for table in self.p.tables:
            self._rows[table.name].clear()
            self._dirty[table.name].clear()
            self._fresh[table.name] = False
        self._seen.clear()
        self._seen_fresh = False
        self._new_ids.clear()
        self._offsets.clear()


# -- bookkeeping -------------------------------------------------------------------------
def checkpoints(store: Store, projection: str) -> dict[tuple[str, int], int]:
    """(topic, partition) -> next offset to read, as committed with the rows."""
    rows = store.query("SELECT topic, partition, next_offset FROM projection_offsets "
                       "WHERE projection = ?", (projection,))
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


def truncate(store: Store, projection: Projection) -> None:
    """Empty a projection's tables, its checkpoints and its dedup ids, in one transaction."""
    with store.transaction() as tx:
        for table in projection.tables:
            tx.execute(f"DELETE FROM {table.name}")
        tx.execute("DELETE FROM projection_offsets WHERE projection = ?", (projection.name,))
        tx.execute("DELETE FROM projection_events WHERE projection = ?", (projection.name,))


# -- helpers for apply functions -----------------------------------------------------------
def stamp(event: Event, rank: int = 0) -> list[Any]:
    """A total order on events for last-writer-wins: (rank, event time, event id)."""
    env = event["envelope"]
    return [rank, env["occurred_at"], env["event_id"]]


def newer(event_stamp: list[Any], current: list[Any] | None) -> bool:
    return current is None or list(current) == [] or list(event_stamp) > list(current)


def touch(row: Row, event: Event) -> Row:
    """Keep ``updated_at``/``last_event_id`` as the latest event by (time, id): order-free."""
    env = event["envelope"]
    mine = (env["occurred_at"], env["event_id"])
    if row.get("updated_at") is None or mine > (row["updated_at"], row.get("last_event_id") or ""):
        row["updated_at"], row["last_event_id"] = mine
    return row


def _chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _db_value(v: Any) -> Any:
    t = type(v)
    if t is bool:
        return int(v)
    if t is float and not math.isfinite(v):
        return None
    return v


def _dump(v: Any) -> str | None:
    if v is None:
        return None
    try:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN or infinity somewhere: PostgreSQL's JSON has no such numbers
        return json.dumps(_finite(v), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _finite(v: Any) -> Any:
    """NaN and infinities become null: PostgreSQL's JSON has no such numbers."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v
