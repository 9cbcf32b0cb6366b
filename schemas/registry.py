"""Schema ids from a Confluent-compatible Schema Registry (used when one is configured).

Subjects follow TopicRecordNameStrategy, ``<topic>-<record full name>``, because a Parley topic
carries several event types. ``<topic>`` is the topic's name on the cluster (with the deployment's
prefix); a worker-internal topic is named without the worker's app id, so a replay under a fresh
app id registers nothing new.

Nothing here is called per record. ``prepare`` (at a process's start) registers the current
schema of every type on every topic the process writes, and looks up every other schema version
the catalogue knows, in a few threads; both directions are cached. An id met later that is not
cached (a newer writer) is fetched once: ``fetch`` is what async processes run in a thread
(``Codec.aresolve``); the synchronous worker lets ``schema_for`` fetch it inline.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from schemas import topics
from schemas.catalog import Catalog, SchemaVersion, make_version

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(OSError):
    """The registry refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class RegistryClient:
    """The few calls of the Confluent Schema Registry API Parley uses (blocking HTTP)."""

    def __init__(self, url: str, auth: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._auth = "Basic " + base64.b64encode(auth.encode()).decode() if auth else None
        self._timeout = timeout_s
        self._count = threading.Lock()
        self.calls = 0  # HTTP requests made (the tests check the caches with it)

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject`` (a no-op if it is there); its id."""
        return int(self._call("POST", f"/subjects/{subject}/versions", {"schema": schema})["id"])

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of ``schema`` if it is registered under ``subject``, else None."""
        try:
            return int(self._call("POST", f"/subjects/{subject}", {"schema": schema})["id"])
        except RegistryError as e:
            if e.status == 404:
                return None
            raise

    def schema(self, schema_id: int) -> dict[str, Any]:
        """The schema registered under ``schema_id`` (parsed JSON)."""
        parsed: dict[str, Any] = json.loads(self._call("GET", f"/schemas/ids/{schema_id}")["schema"])
        return parsed

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects"))

    def versions(self, subject: str) -> list[int]:
        return list(self._call("GET", f"/subjects/{subject}/versions"))

    def version_id(self, subject: str, version: int | str = "latest") -> int:
        """The schema id of one version of a subject."""
        return int(self._call("GET", f"/subjects/{subject}/versions/{version}")["id"])

    def set_compatibility(self, subject: str, level: str) -> None:
        """``BACKWARD_TRANSITIVE``, ``FULL_TRANSITIVE``... for one subject."""
        self._call("PUT", f"/config/{subject}", {"compatibility": level})

    def compatible(self, subject: str, schema: str) -> bool:
        """Whether ``schema`` may be registered next under ``subject`` (its compatibility level)."""
        answer = self._call("POST", f"/compatibility/subjects/{subject}/versions/latest", {"schema": schema})
        return bool(answer["is_compatible"])

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            self.url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        if self._auth:
            req.add_header("Authorization", self._auth)
        with self._count:
            self.calls += 1
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise _refusal(method, path, e) from None
        except (OSError, ValueError) as e:
            raise RegistryError(f"{method} {self.url}{path}: {e}") from None


def _refusal(method: str, path: str, e: urllib.error.HTTPError) -> RegistryError:
    try:
        body = json.loads(e.read() or b"{}")
    except ValueError:
        body = {}
    return RegistryError(f"{method} {path}: {e.code} {body.get('message', e.reason)}",
                         e.code, body.get("error_code"))


def schema_text(sv: SchemaVersion) -> str:
    """What is registered for a version: its standalone schema, defaults and docs included.

    Braces inside JSON strings are written as ``\\u007b``/``\\u007d`` escapes (the same
    schema for any JSON reader): Apicurio Registry 3.0 cannot tell the type of a schema whose
    text holds a string default of ``"{}"`` (422 "Failed to discover artifact type").
    """
    text = json.dumps({k: v for k, v in sv.schema.items() if k != "version"})
    return _JSON_STRING.sub(lambda m: m.group(0).replace("{", "\\u007b").replace("}", "\\u007d"), text)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


class RegistryIds:
    """``SchemaIds`` backed by a registry, for the topics of one deployment (``prefix``)."""

    def __init__(self, client: RegistryClient, cat: Catalog, prefix: str = "", threads: int = 8) -> None:
        self.client, self._cat, self._threads = client, cat, threads
        self._topic_names = _topic_names(prefix)
        self._home = _only_topic(self._topic_names)
        self._by_canonical = {sv.canonical: sv for sv in cat.all_versions()}
        self._ids: dict[tuple[str | None, str], int] = {}  # (topic as callers name it, canonical) -> id
        self._subject_ids: dict[tuple[str, str], int] = {}  # (subject, canonical) -> id
        self._schemas: dict[int, SchemaVersion] = {}
        self._registered: set[str] = set()  # catalogue topics whose current schemas are registered
        self._looked_up = False
        self._missing: set[int] = set()  # ids the registry said it does not have
        self._lock = threading.Lock()
        self.lazy = 0  # ids that were not ready when a record needed them (fetched inline)

    # -- per record: dictionary look-ups ------------------------------------------------------

    def id_for(self, sv: SchemaVersion, topic: str | None) -> int:
        try:
            return self._ids[(topic, sv.canonical)]
        except KeyError:
            return self._id_late(sv, topic)

    def schema_for(self, schema_id: int) -> SchemaVersion:
        try:
            return self._schemas[schema_id]
        except KeyError:
            if schema_id in self._missing:
                raise RegistryError(f"the registry has no schema id {schema_id}", 404) from None
            self.lazy += 1
            return self.fetch(schema_id)

    def known(self, schema_id: int) -> bool:
        """Cached, or known to be missing: nothing to ask the registry."""
        return schema_id in self._schemas or schema_id in self._missing

    def ids_of(self, names: Iterable[str]) -> set[int]:
        """Every id cached for these event types (short names), all versions."""
        wanted = set(names)
        return {i for i, sv in self._schemas.items() if sv.name in wanted}

    # -- at start-up, or in a thread ----------------------------------------------------------

    def subject(self, sv: SchemaVersion, topic: str | None) -> str:
        if topic is None:
            topic = self._home.get(sv.name)
            if topic is None:
                return sv.fullname  # a type no catalogue topic carries: RecordNameStrategy
        return f"{self._topic_names.get(topic, topic)}-{sv.fullname}"

    def prepare(self, writes: Iterable[topics.Topic] | None = None) -> None:
        """Register the current schemas of the topics this process writes (default: all), look
        up every other version the catalogue knows; cache both ways. Repeated calls only
        register topics not registered before."""
        every = topics.ALL + topics.INTERNAL
        written = {t.name for t in (every if writes is None else writes)} - self._registered
        jobs = []  # (register?, subject, version)
        for t in every:
            for name in t.value_types:
                if name not in self._cat.by_short:
                    continue  # a JSON record of the worker, not Avro
                current = self._cat.by_short[name]
                for sv in {v.canonical: v for v in (*self._cat.released.get(current.fullname, []), current)}.values():
                    register = t.name in written and sv is current
                    if register or not self._looked_up:
                        jobs.append((register, self.subject(sv, t.name), sv))
        if not jobs:
            return
        with ThreadPoolExecutor(self._threads) as pool:
            found = list(pool.map(lambda job: self._ask(*job), jobs))
        for (_, subject, sv), schema_id in zip(jobs, found, strict=True):
            if schema_id is not None:
                self._remember(subject, sv, schema_id)
        self._registered |= written
        self._looked_up = True

    def fetch(self, schema_id: int) -> SchemaVersion:
        """Ask the registry for an id (blocking) and cache it; ``RegistryError`` if it cannot."""
        try:
            sv = self._known(self.client.schema(schema_id))
        except RegistryError as e:
            if e.status == 404:  # asked once: a record with this id is undecodable here
                self._missing.add(schema_id)
            raise
        with self._lock:
            self._schemas.setdefault(schema_id, sv)
        return sv

    def _ask(self, register: bool, subject: str, sv: SchemaVersion) -> int | None:
        text = schema_text(sv)
        return self.client.register(subject, text) if register else self.client.lookup(subject, text)

    def _id_late(self, sv: SchemaVersion, topic: str | None) -> int:
        """A (topic, schema) ``prepare`` did not cover: registered now, once (blocking)."""
        subject = self.subject(sv, topic)
        schema_id = self._subject_ids.get((subject, sv.canonical))
        if schema_id is None:
            self.lazy += 1
            schema_id = self.client.register(subject, schema_text(sv))
            self._remember(subject, sv, schema_id)
        with self._lock:
            self._ids[(topic, sv.canonical)] = schema_id
        return schema_id

    def _remember(self, subject: str, sv: SchemaVersion, schema_id: int) -> None:
        with self._lock:
            self._subject_ids[(subject, sv.canonical)] = schema_id
            self._schemas.setdefault(schema_id, sv)
            topic = subject[: -len(sv.fullname) - 1]
            for given, real in self._topic_names.items():
                if real == topic:  # callers name a topic with or without the prefix
                    self._ids[(given, sv.canonical)] = schema_id
            if self._home.get(sv.name) == topic:
                self._ids[(None, sv.canonical)] = schema_id

    def _known(self, schema: dict[str, Any]) -> SchemaVersion:
        """Our SchemaVersion for a registry schema, or a version-0 stand-in for a newer writer."""
        candidate = make_version({**schema, "version": 0})
        return self._by_canonical.get(candidate.canonical, candidate)


def _topic_names(prefix: str) -> dict[str, str]:
    """The names callers give a catalogue topic (bare, or with the prefix) -> its subject topic."""
    out: dict[str, str] = {}
    for t in topics.ALL + topics.INTERNAL:
        out[t.name] = out[f"{prefix}{t.name}"] = f"{prefix}{t.name}"
    return out


def _only_topic(names: dict[str, str]) -> dict[str, str]:
    """Event types carried by exactly one catalogue topic -> that topic's subject name, the
    subject used when a caller encodes such a type without naming the topic."""
    homes: dict[str, list[str]] = {}
    for t in topics.ALL:
        for name in t.value_types:
            homes.setdefault(name, []).append(names[t.name])
    return {name: ts[0] for name, ts in homes.items() if len(ts) == 1}
