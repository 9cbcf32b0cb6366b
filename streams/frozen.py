"""``replace`` for the processors' frozen records, without ``dataclasses.replace``'s cost.

The decisions keep their state in frozen dataclasses and derive each new state with
``replace``. ``dataclasses.replace`` rebuilds the record through its generated ``__init__``
(one ``object.__setattr__`` per field, as frozen requires), which made it a fifth of the routing
stage's time. For a frozen dataclass with plain fields (every field an ``__init__`` argument, no
``__post_init__``, no ``__slots__``) the result is the same record with its ``__dict__`` copied
and updated, which is what :func:`replace` does. Any other class goes to
``dataclasses.replace``. Unknown field names raise ``TypeError``, as there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_FIELDS: dict[type, frozenset[str] | None] = {}  # class -> its field names; None: not plain
_UNKNOWN = frozenset({"\0"})  # a class not looked at yet


def replace(obj: T, /, **changes: Any) -> T:
    """``dataclasses.replace(obj, **changes)``, fast for plain frozen dataclasses."""
    cls = type(obj)
    names = _FIELDS.get(cls, _UNKNOWN)
    if names is _UNKNOWN:
        names = _FIELDS[cls] = _plain_fields(cls)
    if names is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]  # a dataclass
    if not names.issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(set(changes) - names)}")
    new = object.__new__(cls)
    state = new.__dict__  # frozen blocks __setattr__, not the instance dict
    state.update(obj.__dict__)
    state.update(changes)
    return new


def _plain_fields(cls: type) -> frozenset[str] | None:
    if not dataclasses.is_dataclass(cls) or "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        return None
    fs = dataclasses.fields(cls)
    if any(not f.init for f in fs) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        return None
    return frozenset(f.name for f in fs)
