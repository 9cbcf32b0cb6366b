"""Compiled Avro writers: one Python function per record schema, writing what fastavro writes.

fastavro's generic writer walks the schema for every record; on the processes' hot paths (the
ingress, the stream worker, the egress) that walk costs more than the rest of a record's
encoding. ``compile_writer(schema)`` turns one parsed-canonical record schema into the source of
a function that writes exactly the bytes fastavro writes (tests hold it to byte equality for
every schema of the catalogue), with fastavro's strictness: a field left out takes its default
(or raises ``KeyError`` when it has none), a field the schema does not name raises ``TypeError``,
and a value of the wrong type raises.

Supported: records, ``string``, ``bytes``, ``int``, ``long``, ``float``, ``double``, ``boolean``,
``null``, unions of ``null`` and one other type, arrays and maps. Anything else raises
``ValueError`` at compile time, and the codec keeps fastavro for that schema.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

_MISSING = object()


def _long(out: bytearray, n: int) -> None:
    n = (n << 1) ^ (n >> 63)
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.n = 0

    def var(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def constant(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _write(src: _Source, schema: Any, expr: str, depth: int, named: dict[str, Any]) -> None:
    """Emit code writing the value ``expr`` of type ``schema``."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        _union(src, schema, expr, depth, named)
    elif isinstance(schema, dict) and schema["type"] in ("record", "array", "map"):
        {"record": _record, "array": _array, "map": _map}[schema["type"]](src, schema, expr, depth, named)
    elif isinstance(schema, dict):
        _write(src, schema["type"], expr, depth, named)
    elif schema == "string":
        v = src.var()
        src.emit(depth, f"{v} = {expr}.encode()")
        _length(src, v, depth)
        src.emit(depth, f"out += {v}")
    elif schema == "bytes":
        v = src.var()
        src.emit(depth, f"{v} = {expr}")
        src.emit(depth, f"if not isinstance({v}, (bytes, bytearray)): raise TypeError('bytes expected')")
        _length(src, v, depth)
        src.emit(depth, f"out += {v}")
    elif schema in ("int", "long"):
        n = src.var()
        src.emit(depth, f"{n} = {expr}.__index__()")
        src.emit(depth, f"if 0 <= {n} < 64: out.append({n} << 1)")  # one byte: no call (most ints)
        src.emit(depth, f"else: _long(out, {n})")
    elif schema == "boolean":
        src.emit(depth, f"out.append(1 if {expr} else 0)")
    elif schema in ("double", "float"):
        src.emit(depth, f"out += _{schema}({expr})")
    elif schema == "null":
        src.emit(depth, f"if {expr} is not None: raise TypeError('null expected')")
    else:
        raise ValueError(f"unsupported Avro type {schema!r}")


def _length(src: _Source, expr: str, depth: int) -> None:
    """Emit the length of ``expr`` as a long: one byte without a call below 64 (most strings)."""
    n = src.var()
    src.emit(depth, f"{n} = len({expr})")
    src.emit(depth, f"if {n} < 64: out.append({n} << 1)")
    src.emit(depth, f"else: _long(out, {n})")


def _record(src: _Source, schema: dict[str, Any], expr: str, depth: int, named: dict[str, Any]) -> None:
    name = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', '')}.{schema['name']}".lstrip(".")
    named[name] = schema
    v, present = src.var(), src.var()
    src.emit(depth, f"{v} = {expr}")
    required = sum(1 for f in schema["fields"] if "default" not in f)
    src.emit(depth, f"{present} = {required}")
    for f in schema["fields"]:
        if "default" in f:
            x = src.var()
            default = src.constant(_default(f["type"], f["default"], named))
            src.emit(depth, f"{x} = {v}.get({f['name']!r}, _MISSING)")
            src.emit(depth, f"if {x} is _MISSING: {x} = {default}")
            src.emit(depth, f"else: {present} += 1")
            _write(src, f["type"], x, depth, named)
        else:
            _write(src, f["type"], f"{v}[{f['name']!r}]", depth, named)
    names = src.constant(frozenset(f["name"] for f in schema["fields"]))
    src.emit(depth, f"if len({v}) != {present}: "
                    f"raise TypeError('fields not in {name}: %r' % sorted(set({v}) - {names}))")


def _default(schema: Any, value: Any, named: dict[str, Any]) -> Any:
    """A field's default as the writer expects it (Avro JSON writes bytes defaults as text)."""
    if isinstance(schema, list):
        schema = schema[0]  # a union's default is of its first branch
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "bytes" and isinstance(value, str):
        return value.encode("latin-1")
    return value


def _union(src: _Source, branches: list[Any], expr: str, depth: int, named: dict[str, Any]) -> None:
    if len(branches) != 2 or "null" not in branches:
        raise ValueError(f"only [null, T] unions are supported, not {branches!r}")
    other = branches[1 - branches.index("null")]
    v = src.var()
    src.emit(depth, f"{v} = {expr}")
    src.emit(depth, f"if {v} is None:")
    src.emit(depth + 1, f"out.append({2 * branches.index('null')})")
    src.emit(depth, "else:")
    src.emit(depth + 1, f"out.append({2 * branches.index(other)})")
    _write(src, other, v, depth + 1, named)


def _array(src: _Source, schema: dict[str, Any], expr: str, depth: int, named: dict[str, Any]) -> None:
    v, item = src.var(), src.var()
    src.emit(depth, f"{v} = {expr}")
    src.emit(depth, f"if {v}:")
    _length(src, v, depth + 1)
    src.emit(depth + 1, f"for {item} in {v}:")
    _write(src, schema["items"], item, depth + 2, named)
    src.emit(depth, "out.append(0)")


def _map(src: _Source, schema: dict[str, Any], expr: str, depth: int, named: dict[str, Any]) -> None:
    v, key, value = src.var(), src.var(), src.var()
    src.emit(depth, f"{v} = {expr}")
    src.emit(depth, f"if {v}:")
    _length(src, v, depth + 1)
    src.emit(depth + 1, f"for {key}, {value} in {v}.items():")
    _write(src, "string", key, depth + 2, named)
    _write(src, schema["values"], value, depth + 2, named)
    src.emit(depth, "out.append(0)")


def compile_writer(schema: dict[str, Any]) -> Callable[[dict[str, Any], bytearray], None]:
    """``write(record, out)``: append the Avro binary of ``record`` to ``out``."""
    src = _Source()
    src.emit(0, "def write(record, out):")
    _write(src, schema, "record", 1, {})
    namespace: dict[str, Any] = {"_long": _long, "_double": struct.Struct("<d").pack,
                                 "_float": struct.Struct("<f").pack, "_MISSING": _MISSING, **src.constants}
    exec(compile("\n".join(src.lines), f"<avro writer {schema.get('name')}>", "exec"), namespace)  # noqa: S102
    write: Callable[[dict[str, Any], bytearray], None] = namespace["write"]  # defined by the source above
    return write
