"""The demo's driver against the real ingress (in-process, on loopback) and the real broker.

A scale-0.05 day goes through HTTP: every good request must get a 2xx, every bad one its 4xx,
and the messages topic must hold exactly the day's MessageReceived events (distinct event ids,
redeliveries mapped to the same id), with the simulated event times.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from adapters.app import build_app
from parley.demo.driver import drive
from parley.demo.scenario import Inbound, Presence, Receipt, Redelivery, Reply, build_day
from parley.demo.webhooks import EVENT_TIME_FROM_PAYLOAD
from parley.settings import IngressSettings, KafkaSettings
from schemas import topics
from schemas.codec import Codec

pytestmark = pytest.mark.integration

ACCOUNTS = Path(__file__).resolve().parents[2] / "config" / "accounts.example.toml"
AGENT_TOKEN = "integration-agent-token"
DAY = date(2026, 11, 17)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def ingress(applied_topics: KafkaSettings) -> AsyncIterator[str]:
    """The ingress app served on a free loopback port; yields its base URL."""
    settings = IngressSettings(kafka=applied_topics, accounts_file=ACCOUNTS,
                               agent_tokens=[AGENT_TOKEN], host="127.0.0.1", port=_free_port())
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        await runner.cleanup()


async def _read_all(kafka: KafkaSettings, topic: str) -> list[dict]:
    """Every record of ``topic`` up to its current end, decoded."""
    codec = Codec()
    consumer = AIOKafkaConsumer(topic, **kafka.client_kwargs(), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        out: list[dict] = []
        batch = await consumer.getmany(timeout_ms=1000)  # joins: every partition is assigned
        parts = consumer.assignment()
        ends = await consumer.end_offsets(list(parts))
        while True:
            out += [codec.decode(r.value) for records in batch.values() for r in records]
            if all([await consumer.position(tp) >= ends[tp] for tp in parts]):
                return out
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
    finally:
        await consumer.stop()


async def test_a_small_day_through_the_real_ingress(ingress: str,
                                                    applied_topics: KafkaSettings) -> None:
    scenario = build_day(11, 0.05, DAY)
    report = await drive(ingress, scenario, ACCOUNTS, agent_token=AGENT_TOKEN, progress=False)

    assert report.ok, "\n".join(report.lines())
    good = sum(n for s, n in report.by_status.items() if 200 <= s < 300)
    assert good == report.good and report.good > 100
    assert sum(n for s, n in report.by_status.items() if 400 <= s < 500) == report.bad >= 5
    assert report.skipped  # resolutions and context: their ids are not looked up (yet)

    events = await _read_all(applied_topics, topics.named(applied_topics.topic_prefix,
                                                          topics.MESSAGES))
    received = [e for e in events if e["envelope"]["event_type"] == "MessageReceived"]
    ids = Counter(e["envelope"]["event_id"] for e in received)
    assert len(ids) == scenario.expected_received()
    redelivered = sum(isinstance(s, Redelivery) for s in scenario.steps)
    assert len(received) == len(ids) + redelivered  # stored again, under the same event id

    # the simulated time is the event time on every channel whose payload carries it
    want = Counter((s.channel, s.at_ms) for s in scenario.steps
                   if isinstance(s, Inbound) and s.channel in EVENT_TIME_FROM_PAYLOAD)
    got = Counter((e["channel"], e["envelope"]["occurred_at"])
                  for e in {e["envelope"]["event_id"]: e for e in received}.values()
                  if e["channel"] in EVENT_TIME_FROM_PAYLOAD)
    assert got == want

    sent = [e for e in events if e["envelope"]["event_type"] == "MessageSent"]
    replies = [s for s in scenario.steps if isinstance(s, Reply)]
    assert sorted(e["envelope"]["occurred_at"] for e in sent) == sorted(r.at_ms for r in replies)
    statuses = [e for e in events if e["envelope"]["event_type"] == "DeliveryStatusChanged"]
    assert len(statuses) == sum(isinstance(s, Receipt) for s in scenario.steps)

    agents = await _read_all(applied_topics, topics.named(applied_topics.topic_prefix,
                                                          topics.AGENT_STATUS))
    assert len(agents) == sum(isinstance(s, Presence) for s in scenario.steps)
