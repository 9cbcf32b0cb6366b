"""The demo driver's window on the running stream worker: when it is quiet, and what it decided.

``Pipeline.wait_quiet()`` returns once the worker (``parley worker``, group ``<prefix><app_id>``)
has processed everything sent so far that it can process, committed what it caused, and nothing
more is coming without new input:
1. every task's latest published watermark (``<prefix><app_id>-watermarks``) says it is idle (all
   its sources idle and read to their end);
2. every committed record past the group's committed offset, on any partition the worker reads
   (a probe consumer reads them; the transaction markers after the last record are not records),
   is *held*: on a sequenced input, written by another task, with an event time after the
   reading task's watermark. Such a record waits for later event time (e.g. an agent's status,
   forwarded by a stage that publishes no watermark of its own, waits for the next message), and
   is released in its place in event time when that comes. Any other record is still in flight;
3. both hold, unchanged, for ``window_s`` (a watermark still travelling between tasks, which may
   fire a timer, shows up as a new watermark record or a new commit within a few commit intervals).
Then every output of those records is committed: ``read_new()`` reads ``parley.conversations``
(``read_committed``) up to its last stable offsets.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from parley.settings import KafkaSettings
from schemas import topics
from schemas.codec import Codec, codec_for


def readers() -> dict[str, tuple[str, bool]]:
    """Topic (catalogue name) -> (the stage that reads it, whether that input is sequenced)."""
    import streams.topology  # noqa: F401 - imports every stage class
    from streams.runtime.stage import Stage

    out: dict[str, tuple[str, bool]] = {}
    todo = list(Stage.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        for i in getattr(cls, "inputs", ()):
            if cls.name:
                out.setdefault(i.topic.name, (cls.name, i.sequenced))
    return out


def _event_time(value: bytes | None, codec: Codec) -> int:
    if not value:
        return -1
    if value[:1] == b"{":
        return int(orjson.loads(value)["t"])
    return int(codec.decode(value)["envelope"]["occurred_at"])


class Pipeline:
    """Watches one worker group and reads the decisions topic (see the module docstring)."""

    def __init__(self, kafka: KafkaSettings, app_id: str, *, window_s: float = 0.25,
                 poll_s: float = 0.05, alive: Callable[[], None] | None = None) -> None:
        """``alive``: called while waiting; raises when the worker's process is gone."""
        self.kafka, self.window_s, self.poll_s, self.alive = kafka, window_s, poll_s, alive
        self.app_id = app_id
        self.group = f"{kafka.topic_prefix}{app_id}"
        self.watermarks = f"{kafka.topic_prefix}{app_id}-watermarks"
        self.decisions = topics.named(kafka.topic_prefix, topics.CONVERSATIONS)
        self.admin = AdminClient(kafka.librdkafka_config())
        self.codec = codec_for(kafka)
        self.marks: dict[str, tuple[int, bool]] = {}  # task id -> (watermark, idle)
        self.readers = readers()
        self._wm_end = 0
        self._wm: Consumer | None = None
        self._reader: Consumer | None = None
        self._probe = self._consumer()
        self._parts: list[TopicPartition] = []
        self.waited_s = 0.0
        self.waits = 0

    def _consumer(self, **extra: Any) -> Consumer:
        return Consumer(self.kafka.librdkafka_config(**{
            "group.id": f"demo-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "isolation.level": "read_committed", "enable.partition.eof": True,
            "fetch.wait.max.ms": 5, **extra}))

    # --- quiet ------------------------------------------------------------------------------

    def wait_quiet(self, timeout_s: float = 120.0) -> float:
        """Block until the worker is quiet (see the module docstring); the seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        last: tuple | None = None
        since = 0.0
        while True:
            if self.alive is not None:
                self.alive()
            snap = self.quiet_now()
            now = time.monotonic()
            if snap is not None and snap == last and now - since >= self.window_s:
                self.waits += 1
                self.waited_s += now - t0
                return now - t0
            if snap != last:
                last, since = snap, now
            if now > deadline:
                raise TimeoutError(f"the worker ({self.group}) did not settle within {timeout_s:.0f} s")
            time.sleep(self.poll_s)

    def quiet_now(self) -> tuple | None:
        """A snapshot (watermark records seen, committed offsets) if the worker looks quiet now."""
        self._read_marks()
        if not self.marks or not all(idle for _, idle in self.marks.values()):
            return None
        assigned = self._assignment()
        if not assigned:
            return None
        committed = self._committed()
        ends = self._ends(assigned)
        behind = [TopicPartition(t, p, committed.get((t, p), OFFSET_BEGINNING))
                  for (t, p), end in ends.items() if end > max(committed.get((t, p), 0), 0)]
        if behind and self._in_flight(behind):
            return None
        return self._wm_end, tuple(sorted(committed.items()))

    def _read_marks(self) -> None:
        if self._wm is None:
            self._wm = self._consumer()
            self._wm.assign([TopicPartition(self.watermarks, 0, OFFSET_BEGINNING)])
        while True:
            msgs = self._wm.consume(10_000, 0.01)
            if not msgs:
                return
            for m in msgs:
                key, value, offset = m.key(), m.value(), m.offset()
                if m.error() is not None or value is None:
                    continue
                assert key is not None and offset is not None  # a watermark record is keyed by task
                mark = orjson.loads(value)
                self.marks[key.decode()] = (mark["w"], bool(mark["idle"]))
                self._wm_end = offset + 1

    def _assignment(self) -> list[tuple[str, int]]:
        """The partitions the worker group reads (empty while it is not stable)."""
        desc = self.admin.describe_consumer_groups([self.group])[self.group].result(10)
        if desc.state != ConsumerGroupState.STABLE:
            return []
        return sorted((tp.topic, tp.partition) for m in desc.members for tp in m.assignment.topic_partitions)

    def _committed(self) -> dict[tuple[str, int], int]:
        res = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(self.group)])
        got = res[self.group].result(10)
        return {(tp.topic, tp.partition): tp.offset for tp in got.topic_partitions if tp.offset >= 0}

    def _ends(self, parts: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Last stable offsets (``read_committed`` ends)."""
        req = {TopicPartition(t, p): OffsetSpec.latest() for t, p in parts}
        res = self.admin.list_offsets(req, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=10)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in res.items()}

    def _in_flight(self, parts: list[TopicPartition]) -> bool:
        """Whether a record between these offsets and the end is still to be processed (see
        the module docstring: held records are not)."""
        self._probe.assign(parts)
        todo = {(tp.topic, tp.partition) for tp in parts}
        deadline = time.monotonic() + 10
        try:
            while todo and time.monotonic() < deadline:
                for m in self._probe.consume(1000, 0.02):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            todo.discard((m.topic(), m.partition()))
                        continue
                    if not self._held(m):
                        return True
            return bool(todo)
        finally:
            self._probe.unassign()

    def _held(self, m: Any) -> bool:
        name = m.topic().removeprefix(self.kafka.topic_prefix)
        name = name.removeprefix(f"{self.app_id}-")  # internal topics: <prefix><app_id>-<name>
        stage, sequenced = self.readers.get(name, (None, False))
        if stage is None or not sequenced or not any(k == "pt" for k, _ in (m.headers() or ())):
            return False
        w, _ = self.marks.get(f"{stage}/{m.partition()}", (None, False))
        return w is not None and _event_time(m.value(), self.codec) > w

    # --- decisions --------------------------------------------------------------------------

    def read_new(self) -> list[dict[str, Any]]:
        """The ``parley.conversations`` events committed since the last call, decoded, in the
        topic's order per partition."""
        if self._reader is None:
            md = self.admin.list_topics(self.decisions, timeout=10).topics[self.decisions]
            self._parts = [TopicPartition(self.decisions, p) for p in sorted(md.partitions)]
            self._reader = self._consumer()
            self._reader.assign([TopicPartition(self.decisions, p.partition, OFFSET_BEGINNING)
                                 for p in self._parts])
        ends = self._ends([(tp.topic, tp.partition) for tp in self._parts])
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while True:
            positions = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in self._reader.position(self._parts)}
            if all(positions[k] >= end for k, end in ends.items()):
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self.decisions} to its end")
            for m in self._reader.consume(10_000, 0.1):
                value = m.value()
                if m.error() is None and value is not None:
                    out.append(self.codec.decode(value))

    def read_all(self, name: str) -> list[dict[str, Any]]:
        """Every committed event of the catalogue topic ``name`` (under the run's prefix)."""
        topic = f"{self.kafka.topic_prefix}{name}"
        parts = sorted(self.admin.list_topics(topic, timeout=10).topics[topic].partitions)
        tps = [TopicPartition(topic, p) for p in parts]
        ends = self._ends([(topic, p) for p in parts])
        c = self._consumer()
        try:
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            out: list[dict[str, Any]] = []
            deadline = time.monotonic() + 60
            while any(max(tp.offset, 0) < ends[(tp.topic, tp.partition)] for tp in c.position(tps)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic} to its end")
                for m in c.consume(10_000, 0.1):
                    value = m.value()
                    if m.error() is None and value is not None:
                        out.append(self.codec.decode(value))
            return out
        finally:
            c.close()

    def close(self) -> None:
        for c in (self._wm, self._reader, self._probe):
            if c is not None:
                c.close()
