"""Kafka clients for the egress: librdkafka producer with delivery futures on the event loop,
the input consumer's offsets, and the reads-back of ``parley.outbound`` and the windows topic."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from schemas.codec import Codec, DecodeError


class AsyncProducer:
    """An idempotent ``acks=all`` producer whose ``send`` returns an awaitable acknowledgement.
    Delivery reports are served by ``poll(0)`` on the event loop (no thread)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.producer = Producer(conf)
        self.in_flight = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        while True:
            self.producer.poll(0)
            await asyncio.sleep(0.001 if self.in_flight else 0.02)

    def send(self, topic: str, key: bytes, value: bytes,
             headers: list[tuple[str, str | bytes | None]] | None = None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()

        def done(err: KafkaError | None, msg: Any) -> None:
            self.in_flight -= 1
            if fut.done():
                return
            if err is not None:
                fut.set_exception(KafkaException(err))
            else:
                fut.set_result((msg.partition(), msg.offset()))

        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=done, headers=headers)
                break
            except BufferError:  # the local queue is full: serve reports, then try again
                self.producer.poll(0.01)
        self.in_flight += 1
        return fut

    async def close(self, timeout_s: float = 10.0) -> None:
        if self._task:
            self._task.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, timeout_s)


class Offsets:
    """One input partition's offsets in progress; the commit point is the lowest not done."""

    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.done: set[int] = set()
        self.next = -1  # the offset after the last one read
        self.committed = -1

    def add(self, offset: int) -> None:
        self.order.append(offset)
        self.next = offset + 1

    def finish(self, offset: int) -> None:
        self.done.add(offset)

    def point(self) -> int:
        while self.order and self.order[0] in self.done:
            self.done.discard(self.order.popleft())
        return self.order[0] if self.order else self.next

    @property
    def pending(self) -> int:
        return len(self.order) - len(self.done)


def read_back(conf: dict[str, Any], topic: str, partitions: list[int], since_ms: int | None,
              codec: Codec, wanted: frozenset[str]) -> Iterator[tuple[bytes | None, dict[str, Any]]]:
    """(key, event) of ``wanted`` types in ``topic``'s ``partitions``, from ``since_ms`` (or the
    start) to the end offsets seen when called; read_committed."""
    c = Consumer({**conf, "group.id": "parley-egress-readback", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        if since_ms is not None:
            found = c.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=30)
            tps = [TopicPartition(topic, t.partition, t.offset if t.offset >= 0 else OFFSET_BEGINNING) for t in found]
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        left = {p for p in partitions if ends[p] > 0}
        c.assign(tps)
        while left:
            for m in c.consume(1000, timeout=0.1):
                error, p, value = m.error(), m.partition(), m.value()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        left.discard(p)
                    continue
                offset = m.offset()
                assert p is not None and offset is not None  # a record read has its position
                if offset >= ends[p] - 1:
                    left.discard(p)
                if value is None:  # a tombstone: nothing to read
                    continue
                try:
                    if codec.writer_of(value).name in wanted:
                        yield m.key(), codec.decode(value)
                except DecodeError:
                    continue
    finally:
        c.close()


def partitions_of(conf: dict[str, Any], topic: str) -> list[int]:
    c = Consumer({**conf, "group.id": "parley-egress-meta"})
    try:
        md = c.list_topics(topic, timeout=30).topics[topic]
        if md.error is not None:
            raise KafkaException(md.error)
        return sorted(md.partitions)
    finally:
        c.close()


def noop(*_: Any) -> None:
    pass


Callback = Callable[..., None]
