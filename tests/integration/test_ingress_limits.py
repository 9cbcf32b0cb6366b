"""Oversized but valid webhooks against the real broker (issue 10, defect 1).

Before: a correctly signed 1.5 MB WhatsApp text (or a SendGrid e-mail with a 1.2 MB text part)
was answered 503 MessageSizeTooLargeError, and every later request whose key landed on that
partition got 503 OutOfOrderSequenceNumber until the process restarted, while /readyz said ready.
Now: the raw record keeps the body whole, the event carries the text up to the documented limit
and a reference; a record the broker refuses anyway (a topic's limit lowered behind our back)
costs one 503 and a new producer, never a poisoned partition.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import aiohttp
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from adapters import limits
from schemas import topics
from tests.integration.test_ingress_kafka import WEB_AUTH, Running, read, web_message

pytestmark = pytest.mark.integration

META_SECRET = "demo-meta-app-secret"


def big_whatsapp(size: int, wamid: str) -> tuple[bytes, dict[str, str]]:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "106540352242922"},
             "contacts": [{"profile": {"name": "Zoé"}, "wa_id": "33612345678"}],
             "messages": [{"from": "33612345678", "id": wamid, "timestamp": str(int(time.time()) - 5),
                           "type": "text", "text": {"body": "é" * (size // 2)}}]}
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [
        {"field": "messages", "value": value}]}]}, ensure_ascii=False).encode()
    sig = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Hub-Signature-256": sig, "Content-Type": "application/json"}


def big_email(size: int) -> tuple[aiohttp.FormData, dict[str, str]]:
    form = aiohttp.FormData(default_to_multipart=True)  # SendGrid posts multipart/form-data
    for name, value in [("from", "Zoé <zoe@example.fr>"), ("to", "support@acme.example"), ("subject", "Relevé"),
                        ("headers", "Message-ID: <big-1@example.fr>\nFrom: zoe@example.fr\n"),
                        ("envelope", json.dumps({"to": ["support@acme.example"], "from": "zoe@example.fr"})),
                        ("text", "ligne du relevé\n" * (size // 16))]:
        form.add_field(name, value)
    auth = "Basic " + base64.b64encode(b"parse:demo-email-parse-password").decode()
    return form, {"Authorization": auth}


async def test_oversized_valid_webhooks_are_stored_and_poison_nothing(applied_topics) -> None:
    async with Running(applied_topics) as ing:
        await ing.ready()
        body, headers = big_whatsapp(1_500_000, "wamid.BIG1")
        status, text, _ = await ing.post("/webhooks/whatsapp/106540352242922", body, headers)
        assert status == 200, text
        form, headers = big_email(1_200_000)
        async with ing.http.post("/webhooks/email/support@acme.example", data=form, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        # every partition still takes records: 48 customers spread over the 12 partitions
        results = await asyncio.gather(*(ing.post("/webhooks/webchat/acme-web", web_message(f"after-{i}", f"v-{i}"),
                                                  WEB_AUTH) for i in range(48)))
        assert [s for s, _, _ in results] == [200] * 48
    got = {e["channel_message_id"]: e for _, e in await read(applied_topics, topics.MESSAGES, 50)}
    wa, mail = got["wamid.BIG1"], got["<big-1@example.fr>"]
    for event in (wa, mail):
        assert len(event["text"].encode()) <= limits.TEXT_BYTES and event["truncated_fields"] == ["text"]
        assert event["content_ref"].endswith(":" + event["raw_event_id"])
    assert wa["text"] == "é" * (limits.TEXT_BYTES // 2)
    raws = {e["envelope"]["event_id"]: e for _, e in await read(applied_topics, topics.RAW_INGRESS, 50)}
    assert raws[wa["raw_event_id"]]["body"] == body  # whole, in the place made for it
    assert len(raws[mail["raw_event_id"]]["body"]) > 1_200_000


def _set_max_message_bytes(kafka, topic: str, value: int) -> None:
    admin = AdminClient(kafka.librdkafka_config())
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"max.message.bytes": str(value)})
    for f in admin.alter_configs([resource]).values():
        f.result(timeout=30)


async def test_a_record_the_broker_refuses_costs_one_503_and_a_new_producer(applied_topics) -> None:
    """The topic's limit is lowered after the ingress read it: the broker refuses one record."""
    messages = topics.named(applied_topics.topic_prefix, topics.MESSAGES)
    async with Running(applied_topics) as ing:
        await ing.ready()
        await asyncio.to_thread(_set_max_message_bytes, applied_topics, messages, 2000)
        large = web_message("m-large", "v-1", text="x" * 3000)
        status, text, _ = await ing.post("/webhooks/webchat/acme-web", large, WEB_AUTH)
        assert status == 503, text  # refused by the broker: not stored, the provider retries
        await ing.ready(timeout_s=30)  # a new producer, with the new limits
        deadline = time.monotonic() + 20
        small_ok = False
        while not small_ok and time.monotonic() < deadline:  # the same key, the same partition
            status, text, _ = await ing.post("/webhooks/webchat/acme-web", web_message("m-small", "v-1"), WEB_AUTH)
            small_ok = status == 200
        assert small_ok, text
        status, text, _ = await ing.post("/webhooks/webchat/acme-web", large, WEB_AUTH)
        assert status == 200, text  # the provider's retry: now too large by the topic's limit, dead-lettered
    got = await read(applied_topics, topics.MESSAGES, 1)
    assert [e["channel_message_id"] for _, e in got] == ["m-small"]
    [(_, dead)] = await read(applied_topics, topics.DEAD_LETTER, 1)
    assert dead["reason"] == "too_large"
