"""Releasing schema versions: ``parley schemas freeze``.

A released version is copied, standalone, to ``schemas/history/<fullname>/v<N>.avsc`` and a
golden payload encoded with it is kept under ``tests/contract/golden/<fullname>/`` (the record as
JSON, and its wire bytes). Contract tests then hold every later version to the compatibility
rules and decode every golden payload with today's reader.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from schemas.catalog import HISTORY_DIR, SchemaVersion, catalog
from schemas.codec import codec_for

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "contract" / "golden"


def sample(schema: Any, name: str = "x", named: dict | None = None) -> Any:
    """A deterministic record for ``schema`` with every field set (no nulls, non-empty arrays)."""
    named = {} if named is None else named
    if isinstance(schema, list):
        branch = next((b for b in schema if b != "null"), "null")
        return sample(branch, name, named)
    if isinstance(schema, str):
        if schema in named:
            return sample(named[schema], name, named)
        return {
            "string": f"{name}-sample", "long": 1_700_000_000_000 + len(name), "int": len(name),
            "double": 0.25, "float": 0.5, "boolean": True, "bytes": f"raw-{name}".encode(),
            "null": None,
        }[schema]
    t = schema["type"]
    if t == "record":
        named[f"{schema.get('namespace')}.{schema['name']}"] = schema
        return {f["name"]: sample(f["type"], f["name"], named) for f in schema["fields"]}
    if t == "array":
        return [sample(schema["items"], name, named)]
    if t == "map":
        return {"k": sample(schema["values"], name, named)}
    if t == "enum":
        return schema["symbols"][0]
    return sample(t, name, named)


def to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def freeze(sv: SchemaVersion) -> str:
    """Release one version: history file plus golden payload. Refuses to change a release."""
    path = HISTORY_DIR / sv.fullname / f"v{sv.version}.avsc"
    if path.exists():
        old = json.loads(path.read_text())
        from schemas.catalog import make_version

        if make_version(old).canonical != sv.canonical:
            raise ValueError(f"{sv.fullname} v{sv.version} was released with another shape: "
                             "bump its version instead of changing it")
        return f"kept {sv.fullname} v{sv.version}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sv.schema, indent=1) + "\n")
    record = sample(sv.schema)
    record["envelope"]["event_type"] = sv.name
    record["envelope"]["schema_version"] = sv.version
    gold = GOLDEN_DIR / sv.fullname
    gold.mkdir(parents=True, exist_ok=True)
    (gold / f"v{sv.version}.json").write_text(json.dumps(to_json(record), indent=1, sort_keys=True) + "\n")
    # local fingerprint ids, whatever registry the environment names: golden files are registry-free
    (gold / f"v{sv.version}.bin").write_bytes(codec_for(None).encode_as(sv, record))
    return f"released {sv.fullname} v{sv.version}"


def freeze_all() -> list[str]:
    return [freeze(sv) for sv in catalog().current.values()]
