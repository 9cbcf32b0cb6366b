"""The stream runtime without Kafka: in-memory topics, one or more simulated workers, crashes.

For tests and for checking a topology's determinism cheaply (bytewax's in-memory sources, in
spirit). It runs the same :class:`~streams.runtime.task.Task` code as the Kafka worker; only
the I/O is simulated:

* a topic is a list of records per partition, partitioned by murmur2 of the key as Kafka's
  default partitioner does; everything a step writes becomes visible at its end (a committed
  transaction), with its changelog records, offsets and published watermarks;
* a step reads, from a random subset of partitions, a random number of records each (``rng``),
  so partitions and producers interleave differently from one seed to another;
* ``crash()`` throws the tasks away and rebuilds them from their changelogs and the committed
  offsets, as a restarted worker would; ``workers`` splits the partitions between simulated
  workers that each commit on their own.

Idleness is deterministic here: a partition is idle once nothing is left to read in it and the
simulated clock has moved ``idle_ms`` past its last record.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from schemas import topics
from schemas.codec import Codec, codec_for
from streams.runtime.stage import Stage
from streams.runtime.task import Env, Record, Task, Upstream, wake


def partition_for(key: bytes | None, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), as librdkafka's ``murmur2_random``."""
    if key is None:
        return 0
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class _Log:
    """One topic: records per partition as (key, value, origin)."""

    partitions: int
    records: list[list[tuple[bytes | None, bytes | None, str | None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.records = [[] for _ in range(self.partitions)]

    def append(self, key: bytes | None, value: bytes | None, origin: str | None) -> tuple[int, int]:
        p = partition_for(key, self.partitions)
        self.records[p].append((key, value, origin))
        return p, len(self.records[p])


class LocalRunner:
    """Runs ``stages`` over in-memory topics, deterministically for a given ``seed``."""

    def __init__(self, stages: Iterable[Stage], codec: Codec | None = None, *, seed: int = 0,
                 lateness_ms: int = 2000, idle_ms: int = 1000, max_read: int = 64, workers: int = 1) -> None:
        self.stages = {s.name: s for s in stages}
        for s in self.stages.values():
            s.check()
        self.codec = codec or codec_for()  # in memory: local ids
        self.rng = random.Random(seed)
        self.max_read = max_read
        self.now = 0.0
        self.logs: dict[str, _Log] = {}
        self.readers = {i.topic.name: s for s in self.stages.values() for i in s.inputs}
        for s in self.stages.values():
            for t in [*(i.topic for i in s.inputs), *s.outputs, topics.DEAD_LETTER]:
                self.logs.setdefault(t.name, _Log(t.partitions))
        self.changelog: dict[tuple[str, int, str], dict[bytes, bytes | None]] = defaultdict(dict)
        self.committed: dict[tuple[str, int], int] = {}
        self.table: dict[str, Upstream] = {}
        self.ends: dict[str, dict[str, int]] = defaultdict(dict)  # task id -> "topic/p" -> end
        sequenced = {i.topic.name for s in self.stages.values() for i in s.inputs if i.sequenced}
        self._watched = sequenced
        upstream: dict[str, list[str]] = defaultdict(list)
        for s in self.stages.values():
            for t in s.outputs:
                upstream[t.name] += [f"{s.name}/{p}" for p in range(s.partitions)]
        self.env = Env(self.codec, {k: tuple(v) for k, v in upstream.items()}, lateness_ms, idle_ms,
                       clock=lambda: self.now)
        self.workers = workers
        self.tasks: dict[str, Task] = {}
        self.position: dict[tuple[str, int], int] = {}
        self._seen_end: dict[tuple[str, int], int] = {}  # the end offsets the last step knew of
        self._start_tasks()

    # --- producing from outside (ingress, agent API) ---------------------------------------

    def produce(self, topic: topics.Topic, event: dict[str, Any] | bytes, key: str | None = None) -> None:
        """Write an event as a producer outside the stream runtime would (no origin)."""
        if isinstance(event, bytes):
            if key is None:
                raise ValueError("an encoded event needs its key")
            value, k = event, key
        else:
            value = self.codec.encode(event, topic.name)
            k = key if key is not None else event["envelope"]["partition_key"]
        self.logs[topic.name].append(k.encode(), value, None)

    # --- running -----------------------------------------------------------------------------

    def step(self, worker: int = 0) -> bool:
        """One transaction of one simulated worker; False when it had nothing to do."""
        mine = [t for t in self.tasks.values() if self._owner(t) == worker]
        readable = [(name, p) for (name, p), pos in self.position.items()
                    if pos < len(self.logs[name].records[p]) and self._owner_of(name, p) == worker]
        self.rng.shuffle(readable)
        picked = readable[: self.rng.randint(1, len(readable))] if readable else []
        woken, outside = set(), set()
        picked_set = set(picked)
        for name, p in picked:
            task = self.tasks[f"{self.readers[name].name}/{p}"]
            woken.add(task)
            pos = self.position[(name, p)]
            n = self.rng.randint(1, self.max_read)
            for offset in range(pos, min(pos + n, len(self.logs[name].records[p]))):
                key, value, origin = self.logs[name].records[p][offset]
                task.feed(Record(name, p, offset, key, value, origin), self.now)
                self.position[(name, p)] = offset + 1
                if origin is None:
                    outside.add(task)
        wake(self.table, woken, outside, mine, self.now)
        for task in mine:
            for name in task.inputs:
                # as a consumer learns it: caught up once it read to the end (an end-of-partition
                # event); behind once it reads what came since, or a step after new records
                # came (a fetch sees them by then), not before
                where = (name, task.partition)
                end = len(self.logs[name].records[task.partition])
                if self.position[where] >= end:
                    task.clocks[name].caught_up = True
                elif where in picked_set or self._seen_end.get(where, 0) < end:
                    task.clocks[name].caught_up = False
                self._seen_end[where] = end
            task.advance(self.table, self.now)
        self.rng.shuffle(mine)
        wrote = bool(picked)
        for task in mine:
            wrote |= self._commit(task)
        self.now += 0.05
        return wrote

    def run(self, max_steps: int = 1_000_000) -> int:
        """Step every worker until nothing is left to read, held or due; returns the steps."""
        quiet = 0
        for n in range(max_steps):
            busy = any([self.step(w) for w in range(self.workers)])
            pending = any(t.pending() for t in self.tasks.values())
            quiet = 0 if busy else quiet + 1
            if not busy and not pending and quiet * 0.05 * 1000 > self.env.idle_ms * 2:
                return n
            if quiet * 0.05 * 1000 > self.env.idle_ms * 50:
                raise RuntimeError("held records never released (a watermark does not advance)")
        raise RuntimeError("did not settle")

    def _commit(self, task: Task) -> bool:
        outs, changes, offsets = task.finish()
        for out in outs:
            p, end = self.logs[out.topic].append(out.key, out.value, task.id)
            if out.topic in self._watched:
                self.ends[task.id][f"{out.topic}/{p}"] = end
        for store, key, value in changes:
            self.changelog[(task.id, 0, store)][key] = value
        for name, offset in offsets.items():
            self.committed[(name, task.partition)] = offset
        self.table[task.id] = Upstream(*task.output_watermark(), dict(self.ends[task.id]))
        return bool(outs or changes)

    # --- workers, crashes --------------------------------------------------------------------

    def _owner_of(self, topic: str, partition: int) -> int:
        return partition % self.workers

    def _owner(self, task: Task) -> int:
        return task.partition % self.workers

    def _start_tasks(self) -> None:
        for s in self.stages.values():
            for p in range(s.partitions):
                task = Task(s, p, self.env)
                for name, store in task.all_stores().items():
                    for key, value in self.changelog.get((task.id, 0, name), {}).items():
                        store.restore(key, value)
                committed = {i.topic.name: self.committed.get((i.topic.name, p), 0) for i in s.inputs}
                task.start(committed, self.now)
                self.tasks[task.id] = task
                for name, offset in committed.items():
                    self.position[(name, p)] = offset

    def crash(self) -> None:
        """Lose every task's memory (and what it had not committed) and restart from the
        changelogs and committed offsets."""
        self.tasks.clear()
        self.position.clear()
        self._start_tasks()

    # --- reading results ---------------------------------------------------------------------

    def read(self, topic: topics.Topic) -> list[tuple[bytes | None, Any]]:
        """Every record of a topic, partition by partition: (key, decoded value)."""
        out = []
        for part in self.logs[topic.name].records:
            for key, value, _ in part:
                out.append((key, None if value is None else self._decode(value)))
        return out

    def _decode(self, value: bytes) -> Any:
        import orjson

        return orjson.loads(value) if value[:1] == b"{" else self.codec.decode(value)
