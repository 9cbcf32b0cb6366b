"""No event id twice on parley.messages or the raw topic, whatever the redelivery pattern
(issue 10, defect 4): after a restart, across two ingress processes racing on the same webhook,
days apart within the horizon, concurrently in one process, and after an attempt died between
its claim and its stored marker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any, Self

import pytest
from aiohttp.test_utils import TestServer

from adapters.app import INGRESS, build_app
from adapters.channels import Registry
from adapters.dedup import Dedup, Item
from adapters.producer import Producer, Record, Sent
from parley.settings import IngressSettings, KafkaSettings
from schemas import topics
from schemas.events import derive_id
from tests.integration.test_ingress_kafka import AGENT_AUTH, WEB_AUTH, Running, accounts, read, web_message

pytestmark = pytest.mark.integration
DAY_MS = 24 * 3600 * 1000


class Clocked(Running):
    """The ingress with its clock moved by ``shift_ms`` (receipt times and the claim log's)."""

    def __init__(self, kafka: KafkaSettings, shift_ms: int = 0, **settings: Any) -> None:
        self.settings = IngressSettings(kafka=kafka, agent_tokens=["agent-token"], **settings)
        clock = lambda: time.time_ns() // 1_000_000 + shift_ms  # noqa: E731
        self.app = build_app(self.settings, accounts=accounts(), registry=Registry(), clock_ms=clock)
        self.server = TestServer(self.app, host="127.0.0.1")
        self.http = None

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        await self.ready()
        return self


def ids_of(got: list[tuple[Any, dict[str, Any]]]) -> Counter:
    return Counter(e["envelope"]["event_id"] for _, e in got)


async def test_a_redelivery_after_a_restart_is_not_stored_again(applied_topics) -> None:
    body = web_message("m-restart", "v-1")
    async with Clocked(applied_topics) as first:
        assert (await first.post("/webhooks/webchat/acme-web", body, WEB_AUTH))[0] == 200
    async with Clocked(applied_topics) as second:  # a new process: its memory is the claim log
        status, text, _ = await second.post("/webhooks/webchat/acme-web", body, WEB_AUTH)
        assert status == 200, text
    assert len(await read(applied_topics, topics.MESSAGES, 1, settle_s=1.5)) == 1
    assert len(await read(applied_topics, topics.RAW_INGRESS, 1, settle_s=0.5)) == 1


async def test_two_ingress_processes_racing_on_the_same_webhooks_store_each_once(applied_topics) -> None:
    async with Clocked(applied_topics) as a, Clocked(applied_topics) as b:
        bodies = [web_message(f"m-race-{i}", f"v-{i % 7}") for i in range(40)]
        calls = [ing.post("/webhooks/webchat/acme-web", body, WEB_AUTH)
                 for body in bodies for ing in (a, b, a, b)]  # each delivered 4 times at once
        results = await asyncio.gather(*calls)
    statuses = Counter(s for s, _, _ in results)
    assert set(statuses) <= {200, 503}, statuses  # 503: "another delivery is being stored, retry"
    assert statuses[200] >= 40
    got = await read(applied_topics, topics.MESSAGES, 40, settle_s=1.5)
    assert len(got) == 40 and max(ids_of(got).values()) == 1
    raws = await read(applied_topics, topics.RAW_INGRESS, 40, settle_s=0.5)
    assert len(raws) == 40 and max(ids_of(raws).values()) == 1


async def test_concurrent_deliveries_in_one_process_store_once(applied_topics) -> None:
    body = web_message("m-burst", "v-9")
    async with Clocked(applied_topics) as ing:
        results = await asyncio.gather(*(ing.post("/webhooks/webchat/acme-web", body, WEB_AUTH) for _ in range(20)))
        assert {s for s, _, _ in results} <= {200, 503}
        status, _, _ = await ing.post("/webhooks/webchat/acme-web", body, WEB_AUTH)  # the retry of any 503
        assert status == 200
    assert len(await read(applied_topics, topics.MESSAGES, 1, settle_s=1.5)) == 1


@pytest.mark.parametrize("days_ago, stored_again", [(6, False), (9, True)])
async def test_redeliveries_days_apart(applied_topics, days_ago: int, stored_again: bool) -> None:
    """Meta and RBM retry for 7 days: within the 8-day horizon a redelivery is recognised; past
    it (9 days: the claim log's retention) the id is forgotten, as documented."""
    body = web_message(f"m-{days_ago}d", "v-3")
    async with Clocked(applied_topics, shift_ms=-days_ago * DAY_MS) as then:
        assert (await then.post("/webhooks/webchat/acme-web", body, WEB_AUTH))[0] == 200
    async with Clocked(applied_topics) as now:
        assert (await now.post("/webhooks/webchat/acme-web", body, WEB_AUTH))[0] == 200
    got = await read(applied_topics, topics.MESSAGES, 1, settle_s=1.5)
    assert len(got) == (2 if stored_again else 1)


async def test_an_agent_reply_retried_is_stored_once_and_answers_its_first_place(applied_topics) -> None:
    reply = {"message_id": "out-7", "channel": "webchat", "channel_account_id": "acme-web",
             "recipient": {"id": "v-100"}, "text": "Elle part demain.", "occurred_at": int(time.time() * 1000)}
    async with Clocked(applied_topics) as ing:
        first = json.loads((await ing.post("/agents/acme/ines/replies", reply, AGENT_AUTH))[1])
        again = json.loads((await ing.post("/agents/acme/ines/replies", reply, AGENT_AUTH))[1])
    assert again == {**first, "duplicate": True}
    assert len(await read(applied_topics, topics.MESSAGES, 1, settle_s=1.0)) == 1


async def _dead_claim(kafka: KafkaSettings, body: bytes, event_key: bytes, event_id: str) -> None:
    """What a process that crashed right after its claim leaves behind: a claim, a minute old."""
    claims = topics.named(kafka.topic_prefix, topics.INGRESS_CLAIMS)
    producer = Producer(kafka, required_topics=[claims])
    await producer.start()
    assert await producer.wait_ready(30)
    minute_ago = time.time_ns() // 1_000_000 - 60_000
    dedup = Dedup(kafka, claims, producer, clock_ms=lambda: minute_ago)
    raw_id = derive_id("acme", "webchat", "acme-web", "raw", hashlib.sha256(body).hexdigest())
    items = [Item(raw_id, topics.named(kafka.topic_prefix, topics.RAW_INGRESS), b"acme|webchat|acme-web"),
             Item(event_id, topics.named(kafka.topic_prefix, topics.MESSAGES), event_key)]
    await producer.send_all([dedup.record([dedup._entry("claimed", uuid.uuid4().hex, items, {})])])
    await producer.stop()


@pytest.mark.parametrize("landed", [True, False])
async def test_a_claim_left_by_a_crash_is_settled_from_the_topics(applied_topics, landed: bool) -> None:
    """The crashed attempt's records landed (or not) before it died: the redelivery finds out by
    reading the topics, and the id is stored exactly once either way."""
    doc = web_message("m-crash", "v-5")
    body = json.dumps(doc).encode()
    event_id = derive_id("acme", "webchat", "acme-web", "v-5", "m-crash")
    if landed:  # the records are on the topics (written without the claim protocol)
        async with Clocked(applied_topics, dedup=False) as unguarded:
            assert (await unguarded.post("/webhooks/webchat/acme-web", body, WEB_AUTH))[0] == 200
    await _dead_claim(applied_topics, body, b"acme|webchat|v-5", event_id)
    async with Clocked(applied_topics) as ing:
        status, text, _ = await ing.post("/webhooks/webchat/acme-web", body, WEB_AUTH)
        assert status == 200, text
        status, _, _ = await ing.post("/webhooks/webchat/acme-web", body, WEB_AUTH)
        assert status == 200
        dedup = ing.app[INGRESS].dedup
        deadline = time.monotonic() + 10
        while dedup.attempts and time.monotonic() < deadline:  # our own stored marker, read back
            await asyncio.sleep(0.05)
        assert dedup.memory.get(event_id) is not None and not dedup.attempts  # the dead claim is settled
    got = await read(applied_topics, topics.MESSAGES, 1, settle_s=1.5)
    assert list(ids_of(got).values()) == [1]
    raws = await read(applied_topics, topics.RAW_INGRESS, 1, settle_s=0.5)
    assert list(ids_of(raws).values()) == [1]


async def test_a_claim_never_read_back_answers_unavailable_within_its_bound(applied_topics) -> None:
    """The claim is written but this process's reader never reads it back (here: never started):
    the attempt fails (503) after the producer's timeout plus ``max(1 s, wait_s)``, neither
    sooner nor much later, and its claim is void."""
    from adapters.producer import Unavailable

    claims = topics.named(applied_topics.topic_prefix, topics.INGRESS_CLAIMS)
    producer = Producer(applied_topics, required_topics=[claims], timeout_s=1.0)
    await producer.start()
    assert await producer.wait_ready(30)
    dedup = Dedup(applied_topics, claims, producer, wait_s=0.5)
    item = Item(uuid.uuid4().hex, topics.named(applied_topics.topic_prefix, topics.MESSAGES), b"k")
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="not read back"):
            async with asyncio.timeout(10):  # unbounded, it would raise TimeoutError here
                await dedup.claim([item])
        took = time.monotonic() - started
        assert 1.9 <= took < 4.0, took  # 1 s + max(1 s, 0.5 s)
        assert not dedup.attempts and not dedup.claims  # void here; elsewhere once read
    finally:
        await dedup.stop()
        await producer.stop()


