"""A task's state: live Python values in a dict, changed keys written to a compacted changelog.

A value is read and written as a Python object (no decoding per event); only the keys changed
since the last commit are serialised, once each, into the changelog records of that commit's
transaction. A task restores a store by reading its changelog partition from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson


def _same(v: Any) -> Any:
    return v


class Store:
    """One kind of state of one task (``task.store(name)``); a mutable mapping of str keys."""

    __slots__ = ("name", "data", "dirty", "_dump", "_load")

    def __init__(self, name: str, dump: Callable[[Any], Any] = _same, load: Callable[[Any], Any] = _same) -> None:
        self.name = name
        self.data: dict[str, Any] = {}
        self.dirty: set[str] = set()
        self._dump, self._load = dump, load

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.dirty.add(key)

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.dirty.add(key)

    def pop(self, key: str, default: Any = None) -> Any:
        if key in self.data:
            self.dirty.add(key)
        return self.data.pop(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def items(self) -> Any:
        return self.data.items()

    def keys(self) -> Any:
        return self.data.keys()

    def values(self) -> Any:
        return self.data.values()

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        """The changelog records of the keys changed since the last call (None: deleted)."""
        out = []
        for key in self.dirty:
            value = self.data.get(key)
            out.append((key.encode(), None if value is None and key not in self.data
                        else orjson.dumps(self._dump(value))))
        self.dirty.clear()
        return out

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (last one wins; None deletes)."""
        k = key.decode()
        if value is None:
            self.data.pop(k, None)
        else:
            self.data[k] = self._load(orjson.loads(value))

    def forget(self, key: str) -> None:
        """Drop a key from memory without writing a change (its changelog record ages out by the
        topic's retention); a change already pending for it is still written."""
        self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()
        self.dirty.clear()


class LogStore(Store):
    """A store of keys written once and forgotten by age (ids seen, message ids): its changes go
    to the changelog as one record per batch (``take_changes``), keyed by a sequence number,
    not one record per key. Its changelog deletes by age (``StoreSpec.retention_ms``), and the
    stage forgets old keys from memory (``forget``)."""

    __slots__ = ("_batch", "_seq")

    def __init__(self, name: str, dump: Callable[[Any], Any] = _same, load: Callable[[Any], Any] = _same) -> None:
        super().__init__(name, dump, load)
        self._batch: dict[str, Any] = {}
        self._seq = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self._batch[key] = value

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"{self.name}: a log store forgets keys by age, it does not delete them")

    def pop(self, key: str, default: Any = None) -> Any:
        raise TypeError(f"{self.name}: a log store forgets keys by age, it does not delete them")

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        if not self._batch:
            return []
        self._seq += 1
        batch, self._batch = self._batch, {}
        return [(b"%016d" % self._seq, orjson.dumps({k: self._dump(v) for k, v in batch.items()}))]

    def restore(self, key: bytes, value: bytes | None) -> None:
        self._seq = max(self._seq, int(key))
        if value is not None:
            self.data.update((k, self._load(v)) for k, v in orjson.loads(value).items())
