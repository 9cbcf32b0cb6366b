"""The Schema Registry client against a minimal in-process registry (two endpoints of the
Confluent API, in memory). No real Confluent registry is available on this machine."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from schemas.codec import Codec, codec_for
from tests.contract.test_codec import make_message

pytestmark = pytest.mark.contract


class _Registry(BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}
    subjects: dict[tuple[str, str], int] = {}

    def do_POST(self):  # noqa: N802 (http.server's naming)
        subject = re.fullmatch(r"/subjects/(.+)/versions", self.path).group(1)
        schema = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["schema"]
        key = (subject, schema)
        if key not in self.subjects:
            self.subjects[key] = 100 + len(self.subjects)
            self.schemas[self.subjects[key]] = schema
        self._answer({"id": self.subjects[key]})

    def do_GET(self):  # noqa: N802
        schema_id = int(self.path.rsplit("/", 1)[-1])
        self._answer({"schema": self.schemas[schema_id]})

    def _answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def registry_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_registry_ids_round_trip(registry_url) -> None:
    writer = codec_for(registry_url)
    data = writer.encode(make_message(), topic="parley.messages")
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") >= 100
    reader = codec_for(registry_url)  # a fresh process: learns the id from the registry
    assert reader.decode(data) == make_message()


def test_local_codec_without_registry() -> None:
    assert type(codec_for(None)) is Codec
