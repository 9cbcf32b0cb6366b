"""Ingress dedup: an event id reaches ``parley.messages`` (and the raw and dead-letter topics) once,
however often a provider redelivers, across restarts and across ingress processes.

Where the memory lives: the claim log, ``parley.ingress.claims``: one partition, so one total order
that every ingress process reads. Its records (``IngressClaim``) are batches of entries, one batch
per turn of a process's event loop, each entry a step of one request attempt (``owner``):

- ``claimed(owner, ids)``: the attempt is about to write these ids; in the log (read back by
  the attempt's own process) *before* any of them is produced;
- ``stored(owner, ids + partition/offset)``: Kafka acknowledged them (written after the answer's
  records are acked, never awaited); the attempt is over;
- ``released(owner)``: the attempt failed (it answered 503): its claims are void.

Each process reads the log from its start into memory (``Memory``) and is not ready before it has
caught up; after an error of its reader (the broker away) it is not ready again until it has
asked the log's end anew and read up to it. For an id, the **first claim in log order that is not
released wins**: an attempt claims, waits until it has read the log past its own claim, and then
knows, as every other process will, whether it holds each id. Ids already stored are dropped at
once (a redelivery minutes or days later costs no Kafka round trip); ids held by another live attempt are waited for
(``wait_s``), then dropped if it stored them, taken over if it released them, and answered 503
(retry later) if it is still busy.

A crash between the claim and the stored marker leaves a claim nobody resolves: after
``claim_ttl_s`` (well past the producer's deadline, so nothing it sent can still land) the next
attempt that meets it reads the partitions those ids would be on, back from their end to the
claim's time (``_scan``), and writes ``stored`` for what it finds and ``released`` for the dead
attempt; then claims again. That read is the one costly path, and only a crash leads to it.

How long: ``horizon_s`` (8 days by default: the longest documented retry horizon is Meta's and
Google RBM's 7 days, then e-mail 3 days, Mailgun 8 h, Telegram 24 h, Viber 1 h, Twilio, LINE,
WeChat and Slack minutes). The topic keeps 9 days. What it costs: one Kafka round trip before the
request's records are produced (the claim; reading it back is usually immediate), about 300 bytes
per webhook on the claim log (its claim and stored marker, in batch records shared with the
requests of the same loop turn), ~100 bytes of memory per id remembered (about 2 per webhook) in
every ingress process (``Memory``), and reading the log at start (~40 s per million webhooks
remembered, before the process is ready).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import confluent_kafka
from confluent_kafka import TopicPartition

from adapters.producer import Producer, Record, Sent, Stored, Unavailable
from parley import logs
from parley.settings import KafkaSettings
from schemas.catalog import catalog
from schemas.codec import Codec, DecodeError, codec_for
from schemas.events import envelope, make

log = logs.get("adapters.dedup")

DAY_MS = 24 * 3600 * 1000
UNKNOWN = -1  # stored, place not known
SKEW_MS = 60_000  # clocks of ingress processes may differ this much; also covers planning time


class Item(NamedTuple):
    """One record a request would write, named by its event id."""

    id: str
    topic: str
    key: bytes


@dataclass
class Outcome:
    """What a request may write (``mine``) and what is already stored (``stored``: id -> place)."""

    owner: str | None
    mine: list[Item] = field(default_factory=list)
    stored: dict[str, Stored | None] = field(default_factory=dict)


class Busy(Exception):
    """Another attempt holds a claim on one of the ids and did not finish in time: retry later."""


def fingerprint(event_id: str) -> int:
    """The id as a 128-bit int (ids are UUIDs; anything else is hashed to 128 bits)."""
    if len(event_id) == 36:
        try:
            return int(event_id.replace("-", ""), 16)
        except ValueError:
            pass
    import hashlib

    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=16).digest(), "big")


class Memory:
    """Ids stored within the horizon, in day buckets by the time they were stored.

    ``{fingerprint: packed place}`` per UTC day (place = partition << 40 | offset, or ``UNKNOWN``);
    a day bucket is dropped whole once all of it is older than the horizon, so an id is
    remembered at least ``horizon_ms`` and at most one day more.
    """

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self.days: dict[int, dict[int, int]] = {}

    def add(self, event_id: str, at_ms: int, partition: int | None, offset: int | None) -> None:
        loc = UNKNOWN if partition is None or offset is None else (partition << 40) | offset
        self.days.setdefault(at_ms // DAY_MS, {})[fingerprint(event_id)] = loc

    def get(self, event_id: str) -> int | None:
        fp = fingerprint(event_id)
        for bucket in self.days.values():
            loc = bucket.get(fp)
            if loc is not None:
                return loc
        return None

    def expire(self, now_ms: int) -> int:
        """Drop the days wholly beyond the horizon; the number of ids dropped."""
        old = [d for d in self.days if (d + 1) * DAY_MS <= now_ms - self.horizon_ms]
        return sum(len(self.days.pop(d)) for d in old)

    def __len__(self) -> int:
        return sum(len(b) for b in self.days.values())


@dataclass
class _Attempt:
    """One owner's claim as read from the log."""

    owner: str
    at_ms: int
    items: list[Item]
    waiters: list[asyncio.Future] = field(default_factory=list)


