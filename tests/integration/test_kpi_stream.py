"""The KPI agents in a real Faust app on the real broker equal the batch recomputation.

A generated day, delivered out of order with redeliveries, is produced to
``parley.conversations`` and ``parley.agents.status`` under a test prefix; the KPI agents run
in-process in a minimal ``faust.App`` (in-memory tables, changelogs on the broker); the compacted
KPI topics are read back from the start, folded latest-per-key, and compared with
``batch.kpi_batch.compute`` over the same delivery.
"""

from __future__ import annotations

import time
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from batch.kpi_batch import compute
from parley.settings import KafkaSettings, WorkerSettings
from parley.simulate import shuffled_with_duplicates, simulate_day
from schemas import topics
from schemas.codec import Codec
from streams.kpi import agents as kpi_agents
from streams.kpi.logic import fold_outputs

pytestmark = pytest.mark.integration


async def produce(kafka: KafkaSettings, events: list[dict]) -> None:
    codec = Codec()
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        for e in events:
            is_status = e["envelope"]["event_type"] == "AgentStatusChanged"
            name = topics.named(kafka.topic_prefix,
                                topics.AGENT_STATUS if is_status else topics.CONVERSATIONS)
            await producer.send(name, codec.encode(e, name),
                                key=e["envelope"]["partition_key"].encode())
        await producer.flush()
    finally:
        await producer.stop()


def kpi_app(kafka: KafkaSettings, datadir: Path) -> faust.App:
    """A minimal app for the KPI agents alone (``streams/app.py`` builds the full worker)."""
    return faust.App(f"{kafka.topic_prefix}kpi", broker=f"kafka://{kafka.bootstrap_servers}",
                     store="memory://", web_enabled=False, topic_replication_factor=1,
                     consumer_auto_offset_reset="earliest", datadir=str(datadir))


async def read_until(kafka: KafkaSettings, want: dict, timeout_s: float) -> tuple[dict, list]:
    """Fold the KPI topics from the start until they equal ``want`` (or time runs out)."""
    codec = Codec()
    names = [topics.named(kafka.topic_prefix, t) for t in (topics.KPI_INTERVALS,
                                                           topics.KPI_CONTACTS)]
    consumer = AIOKafkaConsumer(*names, **kafka.client_kwargs(), auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    messages: list = []
    got: dict = {}
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                messages += batch
            got = fold_outputs(codec.decode(m.value) for m in messages)
            if got == want:
                break
    finally:
        await consumer.stop()
    return got, messages


async def test_kpi_agents_on_kafka_equal_the_batch(applied_topics: KafkaSettings, tmp_path: Path):
    kafka = applied_topics
    delivery = shuffled_with_duplicates(simulate_day(21, 0.1), 21, duplicate_rate=0.08)
    await produce(kafka, delivery)
    want = compute(delivery)
    assert want["contacts"] and want["agents"]

    app = kpi_app(kafka, tmp_path)
    kpi_agents.register(app, WorkerSettings(kafka=kafka))
    await app.start()
    try:
        got, messages = await read_until(kafka, want, timeout_s=120)
    finally:
        await app.stop()

    for part in ("contacts", "intervals", "agents"):
        assert got[part].keys() == want[part].keys(), part
        assert got[part] == want[part], part
    codec = Codec()
    for m in messages:  # keyed as the registry says: the record's own partition key
        rec = codec.decode(m.value)
        assert m.key.decode() == rec["envelope"]["partition_key"]
        assert m.key.decode().startswith(f"{rec['envelope']['tenant_id']}|")
        if rec["envelope"]["event_type"] == "IntervalStat":
            assert m.key.decode() == "|".join(("acme", str(rec["interval_start"]),
                                               rec["dimension"], rec["dimension_value"]))
