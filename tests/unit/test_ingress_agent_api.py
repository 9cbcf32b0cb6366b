"""The agent API: token, validation, the events it builds (in-memory producer), and the identity
processor taking its identity commands."""

from __future__ import annotations

import pytest

from adapters import app as app_module
from adapters.accounts import Accounts
from adapters.app import build_app
from adapters.metrics import IngressMetrics
from parley.app.synthetic import events as f
from schemas import topics
from schemas.events import derive_id
from tests.unit.test_identity import MSGR, WA, Stages, the_message
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
    # the id the processors' tests use for an agent-API command (parley.app.synthetic.events.thread_command)
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
        "lifecycle_stage": "customer", "attributes": {"orders": "12", "last_cart": "abandoned"}, "privacy": None}


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


# -- identity commands: link, unlink, merge ------------------------------------------------------

LINK = {"channel": "messenger", "id": "psid-1", "customer_id": "cust-7", "occurred_at": NOW_MS - 2000}
UNLINK = {"channel": "messenger", "id": "psid-1", "customer_id": "cust-7", "reason": "wrong person",
          "undoes_event_id": "ev-9", "occurred_at": NOW_MS - 1500}
MERGE = {"customer_id": "cust-7", "merged_customer_id": "cust-8", "occurred_at": NOW_MS - 1000}
LINK_PATH = "/agents/acme/ines/identities/link"
UNLINK_PATH = "/agents/acme/ines/identities/unlink"
MERGE_PATH = "/agents/acme/ines/customers/merge"
IDENTITY_ROUTES = [(LINK_PATH, LINK), (UNLINK_PATH, UNLINK), (MERGE_PATH, MERGE)]


async def _post_command(client_for, path: str, body: dict) -> tuple[dict, dict, object]:
    """(the 200 answer, the command decoded from the identity commands topic, its record)."""
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(path, json=body, headers=AUTH)
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.IDENTITY_COMMANDS))
    [record] = producer.records
    return await resp.json(), event, record


def _fields(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "envelope"}


async def test_a_link_becomes_an_identity_linked_command_keyed_by_tenant(client_for) -> None:
    answer, event, record = await _post_command(client_for, LINK_PATH, LINK)
    assert record.key == b"acme" and record.timestamp_ms == NOW_MS - 2000
    assert dict(record.headers)["event_type"] == b"IdentityLinked"
    env = event["envelope"]
    assert answer["event_id"] == env["event_id"] and answer["topic"] == topic(topics.IDENTITY_COMMANDS)
    assert env["event_id"] == derive_id("acme", "IdentityLinked", "channel:messenger:psid-1", "cust-7",
                                        NOW_MS - 2000, 0)
    assert env["event_type"] == "IdentityLinked" and env["tenant_id"] == "acme" and env["partition_key"] == "acme"
    assert env["occurred_at"] == NOW_MS - 2000 and env["recorded_at"] == NOW_MS
    assert env["correlation_id"] == env["event_id"] and env["causation_id"] is None
    assert env["producer"] == "ingress/agent-api"
    assert _fields(event) == {"customer_id": "cust-7", "identity_key": "channel:messenger:psid-1",
                              "signal": "agent_manual", "linked_by": "ines", "source_event_id": None}


async def test_an_unlink_becomes_an_identity_unlinked_command(client_for) -> None:
    answer, event, record = await _post_command(client_for, UNLINK_PATH, UNLINK)
    assert record.key == b"acme" and record.timestamp_ms == NOW_MS - 1500
    env = event["envelope"]
    assert env["event_type"] == "IdentityUnlinked" and env["partition_key"] == "acme"
    assert answer["event_id"] == env["event_id"] == derive_id(
        "acme", "IdentityUnlinked", "channel:messenger:psid-1", "cust-7", NOW_MS - 1500, 0)
    # "" lets the identity processor derive the split-off customer's id from the command's id
    assert _fields(event) == {"customer_id": "cust-7", "identity_key": "channel:messenger:psid-1",
                              "new_customer_id": "", "undoes_event_id": "ev-9", "reason": "wrong person",
                              "unlinked_by": "ines"}
    _, event, _ = await _post_command(client_for, UNLINK_PATH, {**UNLINK, "new_customer_id": "cust-9"})
    assert event["new_customer_id"] == "cust-9"


