"""A faster Avro binary writer for the records the ingress builds itself (RawRequest, IngressClaim).

fastavro's generic writer walks the schema for every record; on the ingress's hot path that
walk cost more than the Kafka round trip's share of CPU. ``compile_writer(schema)`` turns one
(standalone, parsed-canonical) record schema into the source of a Python function that writes
exactly what fastavro writes (tests hold it to byte equality, for every schema it accepts).
Supported: records, ``string``, ``bytes``, ``int``, ``long``, ``double``, ``float``, ``boolean``,
``null``, unions of ``null`` and one other type, arrays and maps; anything else raises
``ValueError`` at compile time, and the ingress then uses the codec for that type.

It is not a validator: a missing field raises (``KeyError``), a wrong type usually raises
(``AttributeError``/``TypeError``), but extra fields are ignored. So it is used only for records
whose every field the ingress sets itself; the adapters' events go through the strict codec.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from schemas.catalog import SchemaVersion
from schemas.codec import Codec, EncodeError

_HEADER = struct.Struct(">bI")


def _long(out: bytearray, n: int) -> None:
    n = (n << 1) ^ (n >> 63)
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0

    def var(self) -> str:
        self.n += 1
        return f"v{self.n}"

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
        src.emit(depth, f"_long(out, len({v})); out += {v}")
    elif schema == "bytes":
        v = src.var()
        src.emit(depth, f"{v} = {expr}")
        src.emit(depth, f"_long(out, len({v})); out += {v}")
    elif schema in ("int", "long"):
        src.emit(depth, f"_long(out, {expr}.__index__())")
    elif schema == "boolean":
        src.emit(depth, f"out.append(1 if {expr} else 0)")
    elif schema in ("double", "float"):
        src.emit(depth, f"out += _{schema}({expr})")
    elif schema == "null":
        src.emit(depth, f"if {expr} is not None: raise TypeError('null expected')")
    else:
        raise ValueError(f"unsupported Avro type {schema!r}")


def _record(src: _Source, schema: dict[str, Any], expr: str, depth: int, named: dict[str, Any]) -> None:
    name = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', '')}.{schema['name']}".lstrip(".")
    named[name] = schema
    v = src.var()
    src.emit(depth, f"{v} = {expr}")
    for f in schema["fields"]:
        _write(src, f["type"], f"{v}[{f['name']!r}]", depth, named)


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
    src.emit(depth + 1, f"_long(out, len({v}))")
    src.emit(depth + 1, f"for {item} in {v}:")
    _write(src, schema["items"], item, depth + 2, named)
    src.emit(depth, "out.append(0)")


def _map(src: _Source, schema: dict[str, Any], expr: str, depth: int, named: dict[str, Any]) -> None:
    v, key, value = src.var(), src.var(), src.var()
    src.emit(depth, f"{v} = {expr}")
    src.emit(depth, f"if {v}:")
    src.emit(depth + 1, f"_long(out, len({v}))")
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
                                 "_float": struct.Struct("<f").pack}
    exec(compile("\n".join(src.lines), f"<avro writer {schema.get('name')}>", "exec"), namespace)  # noqa: S102
    return namespace["write"]


class FastEncoder:
    """Wire bytes (Confluent header + Avro body) of one event type, like ``Codec.encode_as``."""

    def __init__(self, codec: Codec, sv: SchemaVersion) -> None:
        self.codec, self.sv = codec, sv
        self._write = compile_writer({k: v for k, v in sv.schema.items() if k != "version"})

    def encode(self, record: dict[str, Any], topic: str | None = None) -> bytes:
        out = bytearray(_HEADER.pack(0, self.codec.ids.id_for(self.sv, topic)))
        try:
            self._write(record, out)
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as e:
            raise EncodeError(f"{self.sv.name}: {e!r}") from None
        return bytes(out)
