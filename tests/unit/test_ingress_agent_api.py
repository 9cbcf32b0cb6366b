"""The agent API: token, validation, and the events it builds (in-memory producer)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.accounts import Accounts
from adapters.app import build_app
from adapters.metrics import IngressMetrics
from schemas import topics
from schemas.events import derive_id
from tests.unit.test_ingress_app import (
    FAKE_ACCOUNT,
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


# -- thread commands and customer context -------------------------------------------------------

RESOLVE = {"customer_id": "cust-7", "channel": "whatsapp", "occurred_at": NOW_MS - 5000}
TRANSFER = {"customer_id": "cust-7", "to_queue": "billing", "reason": "refund asked", "occurred_at": NOW_MS - 4000}
CONTEXT = {"source": "crm", "name": "Zoé Martin", "tier": "vip", "lifecycle_stage": "customer",
           "attributes": {"orders": "12", "last_cart": "abandoned"}, "occurred_at": NOW_MS - 3000}
RESOLVE_PATH = "/agents/acme/ines/threads/th-1/resolve"
TRANSFER_PATH = "/agents/acme/ines/threads/th-1/transfer"
CONTEXT_PATH = "/customers/acme/cust-7/context"


async def test_a_resolve_becomes_conversation_resolved_keyed_by_customer(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(RESOLVE_PATH, json=RESOLVE, headers=AUTH)
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.CONVERSATION_MESSAGES))
    [record] = producer.records
    assert record.key == b"acme|cust-7" and record.timestamp_ms == NOW_MS - 5000
    assert dict(record.headers)["event_type"] == b"ConversationResolved"
    env = event["envelope"]
    assert (await resp.json())["event_id"] == env["event_id"]
    # the id the processors' tests use for an agent-API command (streams.testing.thread_command)
    assert env["event_id"] == derive_id("acme", "ConversationResolved", "th-1", NOW_MS - 5000, 0)
    assert env["event_type"] == "ConversationResolved" and env["tenant_id"] == "acme"
    assert env["partition_key"] == "acme|cust-7" and env["occurred_at"] == NOW_MS - 5000
    assert env["correlation_id"] == env["event_id"] and env["causation_id"] is None
    assert env["producer"] == "ingress/agent-api" and env["recorded_at"] == NOW_MS
    assert {k: v for k, v in event.items() if k != "envelope"} == {
        "thread_id": "th-1", "customer_id": "cust-7", "channel": "whatsapp", "resolved_by": "agent",
        "agent_id": "ines"}


async def test_a_transfer_becomes_conversation_transferred_from_the_agent(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(TRANSFER_PATH, json={**TRANSFER, "to_agent": "marc"}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.CONVERSATION_MESSAGES))
    assert producer.records[0].key == b"acme|cust-7" and producer.records[0].timestamp_ms == NOW_MS - 4000
    assert event["envelope"]["event_type"] == "ConversationTransferred"
    assert event["envelope"]["event_id"] == derive_id("acme", "ConversationTransferred", "th-1", NOW_MS - 4000, 0)
    assert {k: v for k, v in event.items() if k != "envelope"} == {
        "thread_id": "th-1", "customer_id": "cust-7", "channel": None, "from_agent_id": "ines",
        "from_queue": None, "to_agent_id": "marc", "to_queue": "billing", "reason": "refund asked"}


async def test_customer_context_becomes_customer_context_updated(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(CONTEXT_PATH, json=CONTEXT, headers=AUTH)
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.CUSTOMER_CONTEXT))
    assert producer.records[0].key == b"acme|cust-7" and producer.records[0].timestamp_ms == NOW_MS - 3000
    env = event["envelope"]
    assert env["event_type"] == "CustomerContextUpdated" and env["partition_key"] == "acme|cust-7"
    assert env["event_id"] == derive_id("acme", "CustomerContextUpdated", "cust-7", "crm", NOW_MS - 3000, 0)
    assert {k: v for k, v in event.items() if k != "envelope"} == {
        "customer_id": "cust-7", "source": "crm", "name": "Zoé Martin", "tier": "vip",
        "lifecycle_stage": "customer", "attributes": {"orders": "12", "last_cart": "abandoned"}}


async def test_without_occurred_at_a_command_is_dated_by_its_receipt(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(CONTEXT_PATH, json={"source": "shop"}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.CUSTOMER_CONTEXT))
    assert event["envelope"]["occurred_at"] == NOW_MS and producer.records[0].timestamp_ms == NOW_MS
    assert event["attributes"] == {} and event["tier"] is None


def _moving_clock_app():
    """The unit app with a clock that advances 1 s per reading (a retry comes later)."""
    ticks = iter(range(NOW_MS, NOW_MS + 10**9, 1000))
    producer = FakeProducer()
    app = build_app(make_settings(), accounts=Accounts([FAKE_ACCOUNT]), producer=producer,
                    metrics=IngressMetrics(), clock_ms=lambda: next(ticks))
    return app, producer


@pytest.mark.parametrize("path, body", [
    (RESOLVE_PATH, RESOLVE), (TRANSFER_PATH, TRANSFER), (CONTEXT_PATH, CONTEXT),
    (RESOLVE_PATH, {"customer_id": "cust-7", "request_id": "r-1"}),
    (CONTEXT_PATH, {"source": "crm", "tier": "gold", "request_id": "r-1"}),
])
async def test_a_retried_command_has_the_same_event_id(client_for, path, body) -> None:
    app, producer = _moving_clock_app()
    client = await client_for(app)
    answers = [await (await client.post(path, json=body, headers=AUTH)).json() for _ in range(2)]
    assert answers[0]["event_id"] == answers[1]["event_id"] and len(producer.records) == 2
    assert answers[0]["offset"] != answers[1]["offset"]  # both stored: downstream drops the repeat


async def test_commands_that_differ_have_different_ids(client_for) -> None:
    app, _ = _moving_clock_app()
    client = await client_for(app)
    bodies = [(RESOLVE_PATH, {"customer_id": "cust-7"}), (RESOLVE_PATH, {"customer_id": "cust-7"}),
              (RESOLVE_PATH, {**RESOLVE, "request_id": "r-2"}), (RESOLVE_PATH, RESOLVE),
              ("/agents/acme/ines/threads/th-2/resolve", RESOLVE), (TRANSFER_PATH, TRANSFER),
              (CONTEXT_PATH, CONTEXT), (CONTEXT_PATH, {**CONTEXT, "source": "shop"})]
    ids = [(await (await client.post(p, json=b, headers=AUTH)).json())["event_id"] for p, b in bodies]
    assert len(set(ids)) == len(ids)  # neither occurred_at nor request_id: each receipt is a new event


@pytest.mark.parametrize("path, body", [(RESOLVE_PATH, RESOLVE), (TRANSFER_PATH, TRANSFER), (CONTEXT_PATH, CONTEXT)])
@pytest.mark.parametrize("headers, status", [({}, 401), ({"Authorization": "Bearer nope"}, 401),
                                             ({"Authorization": "Basic agent-token"}, 401)])
async def test_commands_need_the_agent_token(client_for, path, body, headers, status) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(path, json=body, headers=headers)
    assert resp.status == status and resp.headers["WWW-Authenticate"] == "Bearer" and producer.records == []


@pytest.mark.parametrize("path, body", [(RESOLVE_PATH, RESOLVE), (TRANSFER_PATH, TRANSFER), (CONTEXT_PATH, CONTEXT)])
async def test_commands_are_closed_without_configured_tokens(client_for, path, body) -> None:
    settings = make_settings()
    settings.agent_tokens = []
    app, producer = make_app(settings=settings)
    client = await client_for(app)
    resp = await client.post(path, json=body, headers=AUTH)
    assert resp.status == 403 and producer.records == []


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/agents/nobody/ines/threads/th-1/resolve", RESOLVE, 404, "unknown tenant"),
    ("/customers/nobody/cust-7/context", CONTEXT, 404, "unknown tenant"),
    ("/agents/acme/ines/threads/th%7Cx/resolve", RESOLVE, 400, "thread id"),
    ("/customers/acme/c%7C7/context", CONTEXT, 400, "customer id"),
    (RESOLVE_PATH, {"channel": "whatsapp"}, 400, "customer_id"),
    (RESOLVE_PATH, {**RESOLVE, "customer_id": "acme|cust-7"}, 400, "customer_id"),
    (RESOLVE_PATH, {**RESOLVE, "resolved_by": "timeout"}, 400, "resolved_by"),
    (RESOLVE_PATH, {**RESOLVE, "reason": "done"}, 400, "reason"),
    (RESOLVE_PATH, {**RESOLVE, "occurred_at": 12}, 400, "occurred_at"),
    (RESOLVE_PATH, {**RESOLVE, "request_id": ""}, 400, "request_id"),
    (TRANSFER_PATH, {"customer_id": "cust-7", "reason": "x"}, 400, "needs a target"),
    (TRANSFER_PATH, {**TRANSFER, "to_queue": None}, 400, "to_queue or to_agent"),
    (TRANSFER_PATH, {**TRANSFER, "to_agent": "bad agent"}, 400, "to_agent"),
    (TRANSFER_PATH, {**TRANSFER, "channel": "fax"}, 400, "channel"),
    (CONTEXT_PATH, {**CONTEXT, "source": None}, 400, "source"),
    (CONTEXT_PATH, {"tier": "vip"}, 400, "source"),
    (CONTEXT_PATH, {**CONTEXT, "attributes": {"orders": 12}}, 400, "attributes"),
    (CONTEXT_PATH, {**CONTEXT, "occurred_at": 5_000_000_000_000}, 400, "occurred_at"),
    (CONTEXT_PATH, {**CONTEXT, "vip": True}, 400, "vip"),
])
async def test_bad_commands_are_refused_with_a_reason(client_for, path, body, status, fragment) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(path, json=body, headers=AUTH)
    assert resp.status == status, await resp.text()
    assert fragment in (await resp.json())["reason"] and producer.records == []


async def test_commands_when_kafka_is_down_are_503_and_counted(client_for) -> None:
    producer = FakeProducer()
    producer.fail = "down"
    app, _ = make_app(producer)
    client = await client_for(app)
    for path, body in ((RESOLVE_PATH, RESOLVE), (TRANSFER_PATH, TRANSFER), (CONTEXT_PATH, CONTEXT)):
        resp = await client.post(path, json=body, headers=AUTH)
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    metrics = (await (await client.get("/metrics")).text())
    assert 'parley_ingress_requests_total{adapter="agent_api",route="customer_context",status="503"} 1.0' in metrics
    producer.fail = None
    assert (await client.post(RESOLVE_PATH, json=RESOLVE, headers=AUTH)).status == 200
    metrics = (await (await client.get("/metrics")).text())
    assert 'parley_ingress_events_total{adapter="agent_api",event_type="ConversationResolved"} 1.0' in metrics
