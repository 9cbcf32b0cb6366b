"""The foundation against a real broker: the catalogue is applied, Avro events round-trip."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from parley import topics_admin
from schemas import topics
from schemas.codec import Codec
from schemas.events import derive_id, envelope, make

pytestmark = pytest.mark.integration


def test_catalogue_is_applied_with_its_configuration(applied_topics) -> None:
    live = asyncio.run(topics_admin.live_configs(applied_topics))
    for t in topics.ALL:
        info = live[topics.named(applied_topics.topic_prefix, t)]
        assert info["partitions"] == t.partitions
        assert info["configs"]["cleanup.policy"] == t.cleanup
        assert info["configs"]["retention.ms"] == str(t.retention_ms)


def test_apply_is_idempotent(applied_topics) -> None:
    lines = asyncio.run(topics_admin.apply(applied_topics))
    assert all(line.startswith("updated") for line in lines)
    assert len(lines) == len(topics.ALL)


def _events(n: int) -> list[dict]:
    out = []
    for i in range(n):
        key = f"acme|whatsapp|3360000{i % 3}"
        env = envelope("MessageReceived", event_id=derive_id("acme", "wa", i), occurred_at=1_700_000_000_000 + i,
                       tenant_id="acme", partition_key=key, producer="test")
        out.append(make("MessageReceived", env, channel="whatsapp", channel_account_id="1055",
                        sender={"channel": "whatsapp", "id": key.rsplit("|", 1)[1], "display_name": "Zoé",
                                "phone_e164": None, "email": None, "login_id": None},
                        channel_message_id=f"wamid.{i}", text=f"message {i} ✓", raw_event_id=f"raw-{i}"))
        env = envelope("AgentStatusChanged", event_id=derive_id("acme", "agent", i), occurred_at=1_700_000_000_000 + i,
                       tenant_id="acme", partition_key="acme", producer="test")
        out.append(make("AgentStatusChanged", env, agent_id=f"a{i}", presence="online", capacity=3,
                        skills=["refund"], languages=["fr"]))
    return out


async def test_avro_events_round_trip_through_kafka(applied_topics) -> None:
    codec = Codec()
    name = topics.named(applied_topics.topic_prefix, topics.MESSAGES)
    sent = _events(20)
    producer = AIOKafkaProducer(**applied_topics.client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[
            await producer.send(name, codec.encode(e, name), key=e["envelope"]["partition_key"].encode())
            for e in sent
        ])
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(name, **applied_topics.client_kwargs(), auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    got: list[dict] = []
    try:
        while len(got) < len(sent):
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
            for records in batch.values():
                for r in records:
                    event = codec.decode(r.value)
                    assert r.key.decode() == event["envelope"]["partition_key"]
                    got.append(event)
    finally:
        await consumer.stop()
    by_id = {e["envelope"]["event_id"]: e for e in got}
    assert by_id == {e["envelope"]["event_id"]: e for e in sent}
