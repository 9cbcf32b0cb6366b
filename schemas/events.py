"""Building events: envelopes, deterministic ids, defaults filled from the schema.

No clock and no randomness here: callers pass ``occurred_at`` and the parts an id derives from,
so a replay builds the same events.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from schemas import topics
from schemas.catalog import catalog
from schemas.keys import tenant_of

_NS = uuid.UUID("6f1c1d2e-9a57-4f0e-8a55-7061726c6579")  # fixed: ids must never change


_NS_BYTES = _NS.bytes


def derive_id(*parts: object) -> str:
    """A deterministic event id (UUIDv5) from its parts, e.g. (tenant, 'wa', wamid).

    Exactly ``str(uuid.uuid5(_NS, "\x1f".join(parts)))`` (a test holds it to that), computed
    without building a UUID object: it is on every processor's path, several times a message.
    """
    name = "\x1f".join(p if isinstance(p, str) else str(p) for p in parts)
    h = bytearray(hashlib.sha1(_NS_BYTES + name.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def envelope(
    event_type: str,
    *,
    event_id: str,
    occurred_at: int,
    tenant_id: str,
    partition_key: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    producer: str = "unknown",
    recorded_at: int | None = None,
) -> dict[str, Any]:
    """An envelope for a new event; the correlation id defaults to the event's own id."""
    return {
        "event_id": event_id,
        "event_type": event_type,
        "schema_version": catalog().latest(event_type).version,
        "occurred_at": int(occurred_at),
        "tenant_id": tenant_id,
        "partition_key": partition_key,
        "causation_id": causation_id,
        "correlation_id": correlation_id or event_id,
        "producer": producer,
        "recorded_at": recorded_at,
    }


def caused_by(
    cause: Mapping[str, Any], event_type: str, *, id_suffix: str, producer: str,
    partition_key: str | None = None, occurred_at: int | None = None,
) -> dict[str, Any]:
    """An envelope for an event emitted because of ``cause`` (an event dict).

    The id derives from the cause's id and ``id_suffix``, so re-processing the same input
    emits the same id; the correlation id is copied and the causation id set.
    """
    env = cause["envelope"]
    return envelope(
        event_type,
        event_id=derive_id(env["event_id"], event_type, id_suffix),
        occurred_at=env["occurred_at"] if occurred_at is None else occurred_at,
        tenant_id=env["tenant_id"],
        partition_key=partition_key or env["partition_key"],
        correlation_id=env["correlation_id"],
        causation_id=env["event_id"],
        producer=producer,
    )


_NO_DEFAULT = object()
_FIELDS: dict[str, tuple[Any, tuple[tuple[str, Any], ...]]] = {}  # event type -> (schema, its fields)


def _fields(event_type: str) -> tuple[tuple[str, Any], ...]:
    """(name, default or ``_NO_DEFAULT``) of the latest schema's fields but the envelope (remembered
    per schema: ``make`` runs several times per message)."""
    sv = catalog().latest(event_type)
    hit = _FIELDS.get(event_type)
    if hit is None or hit[0] is not sv:
        hit = _FIELDS[event_type] = (sv, tuple((f["name"], f.get("default", _NO_DEFAULT))
                                               for f in sv.schema["fields"] if f["name"] != "envelope"))
    return hit[1]


def make(event_type: str, env: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A complete event dict: ``fields`` plus defaults of the fields left out."""
    out: dict[str, Any] = {"envelope": env}
    for name, d in _fields(event_type):
        if name in fields:
            out[name] = fields.pop(name)
        elif d is _NO_DEFAULT:
            raise TypeError(f"{event_type}: missing field {name!r}")
        else:
            out[name] = list(d) if isinstance(d, list) else dict(d) if isinstance(d, dict) else d
    if fields:
        raise TypeError(f"{event_type}: unknown fields {sorted(fields)}")
    return out


def event_type(event: Mapping[str, Any]) -> str:
    kind: str = event["envelope"]["event_type"]
    return kind


ERROR_LIMIT = 8000  # characters of an error message kept in a DeadLetter


def dead_letter(stage: str, reason: str, error: str, payload: bytes, source_topic: str | None = None,
                source_partition: int | None = None, source_offset: int | None = None,
                key: bytes | None = None, occurred_at: int = 0, tenant_id: str | None = None,
                headers: dict[str, str] | None = None, event_id: str | None = None) -> dict[str, Any]:
    """The DeadLetter of a record that cannot be processed: its raw bytes, the error (cut to
    ``ERROR_LIMIT`` characters), where it was; the one builder of dead letters (ingress, worker,
    projections). Keyed by ``stage`` (``ingress/<channel>``, the worker's stage name,
    ``projections/<name>``) on ``parley.deadletter``.

    The id is ``event_id`` when the caller names the failure (the ingress: after its raw request),
    else it derives from the position (or the stage and reason when there is none), so a
    re-processed record parks the same dead letter. The tenant is ``tenant_id`` when known, else
    the source key's (``schemas.keys.tenant_of``), else "unknown". ``key`` (the source record's,
    when there is one) is kept in the headers as text."""
    text_key = None if key is None else key.decode("utf-8", "replace")
    tenant = tenant_id or tenant_of(text_key or "") or "unknown"
    if event_id is None:
        event_id = derive_id("deadletter", stage, source_topic, source_partition, source_offset, reason)
    env = envelope("DeadLetter", event_id=event_id, occurred_at=occurred_at, tenant_id=tenant,
                   partition_key=topics.DEAD_LETTER.key(stage), producer=stage)
    return make("DeadLetter", env, stage=stage, reason=reason, error=error[:ERROR_LIMIT], payload=bytes(payload),
                source_topic=source_topic, source_partition=source_partition, source_offset=source_offset,
                headers={**({} if text_key is None else {"key": text_key}), **(headers or {})})