async def test_a_merge_becomes_an_identities_merged_command(client_for) -> None:
    answer, event, record = await _post_command(client_for, MERGE_PATH, MERGE)
    assert record.key == b"acme" and record.timestamp_ms == NOW_MS - 1000
    env = event["envelope"]
    assert env["event_type"] == "IdentitiesMerged" and env["partition_key"] == "acme"
    assert answer["event_id"] == env["event_id"] == derive_id(
        "acme", "IdentitiesMerged", "cust-7", "cust-8", NOW_MS - 1000, 0)
    assert _fields(event) == {"customer_id": "cust-7", "merged_customer_id": "cust-8", "signal": "agent_manual",
                              "identity_keys": [], "merged_by": "ines", "source_event_id": None}


@pytest.mark.parametrize("identity, key", [
    ({"channel": "whatsapp", "id": "33612345678"}, "channel:whatsapp:33612345678"),
    ({"channel": "email", "id": "Zoe@Example.com"}, "channel:email:Zoe@Example.com"),  # as received
    ({"phone_e164": "+33612345678"}, "phone:+33612345678"),
    ({"email": " Zoe@Example.com"}, "email:zoe@example.com"),
    ({"login_id": "user-9"}, "login:user-9"),
])
async def test_the_identity_key_is_the_identity_processors(client_for, identity, key) -> None:
    _, event, _ = await _post_command(client_for, LINK_PATH, {"customer_id": "cust-7", **identity})
    assert event["identity_key"] == key


@pytest.mark.parametrize("path, body", [
    *IDENTITY_ROUTES,
    (LINK_PATH, {"login_id": "user-9", "customer_id": "cust-7", "request_id": "r-1"}),
    (MERGE_PATH, {"customer_id": "cust-7", "merged_customer_id": "cust-8", "request_id": "r-1"}),
])
async def test_a_retried_identity_command_has_the_same_event_id(client_for, path, body) -> None:
    app, producer = _moving_clock_app()
    client = await client_for(app)
    answers = [await (await client.post(path, json=body, headers=AUTH)).json() for _ in range(2)]
    assert answers[0]["event_id"] == answers[1]["event_id"] and len(producer.records) == 2
    assert {r.topic for r in producer.records} == {topic(topics.IDENTITY_COMMANDS)}


