"""Agent-API commands against the real broker: resolve, transfer, customer context and the identity
commands (link, unlink, merge) over HTTP, read back from their topics, decoded and checked field by field."""

from __future__ import annotations

import json
import time

import pytest

from parley.app.synthetic import events as f
from schemas import topics
from schemas.events import derive_id
from tests.integration.test_ingress_kafka import AGENT_AUTH, Running, read
from tests.unit.test_identity import MSGR, WA, Stages, the_message

pytestmark = pytest.mark.integration


async def test_resolve_transfer_and_context_reach_their_topics(applied_topics) -> None:
    now = int(time.time() * 1000)
    resolve = {"customer_id": "cust-7", "channel": "webchat", "occurred_at": now}
    async with Running(applied_topics) as ing:
        await ing.ready()
        answers = []
        for path, body in (
            ("/agents/acme/ines/threads/th-1/resolve", resolve),
            ("/agents/acme/ines/threads/th-1/resolve", resolve),  # a client retry
            ("/agents/acme/ines/threads/th-2/transfer", {"customer_id": "cust-7", "to_queue": "billing",
                                                          "reason": "refund", "occurred_at": now + 1}),
            ("/customers/acme/cust-7/context", {"source": "crm", "tier": "vip", "name": "Zoé",
                                                "attributes": {"orders": "12"}, "occurred_at": now + 2}),
        ):
            status, text, _ = await ing.post(path, body, AGENT_AUTH)
            assert status == 200, text
            answers.append(json.loads(text))
    # the client's retry is answered from the first one's claim: same id, same place, nothing stored again
    assert answers[1] == {**answers[0], "duplicate": True} and "duplicate" not in answers[0]
    got = await read(applied_topics, topics.CONVERSATION_MESSAGES, 2)
    assert [(r.partition, r.offset) for r, _ in got] == [(a["partition"], a["offset"])
                                                         for a in (answers[0], answers[2])]
    assert {r.key for r, _ in got} == {b"acme|cust-7"} and len({r.partition for r, _ in got}) == 1
    (r1, first), (r3, transfer) = got
    assert first["envelope"]["event_id"] == answers[0]["event_id"]
    env = first["envelope"]
    assert env["event_id"] == derive_id("acme", "ConversationResolved", "th-1", now, 0)
    assert env["event_type"] == "ConversationResolved" and env["occurred_at"] == now == r1.timestamp
    assert env["producer"] == "ingress/agent-api" and env["recorded_at"] >= now - 60_000
    assert (first["thread_id"], first["customer_id"], first["channel"], first["resolved_by"], first["agent_id"]) \
        == ("th-1", "cust-7", "webchat", "agent", "ines")
    assert transfer["envelope"]["event_type"] == "ConversationTransferred" and r3.timestamp == now + 1
    assert (transfer["thread_id"], transfer["from_agent_id"], transfer["to_queue"], transfer["to_agent_id"],
            transfer["reason"]) == ("th-2", "ines", "billing", None, "refund")
    [(record, ctx)] = await read(applied_topics, topics.CUSTOMER_CONTEXT, 1)
    assert record.key == b"acme|cust-7" and record.timestamp == now + 2
    assert (record.partition, record.offset) == (answers[3]["partition"], answers[3]["offset"])
    assert ctx["envelope"]["event_id"] == answers[3]["event_id"]
    assert {k: v for k, v in ctx.items() if k != "envelope"} == {
        "customer_id": "cust-7", "source": "crm", "name": "Zoé", "tier": "vip", "lifecycle_stage": None,
        "attributes": {"orders": "12"}, "privacy": None}  # sealing is off here


async def test_link_unlink_and_merge_reach_the_identity_commands_topic(applied_topics) -> None:
    store = Stages()
    a = the_message(store.feed(f.received("acme", WA, "hi", f.T0)))["customer_id"]
    store.feed(f.received("acme", MSGR, "hi", f.T0 + 1))
    ident = {"channel": "messenger", "id": "psid-1"}
    link = {**ident, "customer_id": a, "occurred_at": f.T0 + 50}
    async with Running(applied_topics) as ing:
        await ing.ready()
        answers = []
        for path, body in (
            ("/agents/acme/ines/identities/link", link),
            ("/agents/acme/ines/identities/link", link),  # a client retry
            ("/agents/acme/ines/identities/unlink", {**ident, "customer_id": a, "new_customer_id": "cust-split",
                                                     "reason": "not her", "request_id": "r-1"}),
            ("/agents/acme/ines/customers/merge", {"customer_id": a, "merged_customer_id": "cust-split",
                                                   "occurred_at": f.T0 + 90}),
        ):
            status, text, _ = await ing.post(path, body, AGENT_AUTH)
            assert status == 200, text
            answers.append(json.loads(text))
        status, text, _ = await ing.post("/agents/acme/ines/customers/merge",
                                         {"customer_id": a, "merged_customer_id": a}, AGENT_AUTH)
        assert status == 400 and "merged into itself" in text
    assert answers[1] == {**answers[0], "duplicate": True}  # the retry, answered from the claim
    got = await read(applied_topics, topics.IDENTITY_COMMANDS, 3)
    assert len(got) == 3  # neither the retry nor the refused self-merge stored anything
    stored = [answers[0], *answers[2:]]
    assert [(r.partition, r.offset) for r, _ in got] == [(ans["partition"], ans["offset"]) for ans in stored]
    assert {r.key for r, _ in got} == {b"acme"} and len({r.partition for r, _ in got}) == 1
    (r1, linked), (_, unlinked), (r4, merged) = got
    assert [e["envelope"]["event_id"] for _, e in got] == [ans["event_id"] for ans in stored]
    assert linked["envelope"]["event_id"] == derive_id(
        "acme", "IdentityLinked", "channel:messenger:psid-1", a, f.T0 + 50, 0)
    assert linked["envelope"]["producer"] == "ingress/agent-api" and r1.timestamp == f.T0 + 50
    assert (linked["customer_id"], linked["identity_key"], linked["signal"], linked["linked_by"]) \
        == (a, "channel:messenger:psid-1", "agent_manual", "ines")
    assert (unlinked["envelope"]["event_type"], unlinked["customer_id"], unlinked["new_customer_id"],
            unlinked["reason"], unlinked["unlinked_by"]) == ("IdentityUnlinked", a, "cust-split", "not her", "ines")
    assert (merged["envelope"]["event_type"], merged["customer_id"], merged["merged_customer_id"],
            merged["merged_by"], r4.timestamp) == ("IdentitiesMerged", a, "cust-split", "ines", f.T0 + 90)
    # read back from Kafka, the commands are taken by the identity logic
    emitted = store.feed(*(e for _, e in got))
    assert [e["envelope"]["event_type"] for e in emitted] == ["IdentityLinked", "IdentityUnlinked", "IdentitiesMerged"]
    assert store.profile_of("channel:messenger:psid-1") == a
