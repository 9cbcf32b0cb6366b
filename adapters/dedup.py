"""Ingress dedup: an event id reaches ``parley.messages`` (and the raw topic) once, however often a
provider redelivers, across restarts and across ingress processes.

Where the memory lives: the claim log, ``parley.ingress.claims``: one partition, so one total order
that every ingress process reads (``IngressClaim`` records, key = the attempt):

- ``claimed(owner, ids)``: an attempt (one request, one try) is about to write these ids; produced
  and acknowledged *before* any of them is;
- ``stored(owner, ids + partition/offset)``: Kafka acknowledged them (sent after the answer's
  records are acked; never awaited);
- ``released(owner)``: the attempt failed (answered 503): its claims are void.

Each process tails the log from its start into memory (``Memory``) and is not ready before it has
caught up. For an id, the **first claim in log order that is not released wins**: an attempt
claims, waits until its own tail has read past its claim, and then knows, like every other
process will, whether it holds each id. Ids already stored are dropped at once (a redelivery
minutes or days later costs no Kafka round trip); ids held by another live attempt are waited
for (``wait_s``), then dropped if it stored them, taken over if it released them, and answered
503 (retry later) if it is still busy.

A crash between the claim and the stored marker leaves a claim nobody resolves: after
``claim_ttl_s`` (well past the producer's deadline, so nothing it sent can still land) the next
attempt that meets it reads the partitions those ids would be on, back from their end to the
claim's time (``_scan``), and writes ``stored`` for what it finds and ``released`` for the dead
attempt; then claims again. That read is the one costly path, and only a crash leads to it.

How long: ``horizon_s`` (8 days by default: the longest documented retry horizon is Meta's and
Google RBM's 7 days, then e-mail 3 days, Mailgun 8 h, Telegram 24 h, Viber 1 h, Twilio, LINE,
WeChat and Slack minutes). The topic keeps 9 days. What it costs: one extra Kafka round trip per
request (the claim; its read-back is the tail, usually already there), two small records per
request on the claim log (~250 bytes each with their envelope), and in every ingress process
~100 bytes of memory per id stored within the horizon (``Memory``), plus reading the log at
start (about 1 s per 100,000 requests).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka
from confluent_kafka import TopicPartition

from adapters.producer import Producer, Record, Stored, Unavailable
from parley import logs
from parley.settings import KafkaSettings
from schemas.catalog import catalog
from schemas.codec import Codec, DecodeError
from schemas.events import derive_id, envelope, make

log = logs.get("adapters.dedup")

DAY_MS = 24 * 3600 * 1000
UNKNOWN = -1  # stored, location not known (a record found by a scan of an older version...)


@dataclass(frozen=True)
class Item:
    """One record a request would write, named by its event id."""

    id: str
    topic: str
    key: bytes


@dataclass
class Outcome:
    """What a request may write (``mine``) and what is already stored (``stored``: id -> location)."""

    owner: str | None
    mine: list[Item] = field(default_factory=list)
    stored: dict[str, Stored | None] = field(default_factory=dict)

    def is_mine(self, event_id: str) -> bool:
        return any(i.id == event_id for i in self.mine)


class Busy(Exception):
    """Another attempt holds a claim on one of the ids and did not finish in time: retry later."""


def fingerprint(event_id: str) -> int:
    """The id as a 128-bit int (ids are UUIDs; anything else is hashed to 128 bits)."""
    try:
        return int(event_id.replace("-", ""), 16) if len(event_id) == 36 else _hashed(event_id)
    except ValueError:
        return _hashed(event_id)


def _hashed(event_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=16).digest(), "big")


class Memory:
    """Ids stored within the horizon, in day buckets by the time they were stored.

    ``{fingerprint: packed location}`` per UTC day (location = partition << 40 | offset, or
    ``UNKNOWN``); a day bucket is dropped whole once all of it is older than the horizon, so an
    id is remembered at least ``horizon_ms`` and at most one day more.
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
    state: str = "claimed"  # claimed | stored | released
    waiters: list[asyncio.Future] = field(default_factory=list)