async def test_identity_commands_that_differ_have_different_ids(client_for) -> None:
    app, _ = _moving_clock_app()
    client = await client_for(app)
    bodies = [(LINK_PATH, LINK), (LINK_PATH, {**LINK, "customer_id": "cust-8"}), (LINK_PATH, {**LINK, "id": "p-2"}),
              (LINK_PATH, {**LINK, "request_id": "r-2"}), (UNLINK_PATH, {**UNLINK, "occurred_at": LINK["occurred_at"]}),
              (MERGE_PATH, MERGE), (MERGE_PATH, {**MERGE, "customer_id": "cust-8", "merged_customer_id": "cust-7"}),
              (LINK_PATH, {"channel": "messenger", "id": "psid-1", "customer_id": "cust-7"}),
              (LINK_PATH, {"channel": "messenger", "id": "psid-1", "customer_id": "cust-7"})]
    ids = [(await (await client.post(p, json=b, headers=AUTH)).json())["event_id"] for p, b in bodies]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("path, body", IDENTITY_ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic agent-token"}])
async def test_identity_commands_need_the_agent_token(client_for, path, body, headers) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(path, json=body, headers=headers)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer" and producer.records == []


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/agents/nobody/ines/identities/link", LINK, 404, "unknown tenant"),
    ("/agents/acme/in%7Ces/identities/link", LINK, 400, "agent id"),
    ("/agents/acme/in%7Ces/customers/merge", MERGE, 400, "agent id"),
    (LINK_PATH, {**LINK, "customer_id": None}, 400, "customer_id"),
    (LINK_PATH, {"channel": "messenger", "id": "psid-1"}, 400, "customer_id"),
    (LINK_PATH, {**LINK, "customer_id": "acme|cust-7"}, 400, "customer_id"),
    (LINK_PATH, {**LINK, "channel": "fax"}, 400, "channel"),
    (LINK_PATH, {**LINK, "id": None}, 400, "name one identity"),
    (LINK_PATH, {**LINK, "channel": None}, 400, "name one identity"),
    (LINK_PATH, {"customer_id": "cust-7"}, 400, "name one identity"),
    (LINK_PATH, {**LINK, "email": "zoe@example.com"}, 400, "name one identity"),
    (LINK_PATH, {"customer_id": "cust-7", "email": "z@x.io", "login_id": "u"}, 400, "name one identity"),
    (LINK_PATH, {"customer_id": "cust-7", "phone_e164": "0612345678"}, 400, "phone_e164"),
    (LINK_PATH, {**LINK, "identity_key": "phone:+33612345678"}, 400, "identity_key"),
    (LINK_PATH, {**LINK, "signal": "same_phone"}, 400, "signal"),
    (LINK_PATH, {**LINK, "occurred_at": 12}, 400, "occurred_at"),
    (LINK_PATH, {**LINK, "request_id": ""}, 400, "request_id"),
    (UNLINK_PATH, {**UNLINK, "new_customer_id": "cust-7"}, 400, "must differ"),
    (UNLINK_PATH, {**UNLINK, "new_customer_id": "a|b"}, 400, "new_customer_id"),
    (UNLINK_PATH, {**UNLINK, "reason": "x" * 300}, 400, "reason"),
    (MERGE_PATH, {**MERGE, "merged_customer_id": "cust-7"}, 400, "merged into itself"),
    (MERGE_PATH, {"customer_id": "cust-7"}, 400, "merged_customer_id"),
    (MERGE_PATH, {"source_customer_id": "cust-8", "target_customer_id": "cust-7"}, 400, "customer_id"),
    (MERGE_PATH, {**MERGE, "occurred_at": 5_000_000_000_000}, 400, "occurred_at"),
])
async def test_bad_identity_commands_are_refused_with_a_reason(client_for, path, body, status, fragment) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(path, json=body, headers=AUTH)
    assert resp.status == status, await resp.text()
    assert fragment in (await resp.json())["reason"] and producer.records == []


async def test_identity_commands_when_kafka_is_down_are_503_and_counted(client_for) -> None:
    producer = FakeProducer()
    producer.fail = "down"
    app, _ = make_app(producer)
    client = await client_for(app)
    for path, body in IDENTITY_ROUTES:
        resp = await client.post(path, json=body, headers=AUTH)
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    metrics = (await (await client.get("/metrics")).text())
    assert 'parley_ingress_requests_total{adapter="agent_api",route="customer_merge",status="503"} 1.0' in metrics
    producer.fail = None
    assert (await client.post(LINK_PATH, json=LINK, headers=AUTH)).status == 200
    metrics = (await (await client.get("/metrics")).text())
    assert 'parley_ingress_events_total{adapter="agent_api",event_type="IdentityLinked"} 1.0' in metrics


def test_the_ingress_is_ready_only_once_the_identity_commands_topic_exists() -> None:
    app = build_app(make_settings(), accounts=Accounts([FAKE_ACCOUNT]), metrics=IngressMetrics())
    ingress = app[app_module.INGRESS]
    # the producer's readiness (and /readyz) checks these topics exist on the cluster
    assert ingress.identity_commands_topic == topic(topics.IDENTITY_COMMANDS)
    assert ingress.identity_commands_topic in ingress.producer._required_topics


# -- the commands as the identity processor takes them (after Avro encode/decode) ----------------

async def _command(client, path: str, body: dict, producer: FakeProducer) -> dict:
    resp = await client.post(path, json=body, headers=AUTH)
    assert resp.status == 200, await resp.text()
    return producer.decoded(topic(topics.IDENTITY_COMMANDS))[-1]


