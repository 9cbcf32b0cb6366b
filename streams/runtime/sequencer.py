"""Event-time order for one task: a reorder buffer, event-time timers and offset bookkeeping.

Pure (no I/O, no clock): the task feeds records in and asks what to release, so the Kafka worker
and the in-memory runner of the tests sequence exactly alike.

* :class:`Sequencer` holds a task's sequenced input ordered by ``(occurred_at, rank, event id)``
  and releases what the task's input watermark has passed, merged in time order with the
  timers that fell due. A record older than what was already released (its *frontier*) is
  *late*: the caller processes it at once and counts it.
* :class:`OffsetBook` keeps, per input partition, the offsets still held in the buffer (the
  committed offset never passes one, so a crash re-reads them) and the offsets past the
  committed one that were already processed (skipped when re-read). Together with the stores,
  written in the same transaction, that makes a held record neither lost nor processed twice.

With a watermark that only passes a time once every upstream task has emitted everything up to
it (see ``streams.runtime.watermarks``), the release order is the sorted order of all records,
whatever order they arrived in: that is what makes a stage's output a function of its input set.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

NEG_INF = -(2**62)
POS_INF = 2**62


class Sequencer:
    """A reorder buffer released by watermark, and due timers, in one time order."""

    __slots__ = ("_heap", "_seq", "_timers", "_due", "frontier", "late")

    def __init__(self, frontier: int = NEG_INF, timers: dict[str, int] | None = None) -> None:
        self._heap: list[tuple[int, int, str, int, Any]] = []
        self._seq = itertools.count()
        self._timers: list[tuple[int, str]] = []  # (at, key), lazily deleted
        self._due: dict[str, int] = {}  # key -> at: the live timers
        self.frontier = frontier  # the largest time released so far (never decreases)
        self.late = 0
        for key, at in (timers or {}).items():
            self.set_timer(key, at)

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def timers(self) -> dict[str, int]:
        return dict(self._due)

    def push(self, t: int, rank: int, eid: str, item: Any) -> bool:
        """Hold ``item`` until the watermark passes ``t``; False if it is late (``t`` is
        before the frontier): the caller processes it at once."""
        if t < self.frontier:
            self.late += 1
            return False
        heapq.heappush(self._heap, (t, rank, eid, next(self._seq), item))
        return True

    def set_timer(self, key: str, at: int | None) -> None:
        """Call back for ``key`` once the watermark reaches ``at`` (None: cancel)."""
        if at is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == at:
            return
        self._due[key] = at
        heapq.heappush(self._timers, (at, key))

    def next_time(self) -> int | None:
        """The time of the next held record or timer, or None."""
        self._drop_stale()
        times = [h[0][0] for h in (self._heap, self._timers) if h]
        return min(times) if times else None

    def release(self, watermark: int) -> Iterator[tuple[str, Any]]:
        """``("event", item)`` and ``("timer", (key, at))`` up to ``watermark``, in time
        order; a timer fires before records of its own time."""
        while True:
            self._drop_stale()
            timer = self._timers[0] if self._timers else None
            held = self._heap[0] if self._heap else None
            if timer is not None and timer[0] <= watermark and (held is None or timer[0] <= held[0]):
                heapq.heappop(self._timers)
                at, key = timer
                del self._due[key]
                self.frontier = max(self.frontier, at)
                yield "timer", (key, at)
            elif held is not None and held[0] <= watermark:
                heapq.heappop(self._heap)
                self.frontier = max(self.frontier, held[0])
                yield "event", held[4]
            else:
                return

    def _drop_stale(self) -> None:
        while self._timers and self._due.get(self._timers[0][1]) != self._timers[0][0]:
            heapq.heappop(self._timers)


class OffsetBook:
    """One input partition's offsets: held ones, processed ones past the commit point."""

    __slots__ = ("base", "next", "held", "done")

    def __init__(self, committed: int = 0, done: Iterable[int] = ()) -> None:
        self.base = committed  # the committed offset at the last commit (or start)
        self.next = committed  # the offset after the last record fed
        self.held: set[int] = set()
        self.done: set[int] = {o for o in done if o >= committed}

    def seen(self, offset: int) -> bool:
        """Whether the record at ``offset`` was already processed (a re-read after a restart)."""
        return offset < self.base or offset in self.done

    def skip(self, offset: int) -> None:
        """A record already processed, read again: read past it (an upstream's watermark
        covering it becomes usable once it is read)."""
        self.next = max(self.next, offset + 1)

    def read_to(self, end: int) -> None:
        """The consumer reached the partition's end at ``end``: everything before it is read
        (records of aborted transactions are never delivered, so no record says so)."""
        self.next = max(self.next, end)

    def fed(self, offset: int, held: bool) -> None:
        self.next = max(self.next, offset + 1)
        if held:
            self.held.add(offset)
        elif self.held:
            self.done.add(offset)  # processed while an older record is held: remember it

    def processed(self, offset: int) -> None:
        """A held record was released."""
        self.held.discard(offset)
        self.done.add(offset)

    def commit_point(self) -> int:
        """The offset to commit: the oldest held record, or everything fed."""
        return min(self.held) if self.held else self.next

    def compact(self) -> int:
        """Move the base to the commit point; returns it."""
        self.base = self.commit_point()
        if self.done:
            self.done = {o for o in self.done if o >= self.base}
        return self.base

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "done": ranges(sorted(self.done))}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None, committed: int) -> OffsetBook:
        if not d or d.get("base") != committed:
            # no bookkeeping, or it belongs to another commit point: nothing past it was done
            return cls(committed)
        return cls(committed, (o for lo, hi in d["done"] for o in range(lo, hi + 1)))


def ranges(sorted_offsets: list[int]) -> list[list[int]]:
    """``[3, 4, 5, 9]`` -> ``[[3, 5], [9, 9]]``."""
    out: list[list[int]] = []
    for o in sorted_offsets:
        if out and out[-1][1] == o - 1:
            out[-1][1] = o
        else:
            out.append([o, o])
    return out
