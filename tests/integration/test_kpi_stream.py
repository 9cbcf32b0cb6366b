"""The KPI stage on the real broker equals the batch recomputation.

A generated day (``parley.app.synthetic.simulate``: threads, routing decisions, replies, presence), delivered
out of order with redeliveries, is turned into what the conversations stage sends the KPI stage:
each thread's measure after every few of its events (out of order too, as measures of a thread
that moved between workers may be), and agent presence. The worker runs the KPI stage alone; the
compacted KPI topics, folded latest-per-key, equal ``parley.app.batch.kpi_batch.compute`` over the delivery.
"""

from __future__ import annotations

import random
import uuid

import orjson
import pytest

from parley.app.batch.kpi_batch import compute
from parley.app.synthetic.simulate import shuffled_with_duplicates, simulate_day
from parley.settings import WorkerSettings
from schemas import topics
from streams.kpi import logic
from streams.kpi.agents import KpiStage
from streams.kpi.logic import fold_outputs
from streams.kpi.state import measure
from streams.runtime.worker import Names
from tests.integration.stream_support import CODEC, read_all, running, wait_until

pytestmark = pytest.mark.integration


def kpi_inputs(delivery: list[dict]) -> list[tuple[bytes, bytes]]:
    """(key, value) records of ``kpi.threads``: measures of growing event sets per thread, in a
    shuffled order, and the presence events."""
    sets: dict[tuple[str, str], dict[str, list]] = {}
    latest: dict[tuple[str, str], int] = {}
    out: list[tuple[bytes, bytes]] = []
    for e in delivery:
        tenant = e["envelope"]["tenant_id"]
        if e["envelope"]["event_type"] == logic.AGENT_STATUS:
            out.append((tenant.encode(), CODEC.encode(e)))
            continue
        key = (tenant, logic.thread_of(e))
        latest[key] = max(latest.get(key, 0), e["envelope"]["occurred_at"])
        item = logic.compact(e)
        if item is not None:
            sets.setdefault(key, {})[e["envelope"]["event_id"]] = item
        m = measure(tenant, key[1], sets.get(key, {}).values(), latest[key])
        out.append((tenant.encode(), orjson.dumps({
            "t": m.latest, "r": 0, "id": f"{tenant}|{key[1]}", "type": "ThreadMeasured", "tenant": tenant,
            "thread": key[1], "m": m.to_json(),
            "cause": [e["envelope"]["event_id"], e["envelope"]["correlation_id"]]})))
    random.Random(3).shuffle(out)
    return out


def test_the_kpi_stage_on_kafka_equals_the_batch(applied_topics) -> None:
    from confluent_kafka import Producer

    k = applied_topics
    delivery = shuffled_with_duplicates(simulate_day(21, 0.1), 21, duplicate_rate=0.08)
    want = compute(delivery)
    assert want["contacts"] and want["agents"]
    s = WorkerSettings(kafka=k, app_id=f"w{uuid.uuid4().hex[:8]}", apply_topics=False, stats_interval_s=3600)
    with running(s, [KpiStage()]) as worker:
        p = Producer(k.librdkafka_config(**{"partitioner": "murmur2_random"}))
        name = Names(k.topic_prefix, s.app_id).topic(topics.KPI_THREADS.name)
        for key, value in kpi_inputs(delivery):
            p.produce(name, value, key)
            p.poll(0)
        assert p.flush(30) == 0

        def folded() -> dict:
            records = [v for t in (topics.KPI_INTERVALS, topics.KPI_CONTACTS) for _, v in read_all(k, t)]
            return fold_outputs(records)

        assert wait_until(lambda: folded() == want, 120, every=1.0)
        assert sum(c["dead"] for c in worker.stats.per_stage.values()) == 0
    for t in (topics.KPI_INTERVALS, topics.KPI_CONTACTS):  # keyed as the registry says
        for key, rec in read_all(k, t):
            assert key.decode() == rec["envelope"]["partition_key"]
            assert key.decode().startswith(f"{rec['envelope']['tenant_id']}|")
