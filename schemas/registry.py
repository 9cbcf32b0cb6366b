"""Schema ids from a Confluent-compatible Schema Registry (used when one is configured).

Subjects follow TopicRecordNameStrategy (``<topic>-<record fullname>``) because a Parley topic
carries several event types. Both directions are cached: the registry is asked once per
(subject, schema) and once per id.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from typing import Any

from schemas.catalog import Catalog, SchemaVersion, make_version
from schemas.codec import DecodeError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryIds:
    """SchemaIds backed by a registry at ``url`` (``user:password`` auth optional)."""

    def __init__(self, url: str, cat: Catalog, auth: str | None = None, timeout_s: float = 10.0):
        self._url = url.rstrip("/")
        self._cat = cat
        self._auth = auth
        self._timeout = timeout_s
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, SchemaVersion] = {}
        self._lock = threading.Lock()

    def id_for(self, sv: SchemaVersion, topic: str | None) -> int:
        subject = f"{topic or 'parley'}-{sv.fullname}"
        key = (subject, sv.canonical)
        if key not in self._ids:
            body = {"schema": json.dumps({k: v for k, v in sv.schema.items() if k != "version"})}
            answer = self._call("POST", f"/subjects/{subject}/versions", body)
            with self._lock:
                self._ids[key] = int(answer["id"])
                self._schemas.setdefault(self._ids[key], sv)
        return self._ids[key]

    def schema_for(self, schema_id: int) -> SchemaVersion:
        if schema_id not in self._schemas:
            try:
                answer = self._call("GET", f"/schemas/ids/{schema_id}")
            except OSError as e:
                raise DecodeError(f"schema id {schema_id}: registry: {e}") from None
            sv = self._known(json.loads(answer["schema"]))
            with self._lock:
                self._schemas[schema_id] = sv
        return self._schemas[schema_id]

    def _known(self, schema: dict[str, Any]) -> SchemaVersion:
        """Our SchemaVersion for a registry schema, or a version-0 stand-in for a newer writer."""
        candidate = make_version({**schema, "version": 0})
        for sv in self._cat.all_versions():
            if sv.canonical == candidate.canonical:
                return sv
        return candidate

    def _call(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        req = urllib.request.Request(
            self._url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        if self._auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(self._auth.encode()).decode())
        with urllib.request.urlopen(req, timeout=self._timeout) as resp:
            return json.loads(resp.read())