def place(loc: int | None, topic: str) -> Stored | None:
    if loc is None or loc == UNKNOWN:
        return None
    return Stored(topic, loc >> 40, loc & ((1 << 40) - 1))


class Dedup:
    """The claim protocol above, for one ingress process."""

    BUSY_S = 0.0005  # how often the log is read while someone waits for it
    IDLE_S = 0.02

    def __init__(self, kafka: KafkaSettings, topic: str, producer: Producer, *, horizon_s: float = 8 * 86400,
                 claim_ttl_s: float = 30.0, wait_s: float = 2.0,
                 clock_ms=lambda: time.time_ns() // 1_000_000) -> None:
        self.kafka, self.topic, self.producer = kafka, topic, producer
        self.claim_ttl_ms, self.wait_s = int(claim_ttl_s * 1000), wait_s
        self.clock_ms = clock_ms
        self.memory = Memory(int(horizon_s * 1000))
        self.attempts: dict[str, _Attempt] = {}  # open claims, by owner
        self.claims: dict[str, list[str]] = {}  # id -> owners with an open claim on it, in log order
        self.position = 0  # the next offset of the log this process has not read yet
        self._log_end: int | None = None  # the log's end when we started (None again after a reader error)
        self._outbox: list[dict[str, Any]] = []
        self._outbox_waiters: list[asyncio.Future] = []
        self._waiting = 0  # attempts waiting to read their own record back: the reader is busy
        self._codec = codec_for(kafka)  # the ingress's codec (prepared at its start)
        self._claim_schema = catalog().latest("IngressClaim")
        self._me = f"{os.getpid():x}-{os.urandom(6).hex()}"  # this process: owners and record keys
        self._owners = (f"{self._me}-{n:x}" for n in itertools.count())
        self._batches = itertools.count()
        # record key -> (the entries we sent in it, who waits to read it back, their deadline)
        self._own: dict[bytes, tuple[list[dict[str, Any]], list[asyncio.Future], asyncio.TimerHandle | None]] = {}
        self._consumer: confluent_kafka.Consumer | None = None
        self._reader: asyncio.Task | None = None
        self._reading: asyncio.Future | None = None  # while the timers read: the reason they stopped
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._background: set[asyncio.Task] = set()
        self._settling: dict[str, asyncio.Task] = {}
        self._next_expiry = 0

    # -- life cycle --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._log_end is not None and self.position >= self._log_end

    async def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read_log(), name="claims-reader")

    async def stop(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._consumer is not None:
            await asyncio.to_thread(self._consumer.close)

    # -- the protocol ------------------------------------------------------------------------

    async def claim(self, items: Sequence[Item]) -> Outcome:
        """Decide which of ``items`` this request writes; ``Busy`` / ``Unavailable`` -> 503."""
        stored = self._stored(items)
        todo = [i for i in items if i.id not in stored]
        if not todo:
            return Outcome(None, [], stored)
        owner = next(self._owners)
        try:
            await self._write("claimed", owner, todo, {})
            return await self._decide(owner, todo, stored)
        except BaseException:
            self.release(Outcome(owner, todo, {}))
            raise

    async def _decide(self, owner: str, todo: list[Item], stored: dict[str, Stored | None]) -> Outcome:
        deadline = time.monotonic() + self.wait_s
        while True:
            stored.update(self._stored(todo))
            todo = [i for i in todo if i.id not in stored]
            held = {h for i in todo if (h := self._holder(i.id)) != owner and h is not None}
            if not held:
                return Outcome(owner, todo, stored)
            expired = [self.attempts[h] for h in held if self._expired(self.attempts[h])]
            if expired:
                await asyncio.gather(*(self._settle_once(a) for a in expired))
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise Busy(f"{len(held)} other attempt(s) still writing the same ids")
            await self._wait_for(held, left)

    def stored(self, outcome: Outcome, where: dict[str, Stored], *, keep_places: bool = False) -> None:
        """After Kafka acknowledged ``outcome.mine``: remember, and tell the other processes.

        ``keep_places``: remember where each record is (the agent API answers a retry with the
        first one's place); webhooks need not, and an id costs less memory without it.
        """
        if outcome.owner is None:
            return
        if not outcome.mine:  # every id turned out stored by others: our claim is void
            self.release(outcome)
            return
        now = self.clock_ms()
        where = where if keep_places else {}
        for i in outcome.mine:
            s = where.get(i.id)
            self.memory.add(i.id, now, s.partition if s else None, s.offset if s else None)
        self._close_locally(outcome.owner)
        self._write_later("stored", outcome.owner, outcome.mine, where)

    def release(self, outcome: Outcome) -> None:
        """The attempt failed: void its claims (here at once, elsewhere when they read it)."""
        if outcome.owner is None:
            return
        self._close_locally(outcome.owner)
        self._write_later("released", outcome.owner, [], {})

    # -- state -------------------------------------------------------------------------------

    def _stored(self, items: Iterable[Item]) -> dict[str, Stored | None]:
        out = {}
        for i in items:
            loc = self.memory.get(i.id)
            if loc is not None:
                out[i.id] = place(loc, i.topic)
        return out

    def _holder(self, event_id: str) -> str | None:
        """The first attempt in log order whose claim on ``event_id`` is still open."""
        owners = self.claims.get(event_id)
        return owners[0] if owners else None

    def _expired(self, a: _Attempt) -> bool:
        return self.clock_ms() - a.at_ms > self.claim_ttl_ms

    async def _wait_for(self, owners: set[str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        futures = []
        for owner in owners:
            f = loop.create_future()
            self.attempts[owner].waiters.append(f)
            futures.append(f)
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    def _close_locally(self, owner: str) -> None:
        a = self.attempts.get(owner)
        if a is not None:
            self._end(a)

    # -- a claim nobody resolved: look at the topics themselves ------------------------------

    async def _settle_once(self, a: _Attempt) -> None:
        """One settling per dead attempt in this process, however many requests meet it."""
        task = self._settling.get(a.owner)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._settle(a))
            self._settling[a.owner] = task
            task.add_done_callback(lambda _t: self._settling.pop(a.owner, None))
        await asyncio.shield(task)

    async def _settle(self, a: _Attempt) -> None:
        """``a`` expired unresolved (its process died): store what landed, release the rest."""
        found = await asyncio.to_thread(_scan, self.kafka, a.items, a.at_ms)
        log.warning("dedup.expired_claim", owner=a.owner, ids=len(a.items), found=len(found))
        done = [i for i in a.items if i.id in found]
        kind = "stored" if done else "released"
        await self._write(kind, a.owner, done, found)

    # -- writing the log: one record per turn of the loop --------------------------------------

    def _entry(self, kind: str, owner: str, items: Sequence[Item], where: dict[str, Stored]) -> dict[str, Any]:
        claim = kind == "claimed"  # only a claim needs where each id goes (to settle it after a crash)
        ids = []
        for i in items:
            s = where.get(i.id)
            ids.append({"id": i.id, "topic": i.topic if claim else "", "key": i.key if claim else b"",
                        "partition": s.partition if s else None, "offset": s.offset if s else None})
        return {"kind": kind, "owner": owner, "at": self.clock_ms(), "ids": ids}

    async def _write(self, kind: str, owner: str, items: Sequence[Item], where: dict[str, Stored]) -> None:
        """Queue an entry for this turn's record; return once this process has read the log up to
        and including that record (so it knows every entry before it, as every process will).
        One wait, not two (not the acknowledgement, then the read-back): a record read back is
        in the log; a failed produce raises at once."""
        f = asyncio.get_running_loop().create_future()
        self._write_later(kind, owner, items, where)
        self._outbox_waiters.append(f)
        self._waiting += 1
        self._wake()  # read busily from now on
        try:
            await f  # bounded: the batch's deadline (``_flush``) fails it
        finally:
            self._waiting -= 1

    def _write_later(self, kind: str, owner: str, items: Sequence[Item], where: dict[str, Stored]) -> None:
        """Queue an entry for this turn's record, nobody waiting for it."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(self._entry(kind, owner, items, where))

    def _flush(self) -> None:
        """This turn's entries as one record, handed to the producer now: the claims in it wait
        for the read-back, so a task's extra turn of the loop before producing would be theirs."""
        entries, waiters = self._outbox, self._outbox_waiters
        self._outbox, self._outbox_waiters = [], []
        if not entries:
            return
        loop = asyncio.get_running_loop()
        deadline, key = None, None
        try:
            record = self.record(entries)
            key = record.key
            if waiters:  # one deadline for the batch's waiters (a timeout per claim cost more)
                deadline = loop.call_later(self.producer.timeout_s + max(1.0, self.wait_s), _fail, waiters,
                                           "the claim log was not read back in time")
            self._own[key] = (entries, waiters, deadline)  # read back: applied without decoding
            sent = self.producer.submit([record])
        except Exception as e:
            self._not_sent(key, entries, waiters, deadline, e)
            return
        task = loop.create_task(self._confirm(key, sent, entries, waiters, deadline))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def record(self, entries: list[dict[str, Any]]) -> Record:
        now = self.clock_ms()
        first = entries[0]["owner"]
        env = envelope("IngressClaim", event_id=f"claims:{first}:{entries[0]['kind']}",
                       occurred_at=now, tenant_id="", partition_key="", producer="ingress", recorded_at=now)
        value = self._codec.encode_as(self._claim_schema, make("IngressClaim", env, entries=entries), self.topic)
        return Record(self.topic, f"{self._me}:{next(self._batches):x}".encode(), value, timestamp_ms=now)

    async def _confirm(self, key: bytes, sent: Sent | None, entries: list[dict[str, Any]],
                       waiters: list[asyncio.Future], deadline: asyncio.TimerHandle | None) -> None:
        """Wait for the batch's ack; if its produce fails, its claims answer 503 at once (a
        read-back would never come)."""
        try:
            await self.producer.acked(sent)
        except Exception as e:
            self._not_sent(key, entries, waiters, deadline, e)

    def _not_sent(self, key: bytes | None, entries: list[dict[str, Any]], waiters: list[asyncio.Future],
                  deadline: asyncio.TimerHandle | None, e: Exception) -> None:
        """Claims answer 503; a lost marker leaves a claim the TTL settles."""
        if key is not None:
            self._own.pop(key, None)
        if deadline is not None:
            deadline.cancel()
        for f in waiters:
            if not f.done():
                f.set_exception(e if isinstance(e, Unavailable) else Unavailable(repr(e)))
        if not waiters:
            log.warning("dedup.marker_failed", entries=len(entries), error=repr(e))

    # -- reading the log ---------------------------------------------------------------------

    async def _read_log(self) -> None:
        """Open the reader and learn the log's end (off the loop, retried), then read on the
        loop's timers (``_read``) until a read fails or loses its place; then again."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._consumer is None:
                    consumer, self._log_end = await asyncio.to_thread(self._open)
                    self._consumer = consumer
                    log.info("dedup.start", log_end=self._log_end)
                    if self.ready:
                        log.info("dedup.ready", ids=0)
                elif self._log_end is None:  # after a reader error: ready again once caught up
                    self._log_end = await asyncio.to_thread(self._end_offset, self._consumer)
                    log.info("dedup.reader_back", log_end=self._log_end, position=self.position)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker away at start...: retry
                log.warning("dedup.reader_error", error=repr(e))
                await asyncio.sleep(1.0)
                continue
            self._reading = loop.create_future()
            self._schedule(0)
            try:
                error = await self._reading
            finally:
                self._unschedule()
                self._reading = None
            if error is not None:
                log.warning("dedup.reader_error", error=repr(error))
                await asyncio.sleep(1.0)

    def _read(self) -> None:
        """One read of the log, run by a timer (not a task: a claim read back here is woken
        without an extra turn of the loop); soon again while someone waits to read its record
        back (``_wake``), now and then otherwise."""
        self._timer = None
        assert self._consumer is not None and self._reading is not None
        try:
            msgs = self._consumer.consume(num_messages=2000, timeout=0)
        except Exception as e:
            _done(self._reading, e)
            return
        if msgs:
            self._apply(msgs)
        if self._log_end is None:  # a read error: learn the log's end again first
            _done(self._reading)
            return
        busy = self._waiting > 0 or not self.ready
        self._schedule(0 if len(msgs) == 2000 else self.BUSY_S if busy else self.IDLE_S)

    def _schedule(self, delay: float) -> None:
        self._unschedule()
        loop = asyncio.get_running_loop()
        self._due = loop.time() + delay
        self._timer = loop.call_at(self._due, self._read)

    def _unschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        """Someone waits to read its record back: read busily from now on."""
        if self._timer is not None and self._due > asyncio.get_running_loop().time() + self.BUSY_S:
            self._schedule(self.BUSY_S)

    def _open(self) -> tuple[confluent_kafka.Consumer, int]:
        consumer = confluent_kafka.Consumer(self.kafka.librdkafka_config(**{
            "group.id": f"parley-ingress-claims-{os.urandom(8).hex()}", "enable.auto.commit": False,
            "fetch.wait.max.ms": 10, "fetch.min.bytes": 1, "socket.nagle.disable": True,
            "enable.partition.eof": False}))
        try:
            high = self._end_offset(consumer)
            consumer.assign([TopicPartition(self.topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        except Exception:
            consumer.close()
            raise
        return consumer, high

    def _end_offset(self, consumer: confluent_kafka.Consumer) -> int:
        _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=5.0)
        return int(high)

    def _apply(self, msgs: list[Any]) -> None:
        was_ready = self.ready
        read_back: list[asyncio.Future] = []
        for msg in msgs:
            if msg.error():
                # the broker away, or the log unreadable: not ready until the log's end is
                # known again and read up to (a claim could not be read back meanwhile)
                log.warning("dedup.reader_error", error=msg.error().str())
                self._log_end = None
                continue
            own = self._own.pop(msg.key(), None)
            if own is not None:
                entries, waiters, deadline = own
                read_back.extend(waiters)
                if deadline is not None:
                    deadline.cancel()
            else:
                try:
                    entries = self._codec.decode(msg.value())["entries"]
                except DecodeError as e:
                    log.warning("dedup.undecodable", offset=msg.offset(), error=str(e))
                    entries = []
            for entry in entries:
                self._apply_entry(entry)
            self.position = msg.offset() + 1
        for f in read_back:  # after the whole batch: they decide on everything read so far
            if not f.done():
                f.set_result(None)
        if not was_ready and self.ready:
            log.info("dedup.ready", ids=len(self.memory), open_claims=len(self.attempts))
        now = self.clock_ms()
        if now >= self._next_expiry:
            self._next_expiry = now + 60_000
            self.memory.expire(now)
            for a in [a for a in self.attempts.values() if now - a.at_ms > self.memory.horizon_ms]:
                self._end(a)  # a claim older than the horizon: its ids may be written again anyway

    def _apply_entry(self, e: dict[str, Any]) -> None:
        kind, owner = e["kind"], e["owner"]
        if kind == "claimed":
            if owner in self.attempts:
                return
            items = [Item(i["id"], i["topic"], i["key"]) for i in e["ids"]]
            self.attempts[owner] = _Attempt(owner, e["at"], items)
            for i in items:
                self.claims.setdefault(i.id, []).append(owner)
            return
        if kind == "stored" and not owner.startswith(self._me):  # ours were remembered when stored
            for i in e["ids"]:
                self.memory.add(i["id"], e["at"], i["partition"], i["offset"])
        a = self.attempts.get(owner)
        if a is not None:  # either marker ends the attempt: what it did not store, it never will
            self._end(a)

    def _end(self, a: _Attempt) -> None:
        self.attempts.pop(a.owner, None)
        for i in a.items:
            owners = self.claims.get(i.id)
            if owners is not None and a.owner in owners:
                owners.remove(a.owner)
                if not owners:
                    del self.claims[i.id]
        for f in a.waiters:
            if not f.done():
                f.set_result(None)


def _fail(waiters: list[asyncio.Future], why: str) -> None:
    for f in waiters:
        if not f.done():
            f.set_exception(Unavailable(why))


def _done(f: asyncio.Future, result: Any = None) -> None:
    if not f.done():
        f.set_result(result)


def _scan(kafka: KafkaSettings, items: Sequence[Item], claimed_at_ms: int) -> dict[str, Stored]:
    """(Blocking) the ids of ``items`` that are on their topics, and where.

    Kafka's time index cannot find them (``parley.messages`` records carry their event time,
    which may be days older than when they were written), so each partition is read backwards
    from its end until a chunk holds only records whose ``envelope.recorded_at`` (the ingress's
    clock when it wrote them) is older than the claim, less ``SKEW_MS``.
    """
    from aiokafka.partitioner import murmur2

    consumer = confluent_kafka.Consumer(kafka.librdkafka_config(**{
        "group.id": f"parley-ingress-scan-{os.urandom(8).hex()}", "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(timeout=5.0)
        wanted: dict[tuple[str, int], set[str]] = {}
        for i in items:
            n = len(meta.topics[i.topic].partitions)
            wanted.setdefault((i.topic, (murmur2(i.key) & 0x7FFFFFFF) % n), set()).add(i.id)
        found: dict[str, Stored] = {}
        for (topic, partition), ids in wanted.items():
            found.update(_scan_partition(consumer, codec_for(kafka), topic, partition, ids, claimed_at_ms - SKEW_MS))
        return found
    finally:
        consumer.close()


def _scan_partition(consumer: confluent_kafka.Consumer, codec: Codec, topic: str, partition: int, ids: set[str],
                    since_ms: int, chunk: int = 2000) -> dict[str, Stored]:
    low, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5.0)
    found: dict[str, Stored] = {}
    while end > low and ids - set(found):
        start = max(low, end - chunk)
        newest = _read_range(consumer, codec, topic, partition, start, end, ids, found)
        if newest < since_ms:
            break  # this chunk was all written before the claim: so was everything before it
        end = start
    return found


def _read_range(consumer: confluent_kafka.Consumer, codec: Codec, topic: str, partition: int, start: int,
                end: int, ids: set[str], found: dict[str, Stored]) -> int:
    """Read offsets [start, end); record the ids found; the newest ``recorded_at`` seen."""
    consumer.assign([TopicPartition(topic, partition, start)])
    newest, position = -1, start
    deadline = time.monotonic() + 30.0
    while position < end:
        if time.monotonic() > deadline:
            raise Unavailable(f"could not read {topic}[{partition}] {start}..{end} in time")
        for msg in consumer.consume(num_messages=500, timeout=0.5):
            offset, value = msg.offset(), msg.value()
            if msg.error() or offset is None or offset >= end:
                continue
            position = offset + 1
            if value is None:  # a tombstone: no envelope
                continue
            try:
                env = codec.decode(value)["envelope"]
            except (DecodeError, KeyError, TypeError):
                continue
            newest = max(newest, env.get("recorded_at") or 0)
            if env["event_id"] in ids:
                found[env["event_id"]] = Stored(topic, partition, offset)
    return newest