async def test_link_unlink_and_merge_commands_are_applied_by_the_identity_logic(client_for) -> None:
    producer = FakeProducer()
    app, _ = make_app(producer)
    client = await client_for(app)
    store = Stages()
    a = the_message(store.feed(f.received("acme", WA, "hi", f.T0)))["customer_id"]
    b = the_message(store.feed(f.received("acme", MSGR, "hi", f.T0 + 1)))["customer_id"]
    ident = {"channel": "messenger", "id": "psid-1"}

    link = await _command(client, LINK_PATH, {**ident, "customer_id": a, "occurred_at": f.T0 + 50}, producer)
    out = store.feed(link)
    assert [(e["envelope"]["event_type"], e["customer_id"], e["identity_key"], e["signal"], e["linked_by"],
             e["source_event_id"]) for e in out] == [
        ("IdentityLinked", a, "channel:messenger:psid-1", "agent_manual", "ines", link["envelope"]["event_id"])]
    # the identity's messages keep their own customer id; the profile they belong to is a's
    me_again = the_message(store.feed(f.received("acme", MSGR, "me again", f.T0 + 60, n=1)))["customer_id"]
    assert me_again == b and store.profile_of("channel:messenger:psid-1") == a
    assert store.feed(link) == []  # a redelivered command is applied once

    unlink = await _command(client, UNLINK_PATH, {**ident, "customer_id": a, "reason": "not her",
                                                  "occurred_at": f.T0 + 70}, producer)
    [split] = store.feed(unlink)
    assert split["envelope"]["event_type"] == "IdentityUnlinked" and split["unlinked_by"] == "ines"
    assert split["customer_id"] == a and split["new_customer_id"] not in ("", a)
    assert the_message(store.feed(f.received("acme", MSGR, "who am I", f.T0 + 80, n=2)))["customer_id"] \
        == split["new_customer_id"]
    assert store.feed(unlink) == []

    merge = await _command(client, MERGE_PATH, {"customer_id": a, "merged_customer_id": split["new_customer_id"],
                                                "occurred_at": f.T0 + 90}, producer)
    [merged] = store.feed(merge)
    assert (merged["envelope"]["event_type"], merged["customer_id"], merged["merged_customer_id"],
            merged["identity_keys"], merged["merged_by"]) == (
        "IdentitiesMerged", a, split["new_customer_id"], ["channel:messenger:psid-1"], "ines")
    after = the_message(store.feed(f.received("acme", MSGR, "merged", f.T0 + 95, n=3)))["customer_id"]
    assert store.graph().canonical(after) == a
    assert store.feed(merge) == []
    assert b != a and store.profile_of("channel:messenger:psid-1") == a


@pytest.mark.parametrize("identity, sender", [
    ({"phone_e164": "+14155550100"}, f.identity("sms", "+14155550100", phone="+14155550100")),
    ({"email": "Zoe@Example.com"}, f.identity("email", "zoe@example.com", email="zoe@example.com")),
    ({"login_id": "user-9"}, f.identity("webchat", "w-9", login="user-9")),
    ({"channel": "telegram", "id": "12345678901"}, f.identity("telegram", "12345678901")),
])
async def test_a_linked_identity_brings_its_messages_to_the_customer(client_for, identity, sender) -> None:
    producer = FakeProducer()
    app, _ = make_app(producer)
    client = await client_for(app)
    store = Stages()
    a = the_message(store.feed(f.received("acme", WA, "hi", f.T0)))["customer_id"]
    link = await _command(client, LINK_PATH, {**identity, "customer_id": a, "occurred_at": f.T0 + 5}, producer)
    assert [e["envelope"]["event_type"] for e in store.feed(link)] == ["IdentityLinked"]
    # a first message from that identity belongs to the linked customer's profile
    first = the_message(store.feed(f.received("acme", sender, "hello", f.T0 + 10)))["customer_id"]
    assert store.graph().canonical(first) == a
