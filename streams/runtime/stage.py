"""What a stream stage declares: its co-partitioned inputs, its outputs, its stores.

A stage is the wiring of one stream family (STYLE 3): for each input event, released in event
time, ``process`` calls the family's pure logic and sends what it returns through the task
(``ctx``). The runtime runs one task per partition of the stage's inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.topics import Topic

if TYPE_CHECKING:
    from streams.runtime.task import Task


def _same(v: Any) -> Any:
    return v


@dataclass(frozen=True)
class Input:
    """An input topic; ``sequenced`` inputs are released in event-time order by watermark,
    the others are processed as they arrive (order-insensitive logic, or consequences of
    decisions already sequenced upstream)."""

    topic: Topic
    sequenced: bool = True


@dataclass(frozen=True)
class StoreSpec:
    """A store of the stage's tasks, with how its values go to and from JSON (changelog).
    ``retention_ms``: its changelog also deletes records older than this (a store whose keys
    the stage forgets by time, e.g. the ids seen within a horizon); None keeps every key.
    ``log``: keys written once, never deleted, forgotten by age: changes are logged as one
    record per batch (``streams.runtime.store.LogStore``); needs ``retention_ms``."""

    name: str
    dump: Callable[[Any], Any] = _same
    load: Callable[[Any], Any] = _same
    retention_ms: int | None = None
    log: bool = False

    def make(self) -> Any:
        from streams.runtime.store import LogStore, Store

        if self.log and not self.retention_ms:
            raise ValueError(f"store {self.name}: a log store needs a retention")
        return (LogStore if self.log else Store)(self.name, self.dump, self.load)


class Stage:
    """Base class of the stages; subclasses set the class attributes and ``process``."""

    name: str = ""
    inputs: tuple[Input, ...] = ()
    outputs: tuple[Topic, ...] = ()
    stores: tuple[StoreSpec, ...] = ()

    @property
    def partitions(self) -> int:
        return self.inputs[0].topic.partitions

    def process(self, ctx: Task, event: Any) -> None:
        """Handle one input event (an Avro event dict, or an internal JSON record)."""
        raise NotImplementedError

    def on_timer(self, ctx: Task, key: str, at: int) -> None:
        """An event-time timer set with ``ctx.timer(key, at)`` fell due."""

    def end_batch(self, ctx: Task) -> None:
        """Called once per transaction, after the batch's events: per-batch outputs."""

    def check(self) -> None:
        """Co-partitioning: every input of a stage has the same number of partitions."""
        counts = {i.topic.partitions for i in self.inputs}
        if len(counts) != 1:
            raise ValueError(f"stage {self.name}: inputs are not co-partitioned: {counts}")