async def test_a_turns_claims_reach_the_producer_on_the_next_turn_as_one_record(applied_topics) -> None:
    """Every claim waits to read its record back, so the record must not wait for a task's
    extra turn of the loop before it is produced: the claims queued in one turn are handed to
    the producer, as one record, in the next."""
    claims = topics.named(applied_topics.topic_prefix, topics.INGRESS_CLAIMS)
    producer = Producer(applied_topics, required_topics=[claims])
    await producer.start()
    assert await producer.wait_ready(30)
    submitted: list[int] = []
    submit = producer.submit

    def counted(records: Sequence[Record]) -> Sent | None:
        submitted.append(len(records))
        return submit(records)

    producer.submit = counted  # type: ignore[method-assign]
    dedup = Dedup(applied_topics, claims, producer)
    await dedup.start()
    try:
        async with asyncio.timeout(30):
            while not dedup.ready:
                await asyncio.sleep(0.05)
        items = [Item(uuid.uuid4().hex, topics.named(applied_topics.topic_prefix, topics.MESSAGES), b"k")
                 for _ in range(3)]
        claiming = [asyncio.ensure_future(dedup.claim([i])) for i in items]
        await asyncio.sleep(0)  # this turn: the three claims queue their entries
        assert submitted == []
        await asyncio.sleep(0)  # the next: one record with all three
        assert submitted == [1]
        outcomes = await asyncio.gather(*claiming)
        assert [o.mine for o in outcomes] == [[i] for i in items]  # each read back, each its own
    finally:
        await dedup.stop()
        await producer.stop()
