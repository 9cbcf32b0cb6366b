"""Avro encoding of events in the Confluent wire format.

``0x00`` magic byte, the schema id as a 4-byte big-endian int, then the Avro binary body.
Without a Schema Registry the id is the local fingerprint id (see ``catalog``), resolved from the
schemas shipped in this package; with one, ids come from the registry (``registry.py``).
Every process gets its codec from ``codec_for(kafka_settings)``, once, and calls ``prepare``
(or ``aprepare``) at start-up: afterwards encoding and decoding are dictionary look-ups, except
an id no process of this version wrote, which async processes resolve with ``aresolve`` in a
thread before decoding a batch.
Encoding is strict: a missing field without default, an unknown field or a wrong type raises
``EncodeError``. Decoding resolves the writer's schema to today's reader schema of the same type,
so records of any released version decode into the current shape. Records written in today's
shape (nearly all) are read by cavro's compiled decoder, older versions by fastavro's resolving
reader: the same dicts (tests hold them equal for every event type), cavro is 2-3x faster.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
from collections.abc import Iterable
from typing import Any, Protocol, cast

import cavro
from fastavro import schemaless_reader, schemaless_writer

from schemas.catalog import Catalog, SchemaVersion, catalog
from schemas.registry import RegistryClient, RegistryIds
from schemas.topics import Topic

MAGIC = 0
# cavro reads records as dicts and leaves values as they are written (the catalogue has no
# logical types; fastavro would convert them)
_CAVRO = cavro.Options(record_decodes_to_dict=True, logical_types=())
_HEADER = struct.Struct(">bI")


class EncodeError(ValueError):
    """A record does not fit its schema."""


class DecodeError(ValueError):
    """Bytes are not a Parley event (bad magic byte, unknown schema id, corrupt body)."""


class SchemaIds(Protocol):
    """Maps schema versions to wire ids and back (local fingerprints, or a registry)."""

    def id_for(self, sv: SchemaVersion, topic: str | None) -> int: ...

    def schema_for(self, schema_id: int) -> SchemaVersion: ...

    def known(self, schema_id: int) -> bool: ...

    def ids_of(self, names: Iterable[str]) -> set[int]: ...


class RegistryConfig(Protocol):
    """What ``codec_for`` reads of a process's Kafka settings (``parley.settings.KafkaSettings``)."""

    schema_registry_url: str | None
    schema_registry_auth: Any  # SecretStr | None: "user:password"
    topic_prefix: str


