"""Feeding the projections from Kafka: the live run, catching up, and rebuilds.

Consumes: each projection's topics (``projection.reads``), every partition, assigned by hand
(no consumer group: the database holds the offsets). Produces: DeadLetter records for what does
not decode or apply (``parley.deadletter``). State: the projection database.
Exactly-once into SQL: each batch's rows, its applied event ids and the next offset per
(projection, topic, partition) are written in one transaction, and at start each partition is
sought to its checkpoint; a crash anywhere loses nothing and counts nothing twice.
A rebuild empties one projection (tables, checkpoints, event ids), then replays its topics from
the start with the same apply code in larger batches, not reading rows back while the tables
are fresh: it yields exactly what the live run built. Stop `projections run` (for that
projection) while rebuilding: two writers of one projection would interleave.
Privacy (docs/PRIVACY.md): sealed events are opened before they are applied; the key store's
erasures and expiries are applied to the rows every ``refresh_s`` (``projections.privacy``),
after a catch-up, and from the start after a rebuild.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import projections
from parley import logs
from parley.privacy.keystore import KeyStore
from parley.privacy.seal import Opener
from parley.settings import ProjectionSettings
from projections.engine import Batcher, Decoded, Projection, checkpoints, decode_batch, truncate
from projections.privacy import PrivacyPass, opener_from
from projections.store import Store, open_store
from schemas import topics
from schemas.codec import Codec, codec_for
from schemas.events import dead_letter, derive_id

log = logs.get("projections.runner")


class TopicMissing(RuntimeError):
    """A topic the projection reads does not exist (run ``parley topics apply``)."""


@dataclass
class Stats:
    projection: str
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    dead_letters: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "records_per_s": round(self.rate, 1)}


class Feeder:
    """One projection's consumer and batcher: ``step()`` reads a batch and commits it."""

    def __init__(self, settings: ProjectionSettings, store: Store, projection: Projection, *,
                 fresh: bool = False, batch_size: int | None = None,
                 codec: Codec | None = None, opener: Opener | None = None) -> None:
        self.s, self.store, self.p = settings, store, projection
        self.opener = opener  # sealed events are opened before route/apply see them (docs/PRIVACY.md)
        self.prefix = settings.kafka.topic_prefix
        self.batch_size = batch_size or settings.batch_size
        self.codec = codec or codec_for(settings.kafka)
        self.batcher = Batcher(store, projection, topic_prefix=self.prefix, fresh=fresh)
        self.stats = Stats(projection.name)
        self.tps: list[TopicPartition] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Assign every partition of the projection's topics and seek to the checkpoints."""
        await self.codec.aprepare((topics.DEAD_LETTER,))  # registry ids, once per process
        self._consumer = AIOKafkaConsumer(
            **self.s.kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            client_id=f"parley-projections-{self.p.name}")
        await self._consumer.start()
        try:
            self.tps = await self._partitions()
            self._consumer.assign(self.tps)
            done = checkpoints(self.store, self.p.name)
            for tp in self.tps:
                if (tp.topic, tp.partition) in done:
                    self._consumer.seek(tp, done[(tp.topic, tp.partition)])
                else:
                    await self._consumer.seek_to_beginning(tp)
        except BaseException:
            await self.stop()
            raise
        log.info("projection.started", projection=self.p.name, partitions=len(self.tps),
                 from_checkpoint=len(done))

    async def _partitions(self) -> list[TopicPartition]:
        names = [topics.named(self.prefix, t) for t in self.p.topics]
        admin = AIOKafkaAdminClient(**self.s.kafka.client_kwargs(), request_timeout_ms=30000)
        await admin.start()
        try:
            described = {d["topic"]: d for d in await admin.describe_topics(names)}
        finally:
            await admin.close()
        tps = []
        for name in names:
            d = described.get(name)
            if not d or d["error_code"] != 0 or not d["partitions"]:
                raise TopicMissing(f"topic {name} does not exist: run `parley topics apply`")
            tps += [TopicPartition(name, n) for n in sorted(p["partition"] for p in d["partitions"])]
        return tps

    async def rewind(self) -> None:
        """Seek every partition to its beginning (a rebuild, after the truncation)."""
        assert self._consumer is not None
        await self._consumer.seek_to_beginning(*self.tps)

    async def end_offsets(self) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        return await self._consumer.end_offsets(self.tps)

    async def caught_up(self, end: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp in self.tps:
            if await self._consumer.position(tp) < end[tp]:
                return False
        return True

    async def step(self, timeout_ms: int | None = None) -> int:
        """Read one batch, apply it, commit rows + event ids + offsets; return records read."""
        assert self._consumer is not None
        timeout = self.s.poll_timeout_ms if timeout_ms is None else timeout_ms
        fetched = await self._consumer.getmany(timeout_ms=timeout, max_records=self.batch_size)
        records = [r for batch in fetched.values() for r in batch]
        if not records:
            return 0
        t0 = time.perf_counter()
        await self.codec.aresolve(r.value for r in records)  # ids no process of ours wrote: off the loop
        decoded = decode_batch(self.codec, records, self.batcher.wanted)
        if self.opener is not None:
            for d in decoded:
                if d.event is not None and d.event.get("privacy"):
                    d.event = self.opener.open(d.event)
        before = (self.batcher.applied, self.batcher.duplicates, self.batcher.ignored)
        self.batcher.apply(decoded)
        failed = [d for d in decoded if d.event is None and d.error] + self.batcher.take_failed()
        if failed:
            await self._dead_letters(failed)
        try:
            self.batcher.commit()
        except BaseException:
            self.batcher.rollback()
            raise
        self._count(len(records), before, len(failed), time.perf_counter() - t0)
        return len(records)

    def _count(self, n: int, before: tuple[int, int, int], failed: int, took: float) -> None:
        st, b = self.stats, self.batcher
        st.records += n
        st.batches += 1
        st.applied += b.applied - before[0]
        st.duplicates += b.duplicates - before[1]
        st.ignored += b.ignored - before[2]
        st.dead_letters += failed
        log.debug("projection.batch", projection=self.p.name, records=n, ms=round(took * 1000, 1))

    async def _dead_letters(self, failed: list[Decoded]) -> None:
        """Send what did not decode or apply to the dead-letter topic, before the commit."""
        for d in failed:
            log.warning("projection.dead_letter", projection=self.p.name, topic=d.topic,
                        partition=d.partition, offset=d.offset, error=d.error)
        if not self.s.dead_letters:
            return
        if self._producer is None:
            self._producer = AIOKafkaProducer(**self.s.kafka.client_kwargs(), acks="all",
                                              enable_idempotence=True)
            await self._producer.start()
        name = topics.named(self.prefix, topics.DEAD_LETTER)
        deads = [self._dead_letter(d) for d in failed]
        sends = [await self._producer.send(name, self.codec.encode(dead, name),
                                           key=dead["envelope"]["partition_key"].encode())
                 for dead in deads]
        await asyncio.gather(*sends)

    def _dead_letter(self, d: Decoded) -> dict[str, Any]:
        """``schemas.events.dead_letter`` of a record; its id named as the projections always named it."""
        return dead_letter(f"projections/{self.p.name}", "undecodable" if d.event is None else "poison",
                           d.error or "", d.raw or b"", d.topic, d.partition, d.offset, key=d.key,
                           occurred_at=_event_time(d), tenant_id=_tenant(d),
                           event_id=derive_id("projections", self.p.name, d.topic, d.partition, d.offset))

    async def stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()
        self._consumer = self._producer = None


def _event_time(d: Decoded) -> int:
    return d.event["envelope"]["occurred_at"] if d.event else 0


def _tenant(d: Decoded) -> str | None:
    return d.event["envelope"]["tenant_id"] if d.event else None  # else the key's


def _names(settings: ProjectionSettings, names: list[str] | None) -> list[Projection]:
    return [projections.get(n) for n in (names or settings.projections)]


def _store(settings: ProjectionSettings, store: Store | None) -> tuple[Store, bool]:
    if store is not None:
        return store, False
    s = open_store(settings.database_url)
    applied = s.migrate()
    if applied:
        log.info("projection.migrated", applied=applied)
    return s, True


# -- the live run ------------------------------------------------------------------------------
async def arun(settings: ProjectionSettings, names: list[str] | None = None, *,
               stop: asyncio.Event | None = None, store: Store | None = None) -> dict[str, Stats]:
    """Keep the projections up to date until ``stop`` is set; return what each applied."""
    stop = stop or asyncio.Event()
    db, own = _store(settings, store)
    opener = opener_from(settings.privacy)
    feeders = [Feeder(settings, db, p, opener=opener) for p in _names(settings, names)]
    privacy = _privacy_pass(settings, db, opener)
    try:
        await _start_all(feeders, stop)
        await asyncio.gather(*(_follow(f, stop) for f in feeders), _shred(privacy, feeders, settings, stop))
    finally:
        for f in feeders:
            await f.stop()
        if own:
            db.close()
    return {f.p.name: f.stats for f in feeders}


def _privacy_pass(settings: ProjectionSettings, db: Store, opener: Opener | None) -> PrivacyPass | None:
    """The pass applying erasures and expiries to the rows, when a key store is configured."""
    if settings.privacy.master_key is None:
        return None
    return PrivacyPass(db, KeyStore(settings.privacy.keys_url), opener.keyring if opener else None)


def shred(privacy: PrivacyPass | None, feeders: list[Feeder], since: int | None = None) -> dict[str, int]:
    """Apply the key store's new destructions to the rows; the feeders' row caches, which may
    hold what was just blanked, are dropped (between batches: nothing is pending)."""
    if privacy is None:
        return {}
    changed = privacy.apply(since)
    if changed:
        for f in feeders:
            f.batcher.rollback()
        log.info("projection.privacy_applied", rows=changed, seq=privacy.seq)
    return changed


async def _shred(privacy: PrivacyPass | None, feeders: list[Feeder], settings: ProjectionSettings,
                 stop: asyncio.Event) -> None:
    while privacy is not None and not stop.is_set():
        shred(privacy, feeders)
        await _wait(stop, max(0.2, settings.privacy.refresh_s))


async def _start_all(feeders: list[Feeder], stop: asyncio.Event) -> None:
    """Start each feeder; a topic not created yet is waited for, not fatal."""
    for f in feeders:
        while not stop.is_set():
            try:
                await f.start()
                break
            except TopicMissing as e:
                log.warning("projection.waiting_for_topic", projection=f.p.name, error=str(e))
                await _wait(stop, 5.0)


async def _follow(f: Feeder, stop: asyncio.Event) -> None:
    last_log = time.monotonic()
    while not stop.is_set():
        await f.step()
        if time.monotonic() - last_log > 30:
            log.info("projection.progress", **f.stats.as_dict())
            last_log = time.monotonic()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def acatch_up(settings: ProjectionSettings, names: list[str] | None = None, *,
                    store: Store | None = None) -> dict[str, Stats]:
    """Apply everything written so far (the end offsets at start), then return."""
    db, own = _store(settings, store)
    opener = opener_from(settings.privacy)
    out = {}
    try:
        for p in _names(settings, names):
            out[p.name] = await _drain(Feeder(settings, db, p, opener=opener))
        shred(_privacy_pass(settings, db, opener), [])
    finally:
        if own:
            db.close()
    return out


async def _drain(f: Feeder, before: Callable[[], Awaitable[None]] | None = None) -> Stats:
    """Start ``f``, run ``before`` (if any), then apply up to the end offsets seen now."""
    t0 = time.perf_counter()
    await f.start()
    try:
        if before is not None:
            await before()
        end = await f.end_offsets()
        while not await f.caught_up(end):
            await f.step(timeout_ms=200)
    finally:
        await f.stop()
    f.stats.seconds = time.perf_counter() - t0
    return f.stats


# -- rebuild ---------------------------------------------------------------------------------------
async def arebuild(settings: ProjectionSettings, name: str, *, store: Store | None = None) -> Stats:
    """Empty projection ``name`` and replay its topics from the start (the fast path)."""
    p = projections.get(name)
    db, own = _store(settings, store)
    try:
        t0 = time.perf_counter()
        opener = opener_from(settings.privacy)
        f = Feeder(settings, db, p, fresh=True, batch_size=settings.rebuild_batch_size, opener=opener)

        async def empty_then_rewind() -> None:  # only once the topics are known to exist
            truncate(db, p)
            await f.rewind()

        stats = await _drain(f, empty_then_rewind)
        shred(_privacy_pass(settings, db, opener), [], since=0)  # every erasure again, on the new rows
        stats.seconds = time.perf_counter() - t0
        log.info("projection.rebuilt", **stats.as_dict())
        return stats
    finally:
        if own:
            db.close()


# -- synchronous entry points for the CLI ----------------------------------------------------------
def run(settings: ProjectionSettings, names: list[str] | None = None) -> None:
    """`parley projections run`: keep the projections up to date until SIGINT/SIGTERM."""
    logs.configure(settings.log, service="projections")
    log.info("projection.settings", **settings.safe_dict())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stats = await arun(settings, names, stop=stop)
        log.info("projection.stopped", **{n: s.as_dict() for n, s in stats.items()})

    asyncio.run(main())


def rebuild(settings: ProjectionSettings, name: str) -> Stats:
    """`parley projections rebuild NAME`: empty one projection and replay its topics."""
    logs.configure(settings.log, service="projections")
    return asyncio.run(arebuild(settings, name))


if __name__ == "__main__":  # `python -m projections.runner`: the live run, settings from the env
    run(ProjectionSettings())
