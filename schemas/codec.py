"""Avro encoding of events in the Confluent wire format.

``0x00`` magic byte, the schema id as a 4-byte big-endian int, then the Avro binary body.
Without a Schema Registry the id is the local fingerprint id (see ``catalog``), resolved from the
schemas shipped in this package; with one, ids come from the registry (``registry.py``).
Encoding is strict: a missing field without default, an unknown field or a wrong type raises
``EncodeError``. Decoding resolves the writer's schema to today's reader schema of the same type,
so records of any released version decode into the current shape.
"""

from __future__ import annotations

import io
import struct
from typing import Any, Protocol

from fastavro import schemaless_reader, schemaless_writer

from schemas.catalog import Catalog, SchemaVersion, catalog

MAGIC = 0
_HEADER = struct.Struct(">bI")


class EncodeError(ValueError):
    """A record does not fit its schema."""


class DecodeError(ValueError):
    """Bytes are not a Parley event (bad magic byte, unknown schema id, corrupt body)."""


class SchemaIds(Protocol):
    """Maps schema versions to wire ids and back (local fingerprints, or a registry)."""

    def id_for(self, sv: SchemaVersion, topic: str | None) -> int: ...

    def schema_for(self, schema_id: int) -> SchemaVersion: ...


class LocalIds:
    """Registry-free ids: the fingerprint ids of the schemas shipped in this package."""

    def __init__(self, cat: Catalog) -> None:
        self._cat = cat

    def id_for(self, sv: SchemaVersion, topic: str | None) -> int:
        return sv.local_id

    def schema_for(self, schema_id: int) -> SchemaVersion:
        try:
            return self._cat.by_id[schema_id]
        except KeyError:
            raise DecodeError(f"unknown schema id {schema_id}") from None


class Codec:
    """Encode and decode events by type name (``envelope.event_type``)."""

    def __init__(self, cat: Catalog | None = None, ids: SchemaIds | None = None) -> None:
        self.catalog = cat or catalog()
        self.ids = ids or LocalIds(self.catalog)

    def encode(self, record: dict[str, Any], topic: str | None = None) -> bytes:
        """Encode ``record``; its type comes from ``record['envelope']['event_type']``."""
        try:
            sv = self.catalog.latest(record["envelope"]["event_type"])
        except (KeyError, TypeError) as e:
            raise EncodeError(f"record has no known envelope.event_type: {e}") from None
        return self.encode_as(sv, record, topic)

    def encode_as(self, sv: SchemaVersion, record: dict[str, Any], topic: str | None = None) -> bytes:
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, self.ids.id_for(sv, topic)))
        try:
            schemaless_writer(buf, sv.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            raise EncodeError(f"{sv.name}: {e}") from None
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode wire bytes into a dict shaped by today's schema of the writer's type."""
        writer = self.writer_of(data)
        reader = self.catalog.current.get(writer.fullname, writer)
        body = io.BytesIO(memoryview(data)[_HEADER.size:])
        try:
            if reader.canonical == writer.canonical:
                return schemaless_reader(body, writer.parsed, None)
            return schemaless_reader(body, writer.parsed, reader.parsed)
        except Exception as e:  # fastavro raises many kinds on corrupt input
            raise DecodeError(f"{writer.name}: corrupt body: {e!r}") from None

    def writer_of(self, data: bytes) -> SchemaVersion:
        """The schema version the bytes were written with."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < _HEADER.size:
            raise DecodeError("too short for the wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"bad magic byte {magic}")
        return self.ids.schema_for(schema_id)


def codec_for(schema_registry_url: str | None = None, auth: str | None = None) -> Codec:
    """A codec with local ids, or registry ids when a Schema Registry URL is configured."""
    if not schema_registry_url:
        return Codec()
    from schemas.registry import RegistryIds

    cat = catalog()
    return Codec(cat, RegistryIds(schema_registry_url, cat, auth))