class LocalIds:
    """Registry-free ids: the fingerprint ids of the schemas shipped in this package."""

    lazy = 0  # never asks anyone

    def __init__(self, cat: Catalog) -> None:
        self._cat = cat

    def known(self, schema_id: int) -> bool:
        return schema_id in self._cat.by_id

    def ids_of(self, names: Iterable[str]) -> set[int]:
        wanted = set(names)
        return {sv.local_id for sv in self._cat.all_versions() if sv.name in wanted}

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
        self._prepared = threading.Lock()
        self._writers: dict[int, Any] = {}  # schema id -> compiled writer, or False (fastavro's)
        self._readers: dict[int, Any] = {}  # schema id -> cavro's decoder, or False (fastavro's)

    @property
    def registry_url(self) -> str | None:
        """The registry the ids come from; None: local fingerprint ids."""
        client = getattr(self.ids, "client", None)
        return client.url if client is not None else None

    def prepare(self, writes: Iterable[Topic] | None = None) -> None:
        """At start-up (blocking): register the schemas of the topics this process writes
        (default: every catalogue topic) and learn the ids of all known versions. Nothing to
        do with local ids. ``RegistryError`` (an ``OSError``) if the registry cannot be reached."""
        prepare = getattr(self.ids, "prepare", None)
        if prepare is not None:
            with self._prepared:
                prepare(writes)

    async def aprepare(self, writes: Iterable[Topic] | None = None) -> None:
        """``prepare`` in a thread: for processes with an event loop."""
        if hasattr(self.ids, "prepare"):
            await asyncio.to_thread(self.prepare, None if writes is None else list(writes))

    async def aresolve(self, values: Iterable[bytes | None]) -> None:
        """Learn the ids of these records that are not cached yet, in a thread (an async
        process calls it before decoding a batch; records of this version's writers are all
        known since ``prepare``, so this is rarely more than a scan of the headers)."""
        fetch = getattr(self.ids, "fetch", None)
        if fetch is None:
            return  # local ids: nothing to ask anyone
        unknown = {i for v in values if (i := _schema_id(v)) is not None and not self.ids.known(i)}
        if unknown:
            await asyncio.to_thread(_fetch_all, fetch, unknown)

    def ids_of(self, names: Iterable[str]) -> set[int]:
        """The ids (every known version) of event types given by short name."""
        return self.ids.ids_of(names)

    def encode(self, record: dict[str, Any], topic: str | None = None) -> bytes:
        """Encode ``record``; its type comes from ``record['envelope']['event_type']``."""
        try:
            sv = self.catalog.latest(record["envelope"]["event_type"])
        except (KeyError, TypeError) as e:
            raise EncodeError(f"record has no known envelope.event_type: {e}") from None
        return self.encode_as(sv, record, topic)

    def encode_as(self, sv: SchemaVersion, record: dict[str, Any], topic: str | None = None) -> bytes:
        header = _HEADER.pack(MAGIC, self.ids.id_for(sv, topic))
        write = self._writers.get(sv.local_id)
        if write is None:
            write = self._writers[sv.local_id] = _compiled(sv)
        if write:  # the schema's compiled writer: fastavro's bytes and strictness, faster
            out = bytearray(header)
            try:
                write(record, out)
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error) as e:
                raise EncodeError(f"{sv.name}: {e!r}") from None
            return bytes(out)
        buf = io.BytesIO()
        buf.write(header)
        try:
            schemaless_writer(buf, sv.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            raise EncodeError(f"{sv.name}: {e}") from None
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode wire bytes into a dict shaped by today's schema of the writer's type."""
        writer = self.writer_of(data)
        read = self._readers.get(writer.local_id)
        if read is None:
            read = self._readers[writer.local_id] = self._reader(writer)
        try:
            if read:  # today's shape: cavro's decoder (the same dicts as fastavro's, faster)
                return cast(dict[str, Any], read(data[_HEADER.size:]))
            reader = self.catalog.current.get(writer.fullname, writer)
            body = io.BytesIO(memoryview(data)[_HEADER.size:])
            return cast(dict[str, Any], schemaless_reader(body, writer.parsed, reader.parsed))
        except Exception as e:  # both libraries raise many kinds on corrupt input
            raise DecodeError(f"{writer.name}: corrupt body: {e!r}") from None

    def _reader(self, writer: SchemaVersion) -> Any:
        """cavro's decoder of a writer schema that is today's shape of its type, else False
        (an older version: fastavro resolves it to today's shape)."""
        reader = self.catalog.current.get(writer.fullname, writer)
        if reader.canonical != writer.canonical:
            return False
        return _cavro_decoder(writer)

    def writer_of(self, data: bytes) -> SchemaVersion:
        """The schema version the bytes were written with."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < _HEADER.size:
            raise DecodeError("too short for the wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"bad magic byte {magic}")
        try:
            return self.ids.schema_for(schema_id)
        except OSError as e:  # the registry did not answer, or does not know the id
            raise DecodeError(f"schema id {schema_id}: {e}") from None


def _compiled(sv: SchemaVersion) -> Any:
    """The schema's compiled writer, or False for a schema it does not cover."""
    from schemas.writer import compile_writer

    try:
        return compile_writer({k: v for k, v in sv.schema.items() if k != "version"})
    except ValueError:
        return False


def _cavro_decoder(sv: SchemaVersion) -> Any:
    """``decode(body) -> dict`` for the schema, by cavro; False if cavro cannot take it."""
    try:
        schema = cavro.Schema({k: v for k, v in sv.schema.items() if k != "version"}, options=_CAVRO)
    except Exception:  # noqa: BLE001  # a schema cavro refuses is read by fastavro
        return False
    return schema.binary_decode


def _schema_id(value: bytes | None) -> int | None:
    if value is None or len(value) < _HEADER.size or value[0] != MAGIC:
        return None
    schema_id: int = _HEADER.unpack_from(value)[1]
    return schema_id


def _fetch_all(fetch: Any, ids: set[int]) -> None:
    for schema_id in ids:
        try:
            fetch(schema_id)
        except OSError:
            pass  # decoding that record says why (a dead letter), the others go on


_CODECS: dict[tuple[str, str, str], Codec] = {}
_CODECS_LOCK = threading.Lock()


def codec_for(kafka: RegistryConfig | None = None) -> Codec:
    """The process's codec for these Kafka settings, built once: registry ids when
    ``schema_registry_url`` is set, local fingerprint ids otherwise. Every process (ingress,
    worker, projections, egress, benchmarks, demo) gets its codec here."""
    key = _key(kafka)
    with _CODECS_LOCK:
        if key not in _CODECS:
            _CODECS[key] = new_codec(kafka)
        return _CODECS[key]


def new_codec(kafka: RegistryConfig | None = None) -> Codec:
    """A codec of its own, with empty caches (what a new process starts with; tests)."""
    url, auth, prefix = _key(kafka)
    if not url:
        return Codec()
    cat = catalog()
    return Codec(cat, RegistryIds(RegistryClient(url, auth or None), cat, prefix))


def _key(kafka: RegistryConfig | None) -> tuple[str, str, str]:
    """(registry url, "user:password", topic prefix); ("", "", "") for local ids."""
    if kafka is None or not kafka.schema_registry_url:
        return ("", "", "")
    auth = kafka.schema_registry_auth
    secret = auth.get_secret_value() if hasattr(auth, "get_secret_value") else auth
    return (kafka.schema_registry_url.rstrip("/"), secret or "", kafka.topic_prefix)
