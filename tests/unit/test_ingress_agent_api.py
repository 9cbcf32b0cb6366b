"""The agent API: token, validation, and the events it builds (in-memory producer)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas import topics
from schemas.events import derive_id
from tests.unit.test_ingress_app import (
    NOW_MS,
    FakeProducer,
    make_app,
    make_settings,
    topic,
)

AUTH = {"Authorization": "Bearer agent-token"}
STATUS = {"presence": "online", "capacity": 3, "skills": ["refund", "vip"], "languages": ["fr", "en"],
          "queues": ["billing"], "display_name": "Inès", "occurred_at": NOW_MS - 60_000}


@pytest.fixture
async def client_for():
    clients: list[TestClient] = []

    async def make_client(app) -> TestClient:
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make_client
    for c in clients:
        await c.close()


REPLY = {"message_id": "out-83c1", "channel": "whatsapp", "channel_account_id": "106540352242922",
         "recipient": {"id": "33612345678", "phone_e164": "+33612345678"}, "text": "Votre colis est parti.",
         "thread_id": "th-1", "in_reply_to_event_id": "ev-1", "occurred_at": NOW_MS - 1000}


async def test_a_status_change_becomes_agent_status_changed_keyed_by_tenant(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post("/agents/acme/ines/status", json=STATUS, headers=AUTH)
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.AGENT_STATUS))
    assert (await resp.json())["event_id"] == event["envelope"]["event_id"]
    assert producer.records[0].key == b"acme" and producer.records[0].timestamp_ms == NOW_MS - 60_000
    assert event["envelope"]["occurred_at"] == NOW_MS - 60_000 and event["envelope"]["tenant_id"] == "acme"
    assert event["agent_id"] == "ines" and event["presence"] == "online" and event["capacity"] == 3
    assert event["skills"] == ["refund", "vip"] and event["queues"] == ["billing"]
    assert event["display_name"] == "Inès"


async def test_a_retried_status_post_has_the_same_id_and_change_id_wins(client_for) -> None:
    app, _ = make_app()
    client = await client_for(app)
    ids = [(await (await client.post("/agents/acme/ines/status", json=STATUS, headers=AUTH)).json())["event_id"]
           for _ in range(2)]
    assert ids[0] == ids[1]
    resp = await client.post("/agents/acme/ines/status", json={**STATUS, "change_id": "c-9"}, headers=AUTH)
    assert (await resp.json())["event_id"] == derive_id("acme", "AgentStatusChanged", "ines", "c-9")


async def test_a_reply_becomes_message_sent_keyed_like_the_customers_messages(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post("/agents/acme/ines/replies", json=REPLY, headers=AUTH)
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.MESSAGES))
    assert producer.records[0].key == b"acme|whatsapp|33612345678"
    assert event["envelope"]["event_id"] == derive_id("acme", "MessageSent", "out-83c1")
    assert event["author_type"] == "agent" and event["author_id"] == "ines" and event["kind"] == "free_form"
    assert event["recipient"] == {"channel": "whatsapp", "id": "33612345678", "display_name": None,
                                  "phone_e164": "+33612345678", "email": None, "login_id": None}
    assert event["text"] == "Votre colis est parti." and event["thread_id"] == "th-1"
    assert event["in_reply_to_event_id"] == "ev-1" and event["envelope"]["occurred_at"] == NOW_MS - 1000


async def test_bots_post_templates_through_the_same_route(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    body = {**REPLY, "text": None, "kind": "template", "template_name": "order_update", "author_type": "bot"}
    assert (await client.post("/agents/acme/faq-bot/replies", json=body, headers=AUTH)).status == 200
    [event] = producer.decoded(topic(topics.MESSAGES))
    assert event["author_type"] == "bot" and event["template_name"] == "order_update"


@pytest.mark.parametrize("headers, status", [({}, 401), ({"Authorization": "Bearer nope"}, 401),
                                             ({"Authorization": "Basic agent-token"}, 401)])
async def test_the_agent_token_is_required(client_for, headers, status) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post("/agents/acme/ines/status", json=STATUS, headers=headers)
    assert resp.status == status and producer.records == []


async def test_without_configured_tokens_the_api_is_closed(client_for) -> None:
    settings = make_settings()
    settings.agent_tokens = []
    app, _ = make_app(settings=settings)
    client = await client_for(app)
    resp = await client.post("/agents/acme/ines/status", json=STATUS, headers=AUTH)
    assert resp.status == 403


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/agents/nobody/ines/status", STATUS, 404, "unknown tenant"),
    ("/agents/acme/ines/status", {**STATUS, "presence": "asleep"}, 400, "presence"),
    ("/agents/acme/ines/status", {**STATUS, "capcity": 2}, 400, "capcity"),
    ("/agents/acme/ines/status", {**STATUS, "occurred_at": 12}, 400, "occurred_at"),
    ("/agents/acme/ines/replies", {**REPLY, "channel": "fax"}, 400, "channel"),
    ("/agents/acme/ines/replies", {**REPLY, "text": None}, 400, "needs text"),
    ("/agents/acme/ines/replies", {**REPLY, "kind": "template"}, 400, "template_name"),
    ("/agents/acme/ines/replies", {**REPLY, "attachments": [{"kind": "image"}]}, 400, "never the bytes"),
])
async def test_bad_requests_are_refused_with_a_reason(client_for, path, body, status, fragment) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(path, json=body, headers=AUTH)
    assert resp.status == status and fragment in (await resp.json())["reason"]
    assert producer.records == []


async def test_malformed_json_is_400_and_kafka_down_is_503(client_for) -> None:
    producer = FakeProducer()
    app, _ = make_app(producer)
    client = await client_for(app)
    resp = await client.post("/agents/acme/ines/status", data=b"{", headers=AUTH)
    assert resp.status == 400
    producer.fail = "down"
    resp = await client.post("/agents/acme/ines/status", json=STATUS, headers=AUTH)
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
