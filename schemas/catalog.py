"""Load the ``.avsc`` files: current versions from ``avro/``, released ones from ``history/``.

Event schemas carry a top-level ``"version"`` attribute; named types without one (Envelope,
ChannelIdentity, ...) are components, inlined where first used so every event schema stands
alone (as a Schema Registry needs). A schema's local id is derived from its Parsing Canonical
Form fingerprint, so it is the same on every machine without a registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

ROOT = Path(__file__).parent
AVRO_DIR = ROOT / "avro"
HISTORY_DIR = ROOT / "history"


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one event schema, standalone (components inlined)."""

    fullname: str
    version: int
    schema: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False, compare=False)
    canonical: str = field(repr=False)

    @property
    def name(self) -> str:
        return self.fullname.rsplit(".", 1)[-1]

    @cached_property
    def local_id(self) -> int:
        """A positive 31-bit id from the CRC-64-AVRO fingerprint of the canonical form."""
        return int(fingerprint(self.canonical, "CRC-64-AVRO")[:8], 16) & 0x7FFFFFFF


def _fullname(d: dict[str, Any]) -> str:
    return f"{d['namespace']}.{d['name']}" if "namespace" in d else d["name"]


def _expand(node: Any, named: dict[str, dict[str, Any]], seen: set[str]) -> Any:
    """Inline the first use of each named type; later uses stay references."""
    if isinstance(node, str):
        if node in named and node not in seen:
            seen.add(node)
            return _expand(named[node], named, seen)
        return node
    if isinstance(node, list):
        return [_expand(n, named, seen) for n in node]
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and "name" in node:
            seen.add(_fullname(node))
        out = dict(node)
        if "fields" in node:
            out["fields"] = [{**f, "type": _expand(f["type"], named, seen)} for f in node["fields"]]
        for key in ("items", "values"):
            if key in node:
                out[key] = _expand(node[key], named, seen)
        return out
    return node


def make_version(schema: dict[str, Any]) -> SchemaVersion:
    body = {k: v for k, v in schema.items() if k != "version"}
    parsed = parse_schema(body)
    return SchemaVersion(
        fullname=_fullname(schema),
        version=int(schema["version"]),
        schema=schema,
        parsed=parsed,
        canonical=to_parsing_canonical_form(parsed),
    )


def _read_current() -> dict[str, SchemaVersion]:
    raw = {}
    for path in sorted(AVRO_DIR.rglob("*.avsc")):
        d = json.loads(path.read_text())
        ns_folder = ".".join(path.relative_to(AVRO_DIR).parent.parts)
        if d.get("namespace") != ns_folder:
            raise ValueError(f"{path}: namespace {d.get('namespace')!r} must match folder {ns_folder!r}")
        if path.stem != d["name"]:
            raise ValueError(f"{path}: file name must be the type name {d['name']!r}")
        raw[_fullname(d)] = d
    events = {}
    for name, d in raw.items():
        if "version" in d:
            events[name] = make_version(_expand(d, raw, set()))
    return events


def _read_history() -> dict[str, list[SchemaVersion]]:
    out: dict[str, list[SchemaVersion]] = {}
    for path in sorted(HISTORY_DIR.glob("*/v*.avsc")):
        sv = make_version(json.loads(path.read_text()))
        out.setdefault(sv.fullname, []).append(sv)
    for versions in out.values():
        versions.sort(key=lambda v: v.version)
    return out


class Catalog:
    """Every event schema: the current version of each, and all released versions."""

    def __init__(self) -> None:
        self.current: dict[str, SchemaVersion] = _read_current()
        self.released: dict[str, list[SchemaVersion]] = _read_history()
        self.by_short = {sv.name: sv for sv in self.current.values()}
        if len(self.by_short) != len(self.current):
            raise ValueError("event type names must be unique without their namespace")
        self.by_id: dict[int, SchemaVersion] = {}
        for sv in self.all_versions():
            other = self.by_id.setdefault(sv.local_id, sv)
            if other.canonical != sv.canonical:
                raise ValueError(f"schema id collision: {other.fullname} and {sv.fullname}")

    def all_versions(self) -> list[SchemaVersion]:
        """Released versions, then current ones (a current one may not be released yet)."""
        out = [v for vs in self.released.values() for v in vs]
        out += self.current.values()
        return out

    def latest(self, name: str) -> SchemaVersion:
        """The current version, by short name (MessageReceived) or full name."""
        return self.by_short.get(name) or self.current[name]

    def history(self, fullname: str) -> list[SchemaVersion]:
        """Released versions older than the current one."""
        cur = self.current[fullname]
        return [v for v in self.released.get(fullname, []) if v.version < cur.version]


@cache
def catalog() -> Catalog:
    """The process-wide catalogue (the files do not change while it runs)."""
    return Catalog()
