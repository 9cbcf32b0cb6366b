"""The ingress against the real broker: HTTP in, Avro events out, read back and checked.

Each test runs the real application (real idempotent producer) on a loopback port, posts
real-shaped requests with aiohttp, and reads the topics of its own prefix with aiokafka.
The helpers here are shared by the other ingress integration tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Self

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer

from adapters.accounts import Accounts, load
from adapters.app import build_app
from adapters.channels import Registry
from parley.settings import IngressSettings, KafkaSettings
from schemas import topics
from schemas.codec import Codec
from schemas.events import derive_id
from tests.unit.test_ingress_app import FAKE_ACCOUNT, FakeAdapter
from tests.waiting import async_wait_until

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "accounts.example.toml"
CODEC = Codec()
WEB_AUTH = {"Authorization": "Bearer demo-webchat-token"}
AGENT_AUTH = {"Authorization": "Bearer agent-token"}


def accounts() -> Accounts:
    return Accounts([*load(EXAMPLE, environ={}), FAKE_ACCOUNT])


class Running:
    """The ingress on a loopback port with a real producer, and a client session."""

    def __init__(self, kafka: KafkaSettings, **settings: Any) -> None:
        self.settings = IngressSettings(kafka=kafka, agent_tokens=["agent-token"], **settings)
        self.app = build_app(self.settings, accounts=accounts(), registry=Registry(adapters={"fake": FakeAdapter()}))
        self.server = TestServer(self.app, host="127.0.0.1")
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        await self.server.start_server()
        self.http = aiohttp.ClientSession(base_url=str(self.server.make_url("")))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        await self.server.close()

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def ready(self, timeout_s: float = 30.0) -> None:
        assert await async_wait_until(self.is_ready, timeout_s), "the ingress never became ready"

    async def is_ready(self) -> bool:
        async with self.http.get("/readyz") as resp:
            return resp.status == 200

    async def post(self, path: str, body: bytes | dict, headers: dict[str, str] | None = None,
                   params: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        async with self.http.post(path, data=data, headers=headers or {}, params=params) as resp:
            return resp.status, await resp.text(), dict(resp.headers)


async def read(kafka: KafkaSettings, topic: topics.Topic, n: int, *, settle_s: float = 1.0,
               timeout_s: float = 30.0) -> list[tuple[Any, dict[str, Any]]]:
    """At least ``n`` records of ``topic`` (from the start), then any that arrive within ``settle_s``."""
    consumer = AIOKafkaConsumer(topics.named(kafka.topic_prefix, topic), **kafka.client_kwargs(),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[Any, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [(r, CODEC.decode(r.value)) for r in records]
        settle = time.monotonic() + settle_s
        while time.monotonic() < settle:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out += [(r, CODEC.decode(r.value)) for r in records]
    finally:
        await consumer.stop()
    return out


def login_token(sub: str, **claims: Any) -> str:
    return jwt.encode({"sub": sub, **claims}, "demo-webchat-login-key-0123456789abcdef", algorithm="HS256")


def web_message(mid: str, visitor: str = "v-100", **fields: Any) -> dict[str, Any]:
    return {"type": "message", "message_id": mid, "visitor_id": visitor, "text": f"message {mid}", **fields}


async def test_webchat_messages_go_to_kafka_field_by_field(applied_topics) -> None:
    sent_at = int(time.time() * 1000) - 3000
    async with Running(applied_topics) as ing:
        await ing.ready()
        status, text, _ = await ing.post("/webhooks/webchat/acme-web", web_message(
            "m-1", text="Bonjour, où est ma commande 4512 ?", sent_at=sent_at, display_name="Zoé",
            user_token=login_token("cust-981", email="zoe@example.fr"),
            attachments=[{"kind": "image", "url": "https://cdn.example/p.png", "mime_type": "image/png",
                          "size_bytes": 48213}]), WEB_AUTH)
        assert status == 200, text
        accepted = json.loads(text)["accepted"]
        status, text, _ = await ing.post("/webhooks/webchat/acme-web", {"events": [
            web_message("m-2", visitor="v-200"),
            {"type": "status", "message_id": "out-1", "visitor_id": "v-100", "status": "read", "at": sent_at + 10}]},
            WEB_AUTH)
        assert status == 200, text
        accepted += json.loads(text)["accepted"]
    got = await read(applied_topics, topics.MESSAGES, 3)
    by_id = {e["envelope"]["event_id"]: (r, e) for r, e in got}
    assert sorted(by_id) == sorted(accepted) and len(got) == 3
    record, first = by_id[derive_id("acme", "webchat", "acme-web", "v-100", "m-1")]
    env = first["envelope"]
    assert record.key == b"acme|webchat|v-100" == env["partition_key"].encode()
    assert record.timestamp == env["occurred_at"] == sent_at
    assert (env["tenant_id"], env["event_type"], env["producer"]) == ("acme", "MessageReceived", "ingress/webchat")
    assert env["recorded_at"] is not None and env["recorded_at"] >= sent_at
    assert first["channel"] == "webchat" and first["channel_account_id"] == "acme-web"
    assert first["sender"] == {"channel": "webchat", "id": "v-100", "display_name": "Zoé", "phone_e164": None,
                               "email": "zoe@example.fr", "login_id": "cust-981"}
    assert first["text"] == "Bonjour, où est ma commande 4512 ?"
    assert first["attachments"] == [{"kind": "image", "media_id": None, "url": "https://cdn.example/p.png",
                                     "mime_type": "image/png", "size_bytes": 48213, "sha256": None,
                                     "caption": None, "filename": None}]
    _, status_event = by_id[derive_id("acme", "webchat", "acme-web", "v-100", "out-1", "status", "read")]
    assert status_event["status"] == "read" and status_event["envelope"]["partition_key"] == "acme|webchat|v-100"
    # same customer, same key: one partition, in order
    same = [r for r, e in got if e["envelope"]["partition_key"] == "acme|webchat|v-100"]
    assert len({r.partition for r in same}) == 1
    raws = await read(applied_topics, topics.RAW_INGRESS, 2)
    assert {e["envelope"]["event_id"] for _, e in raws} == {e["raw_event_id"] for _, e in got}
    assert all(e["headers"]["authorization"] == "<redacted>" and e["verified"] for _, e in raws)


async def test_a_redelivery_is_stored_once(applied_topics) -> None:
    body = web_message("m-dup", visitor="v-7")
    async with Running(applied_topics) as ing:
        await ing.ready()
        answers = []
        for _ in range(2):
            status, text, _ = await ing.post("/webhooks/webchat/acme-web", body, WEB_AUTH)
            assert status == 200
            answers.append(json.loads(text))
    assert answers[0] == answers[1]  # the provider hears the same answer
    got = await read(applied_topics, topics.MESSAGES, 1)
    assert len(got) == 1
    raws = await read(applied_topics, topics.RAW_INGRESS, 1)
    assert len(raws) == 1


async def test_unmappable_requests_land_in_the_dead_letter_topic(applied_topics) -> None:
    body = json.dumps({"do": "unmappable"}).encode()
    async with Running(applied_topics) as ing:
        await ing.ready()
        status, _, _ = await ing.post("/webhooks/fake/acct1", body, {"x-secret": "s-old"})
        assert status == 200
        status, _, _ = await ing.post("/webhooks/webchat/acme-web", b"{broken", WEB_AUTH)
        assert status == 400
    [(record, dead)] = await read(applied_topics, topics.DEAD_LETTER, 1)
    assert dead["reason"] == "unmappable" and dead["payload"] == body and dead["error"] == "no idea what this is"
    assert record.key == b"ingress/fake" and dict(record.headers)["parley.error.reason"] == b"unmappable"
    raws = await read(applied_topics, topics.RAW_INGRESS, 1)
    assert [e["envelope"]["event_id"] for _, e in raws] == [dead["headers"]["raw_event_id"]]
    assert await read(applied_topics, topics.MESSAGES, 0, settle_s=0.5) == []


async def test_agent_status_and_replies_reach_their_topics(applied_topics) -> None:
    now = int(time.time() * 1000)
    async with Running(applied_topics) as ing:
        await ing.ready()
        status, text, _ = await ing.post("/agents/acme/ines/status", {
            "presence": "online", "capacity": 4, "skills": ["refund"], "languages": ["fr"], "occurred_at": now},
            AGENT_AUTH)
        assert status == 200, text
        stored = json.loads(text)
        status, text, _ = await ing.post("/agents/acme/ines/replies", {
            "message_id": "out-1", "channel": "webchat", "channel_account_id": "acme-web",
            "recipient": {"id": "v-100"}, "text": "Elle part demain.", "occurred_at": now + 1}, AGENT_AUTH)
        assert status == 200, text
    [(record, agent)] = await read(applied_topics, topics.AGENT_STATUS, 1)
    assert (record.partition, record.offset) == (stored["partition"], stored["offset"])
    assert agent["agent_id"] == "ines" and agent["capacity"] == 4 and record.key == b"acme"
    [(record, sent)] = await read(applied_topics, topics.MESSAGES, 1)
    assert sent["envelope"]["event_type"] == "MessageSent" and record.key == b"acme|webchat|v-100"
    assert sent["author_id"] == "ines" and sent["text"] == "Elle part demain."


async def test_ready_and_metrics_reflect_the_producer(applied_topics) -> None:
    async with Running(applied_topics) as ing:
        await ing.ready()
        await ing.post("/webhooks/webchat/acme-web", web_message("m-metrics"), WEB_AUTH)
        async with ing.http.get("/metrics") as resp:
            text = await resp.text()
    assert "parley_ingress_producer_ready 1.0" in text
    assert 'parley_ingress_produce_seconds_count{outcome="acked"} 1.0' in text


@pytest.fixture
def served_on_kafka(applied_topics):
    """The ingress with a real producer on its own event loop, for the synchronous fuzz test."""
    from aiohttp.test_utils import TestClient

    from tests.unit.test_ingress_fuzz import PUBLIC

    loop = asyncio.new_event_loop()
    settings = IngressSettings(kafka=applied_topics, agent_tokens=["agent-token"], public_base_url=PUBLIC)
    app = build_app(settings, accounts=load(EXAMPLE, environ={}), registry=Registry())
    client = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    assert loop.run_until_complete(async_wait_until(ready, 30)), "not ready"
    yield loop, client
    loop.run_until_complete(client.close())
    loop.close()


def test_fuzzing_every_route_with_a_real_broker_never_gives_a_5xx(served_on_kafka) -> None:
    from hypothesis import HealthCheck, given, settings

    from tests.unit.test_ingress_fuzz import requests

    loop, client = served_on_kafka

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(req=requests())
    def fuzz(req) -> None:
        method, path, headers, query, body = req

        async def call() -> tuple[int, bytes]:
            async with client.request(method, path, headers=headers, params=query, data=body) as resp:
                return resp.status, await resp.read()

        status, payload = loop.run_until_complete(call())
        assert status < 500, (method, path, status, payload)

    fuzz()


async def test_not_ready_and_nothing_auto_created_while_the_topics_are_missing(kafka_settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    async with Running(kafka_settings, produce_timeout_s=2.0) as ing:
        # time passing is the test: meanwhile the ingress asks for its topics again and again
        # (back-off 0.2, 0.4, 0.8 s...), and must neither turn ready nor have one created
        await asyncio.sleep(2.0)
        async with ing.http.get("/readyz") as resp:
            assert resp.status == 503
        status, _, headers = await ing.post("/webhooks/webchat/acme-web", web_message("m-x"), WEB_AUTH)
        assert status == 503 and "Retry-After" in headers
    admin = AIOKafkaAdminClient(**kafka_settings.client_kwargs())
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith(kafka_settings.topic_prefix)]
    finally:
        await admin.close()