def location(loc: int | None, topic: str) -> Stored | None:
    if loc is None or loc == UNKNOWN:
        return None
    return Stored(topic, loc >> 40, loc & ((1 << 40) - 1))


class Dedup:
    """The claim protocol above, for one ingress process."""

    def __init__(self, kafka: KafkaSettings, topic: str, producer: Producer, *, horizon_s: float = 8 * 86400,
                 claim_ttl_s: float = 30.0, wait_s: float = 2.0, tenant: str = "ingress",
                 clock_ms=lambda: time.time_ns() // 1_000_000) -> None:
        self.kafka, self.topic, self.producer = kafka, topic, producer
        self.claim_ttl_ms, self.wait_s = int(claim_ttl_s * 1000), wait_s
        self.clock_ms = clock_ms
        self.memory = Memory(int(horizon_s * 1000))
        self.attempts: dict[str, _Attempt] = {}
        self.claims: dict[str, list[str]] = {}  # id -> owners that claimed it, in log order
        self.position = 0  # the next offset of the log this process has not read yet
        self._caught_up_at: int | None = None  # the log's end when we started
        self._reading: list[tuple[int, asyncio.Future]] = []  # (offset, resolved once read)
        self._codec = Codec()
        self._sv = catalog().latest("IngressClaim")
        self._tail: _Tail | None = None
        self._background: set[asyncio.Task] = set()
        self._settling: dict[str, asyncio.Task] = {}
        self._next_expiry = 0
        self._tenant = tenant

    # -- life cycle --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._caught_up_at is not None and self.position >= self._caught_up_at

    async def start(self) -> None:
        self._tail = _Tail(self.kafka, self.topic, asyncio.get_running_loop(), self._apply, self._at_end)
        self._tail.start()

    async def stop(self) -> None:
        if self._tail is not None:
            await asyncio.to_thread(self._tail.stop)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _at_end(self, end: int) -> None:
        if self._caught_up_at is None:
            self._caught_up_at = end
            log.info("dedup.start", log_end=end)
        if self.ready:
            log.info("dedup.ready", ids=len(self.memory), open_claims=len(self.attempts))

    # -- the protocol ------------------------------------------------------------------------

    async def claim(self, items: Sequence[Item]) -> Outcome:
        """Decide which of ``items`` this request writes; ``Busy`` / ``Unavailable`` -> 503."""
        stored = self._stored(items)
        todo = [i for i in items if i.id not in stored]
        if not todo:
            return Outcome(None, [], stored)
        owner = uuid.uuid4().hex
        offset = await self._send("claimed", owner, todo, {})
        await self._read_past(offset)
        try:
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

    def stored(self, outcome: Outcome, where: dict[str, Stored]) -> None:
        """After Kafka acknowledged ``outcome.mine``: remember, and tell the other processes."""
        if outcome.owner is None:
            return
        if not outcome.mine:  # every id turned out stored by others: our claim is void
            self.release(outcome)
            return
        now = self.clock_ms()
        for i in outcome.mine:
            s = where.get(i.id)
            self.memory.add(i.id, now, s.partition if s else None, s.offset if s else None)
        self._background_send("stored", outcome.owner, outcome.mine, where)

    def release(self, outcome: Outcome) -> None:
        """The attempt failed: void its claims (here at once, elsewhere when they read it)."""
        if outcome.owner is None:
            return
        attempt = self.attempts.get(outcome.owner)
        if attempt is not None and attempt.state == "claimed":
            self._resolve(attempt, "released")
        self._background_send("released", outcome.owner, [], {})

    # -- state -------------------------------------------------------------------------------

    def _stored(self, items: Iterable[Item]) -> dict[str, Stored | None]:
        out = {}
        for i in items:
            loc = self.memory.get(i.id)
            if loc is not None:
                out[i.id] = location(loc, i.topic)
        return out

    def _holder(self, event_id: str) -> str | None:
        """The first attempt in log order whose claim on ``event_id`` is not released."""
        for owner in self.claims.get(event_id, ()):
            a = self.attempts.get(owner)
            if a is not None and a.state == "claimed":
                return owner
        return None

    def _expired(self, a: _Attempt) -> bool:
        return a.state == "claimed" and self.clock_ms() - a.at_ms > self.claim_ttl_ms

    async def _wait_for(self, owners: set[str], timeout: float) -> None:
        futures = []
        loop = asyncio.get_running_loop()
        for owner in owners:
            f = loop.create_future()
            self.attempts[owner].waiters.append(f)
            futures.append(f)
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    async def _read_past(self, offset: int) -> None:
        if self.position > offset:
            return
        f = asyncio.get_running_loop().create_future()
        self._reading.append((offset, f))
        try:
            async with asyncio.timeout(max(1.0, self.wait_s)):
                await f
        except TimeoutError:
            raise Unavailable("the claim log was not read back in time") from None

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
        if done:
            offset = await self._send("stored", a.owner, done, found)
            await self._read_past(offset)
        offset = await self._send("released", a.owner, [], {})
        await self._read_past(offset)

    # -- the log -----------------------------------------------------------------------------

    def _record(self, kind: str, owner: str, items: Sequence[Item], where: dict[str, Stored]) -> Record:
        now = self.clock_ms()
        env = envelope("IngressClaim", event_id=derive_id("claim", owner, kind), occurred_at=now,
                       tenant_id=self._tenant, partition_key=owner, producer="ingress", recorded_at=now)
        ids = [{"id": i.id, "topic": i.topic, "key": i.key,
                "partition": where[i.id].partition if i.id in where and where[i.id] else None,
                "offset": where[i.id].offset if i.id in where and where[i.id] else None} for i in items]
        value = self._codec.encode_as(self._sv, make("IngressClaim", env, kind=kind, owner=owner, ids=ids))
        return Record(self.topic, owner.encode(), value, timestamp_ms=now)

    async def _send(self, kind: str, owner: str, items: Sequence[Item], where: dict[str, Stored]) -> int:
        [s] = await self.producer.send_all([self._record(kind, owner, items, where)])
        return s.offset

    def _background_send(self, kind: str, owner: str, items: Sequence[Item], where: dict[str, Stored]) -> None:
        task = asyncio.get_running_loop().create_task(self._send_quietly(kind, owner, items, where))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_quietly(self, kind: str, owner: str, items: Sequence[Item], where: dict[str, Stored]) -> None:
        try:
            await self._send(kind, owner, items, where)
        except Exception as e:  # the claim stays open; the next attempt after the TTL settles it
            log.warning("dedup.marker_failed", kind=kind, owner=owner, error=repr(e))

    def _apply(self, batch: list[tuple[int, dict[str, Any] | None]], position: int) -> None:
        """On the loop: markers read from the log, in order; ``position`` = the next offset."""
        for _offset, m in batch:
            if m is not None:
                self._apply_one(m)
        self.position = max(self.position, position)
        if self._reading:
            still = []
            for offset, f in self._reading:
                if offset < self.position:
                    if not f.done():
                        f.set_result(None)
                else:
                    still.append((offset, f))
            self._reading = still
        now = self.clock_ms()
        if now >= self._next_expiry:
            self._next_expiry = now + 60_000
            self.memory.expire(now)

    def _apply_one(self, m: dict[str, Any]) -> None:
        kind, owner, at = m["kind"], m["owner"], m["envelope"]["occurred_at"]
        if kind == "claimed":
            items = [Item(i["id"], i["topic"], i["key"]) for i in m["ids"]]
            self.attempts.setdefault(owner, _Attempt(owner, at, items))
            for i in items:
                self.claims.setdefault(i.id, []).append(owner)
            return
        if kind == "stored":
            for i in m["ids"]:
                self.memory.add(i["id"], at, i["partition"], i["offset"])
        a = self.attempts.get(owner)
        if a is not None:  # either marker ends the attempt: what it did not store, it never will
            self._resolve(a, kind)

    def _resolve(self, a: _Attempt, state: str) -> None:
        a.state = state
        for i in a.items:
            owners = self.claims.get(i.id)
            if owners is not None and a.owner in owners:
                owners.remove(a.owner)
                if not owners:
                    del self.claims[i.id]
        self.attempts.pop(a.owner, None)
        for f in a.waiters:
            if not f.done():
                f.set_result(state)


class _Tail:
    """Reads the claim log from its start on a thread; hands decoded batches to the loop."""

    def __init__(self, kafka: KafkaSettings, topic: str, loop: asyncio.AbstractEventLoop, apply, at_end) -> None:
        self.topic, self.loop, self.apply, self.at_end = topic, loop, apply, at_end
        self.conf = kafka.librdkafka_config(**{
            "group.id": f"parley-ingress-claims-{uuid.uuid4().hex}", "enable.auto.commit": False,
            "fetch.wait.max.ms": 20, "fetch.min.bytes": 1, "fetch.error.backoff.ms": 100,
            "socket.nagle.disable": True, "enable.partition.eof": False})
        self.codec = Codec()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claims-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        consumer = None
        while not self._stop.is_set():
            try:
                consumer = consumer or self._open()
                self._read(consumer)
            except Exception as e:  # the broker away at start, a rebalance of metadata...: retry
                log.warning("dedup.tail_error", error=repr(e))
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()

    def _open(self) -> confluent_kafka.Consumer:
        consumer = confluent_kafka.Consumer(self.conf)
        _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=5.0)
        consumer.assign([TopicPartition(self.topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        self.loop.call_soon_threadsafe(self.at_end, high)
        return consumer

    def _read(self, consumer: confluent_kafka.Consumer) -> None:
        while not self._stop.is_set():
            msgs = consumer.consume(num_messages=1000, timeout=0.1)
            if not msgs:
                continue
            batch, position = [], None
            for msg in msgs:
                if msg.error():
                    log.warning("dedup.tail_error", error=msg.error().str())
                    continue
                batch.append((msg.offset(), self._decode(msg.value())))
                position = msg.offset() + 1
            if position is not None:
                self.loop.call_soon_threadsafe(self.apply, batch, position)

    def _decode(self, value: bytes) -> dict[str, Any] | None:
        try:
            return self.codec.decode(value)
        except DecodeError as e:
            log.warning("dedup.undecodable_marker", error=str(e))
            return None


SKEW_MS = 60_000  # clocks of ingress processes may differ this much; also covers planning time


def _scan(kafka: KafkaSettings, items: Sequence[Item], claimed_at_ms: int) -> dict[str, Stored]:
    """(Blocking) the ids of ``items`` that are on their topics, and where.

    Kafka's time index cannot find them (``parley.messages`` records carry their event time,
    which may be days older than when they were written), so each partition is read backwards
    from its end until a chunk holds only records whose ``envelope.recorded_at`` (the ingress's
    clock when it wrote them) is older than the claim, less ``SKEW_MS``.
    """
    from aiokafka.partitioner import murmur2

    consumer = confluent_kafka.Consumer(kafka.librdkafka_config(**{
        "group.id": f"parley-ingress-scan-{uuid.uuid4().hex}", "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(timeout=5.0)
        wanted: dict[tuple[str, int], set[str]] = {}
        for i in items:
            n = len(meta.topics[i.topic].partitions)
            wanted.setdefault((i.topic, (murmur2(i.key) & 0x7FFFFFFF) % n), set()).add(i.id)
        found: dict[str, Stored] = {}
        for (topic, partition), ids in wanted.items():
            found.update(_scan_partition(consumer, topic, partition, ids, claimed_at_ms - SKEW_MS))
        return found
    finally:
        consumer.close()


def _scan_partition(consumer: confluent_kafka.Consumer, topic: str, partition: int, ids: set[str],
                    since_ms: int, chunk: int = 2000) -> dict[str, Stored]:
    codec = Codec()
    low, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5.0)
    found: dict[str, Stored] = {}
    while end > low and ids - set(found):
        start = max(low, end - chunk)
        newest_before = _read_range(consumer, codec, topic, partition, start, end, ids, found)
        if newest_before < since_ms:
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
            if msg.error() or msg.offset() >= end:
                continue
            position = msg.offset() + 1
            try:
                env = codec.decode(msg.value())["envelope"]
            except (DecodeError, KeyError, TypeError):
                continue
            newest = max(newest, env.get("recorded_at") or 0)
            if env["event_id"] in ids:
                found[env["event_id"]] = Stored(topic, partition, msg.offset())
    return newest
