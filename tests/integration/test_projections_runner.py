"""The projection runner against the real broker: events produced under a test prefix, the
runner consuming them into SQLite (and PostgreSQL), killed and restarted mid-stream, rebuilt."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import projections
from parley.app.synthetic import sample
from parley.settings import KafkaSettings, ProjectionSettings
from projections import runner
from projections.store import open_store
from schemas import topics
from schemas.codec import Codec
from tests.projection_support import applied_offsets, dump, reference

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def settings(kafka: KafkaSettings, url: str, **kw) -> ProjectionSettings:
    return ProjectionSettings(kafka=kafka, database_url=url, **kw)


async def test_live_run_builds_what_the_log_says(applied_topics: KafkaSettings, tmp_path: Path):
    records = sample.generate(80, seed=21)
    await sample.produce(applied_topics, records)
    url = f"sqlite:///{tmp_path}/live.db"
    stats = await runner.acatch_up(settings(applied_topics, url, batch_size=37))
    assert sum(s.records for s in stats.values()) > len(records)  # threads reads two topics
    assert stats["threads"].duplicates > 0 and stats["customers"].duplicates > 0
    store = open_store(url)
    got = dump(store)
    messages = {e["envelope"]["event_id"] for _t, _k, e in records
                if e["envelope"]["event_type"] in ("MessageReceived", "MessageSent")}
    assert len(got["messages"]) == len(messages)
    totals = store.query("SELECT SUM(message_count) AS n FROM threads")[0]["n"]
    assert totals == len(messages)  # redeliveries counted once
    store.close()
    assert got == reference(records, f"sqlite:///{tmp_path}/ref.db")


async def test_a_live_run_follows_new_events_and_a_rebuild_yields_the_same(
        applied_topics: KafkaSettings, tmp_path: Path):
    records = sample.generate(70, seed=22)
    half = len(records) // 2
    url = f"sqlite:///{tmp_path}/live.db"
    s = settings(applied_topics, url, batch_size=50, poll_timeout_ms=100)
    store = open_store(url)
    store.migrate()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.arun(s, stop=stop, store=store))
    await sample.produce(applied_topics, records[:half])
    await _until(lambda: store.query("SELECT COUNT(*) AS n FROM messages")[0]["n"] > 0)
    await sample.produce(applied_topics, records[half:])
    expected = reference(records, f"sqlite:///{tmp_path}/ref.db")
    await _until(lambda: dump(store) == expected, timeout=60)
    stop.set()
    stats = await asyncio.wait_for(task, 30)
    assert stats["threads"].applied > 0
    live = dump(store)
    for name in projections.PROJECTIONS:
        rebuilt = await runner.arebuild(s, name, store=store)
        assert rebuilt.records > 0 and rebuilt.dead_letters == 0
        assert dump(store, [name]) == dump_subset(live, name), name
    store.close()


def dump_subset(full: dict[str, list[str]], name: str) -> dict[str, list[str]]:
    return {t.name: full[t.name] for t in projections.get(name).tables}


async def _until(check, timeout: float = 30.0, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(every_s)


def _start_runner(kafka: KafkaSettings, url: str) -> subprocess.Popen:
    env = {**os.environ, "PARLEY_DATABASE_URL": url, "PARLEY_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
           "PARLEY_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "PARLEY_BATCH_SIZE": "40",
           "PARLEY_LOG__LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "projections.runner"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_killed_mid_stream_and_restarted_nothing_is_lost_or_counted_twice(
        applied_topics: KafkaSettings, tmp_path: Path):
    records = sample.generate(300, seed=23)
    await sample.produce(applied_topics, records)
    url = f"sqlite:///{tmp_path}/kill.db"
    reader = open_store(url)
    reader.migrate()
    stats = await runner.acatch_up(settings(applied_topics, f"sqlite:///{tmp_path}/count.db"))
    total = sum(s.records for s in stats.values())  # records the three projections read in all
    kills = []
    for _ in range(3):  # kill -9 three times, each somewhere in the middle
        proc = _start_runner(applied_topics, url)
        start = applied_offsets(reader)
        # a quarter of what is left: the runner overshoots by a batch or two (~1,500 records)
        # between two looks, and the third kill must still land before the end
        target = start + (total - start) // 4
        try:
            await _until(lambda p=proc, t=target: applied_offsets(reader) > t or p.poll() is not None,
                         timeout=90, every_s=0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        kills.append(applied_offsets(reader))
    print(f"killed at {kills} of {total} records")
    assert kills == sorted(kills) and 0 < kills[0] and kills[-1] < total, (kills, total)
    await runner.acatch_up(settings(applied_topics, url))  # the last restart, to the end
    assert applied_offsets(reader) == total
    assert dump(reader) == reference(records, f"sqlite:///{tmp_path}/ref.db")
    reader.close()


async def test_undecodable_records_are_dead_lettered_and_skipped(
        applied_topics: KafkaSettings, tmp_path: Path):
    conv = topics.named(applied_topics.topic_prefix, topics.CONVERSATIONS)
    good = [r for r in sample.generate(3, seed=24, duplicates=0) if r[0] is topics.CONVERSATIONS]
    producer = AIOKafkaProducer(bootstrap_servers=applied_topics.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(conv, b"\x00\x00\x00\x00\x01garbage", key=b"acme|x", partition=0)
        await producer.send_and_wait(conv, b"not even the wire format", key=b"acme|x", partition=0)
    finally:
        await producer.stop()
    await sample.produce(applied_topics, good)
    url = f"sqlite:///{tmp_path}/dl.db"
    stats = await runner.acatch_up(settings(applied_topics, url), ["threads"])
    assert stats["threads"].dead_letters == 2
    store = open_store(url)
    assert store.query("SELECT COUNT(*) AS n FROM messages")[0]["n"] > 0
    store.close()
    letters = await _read_all(applied_topics, topics.DEAD_LETTER)
    assert sorted((d["source_topic"], d["source_partition"], d["source_offset"], d["reason"])
                  for d in letters) == [(conv, 0, 0, "undecodable"), (conv, 0, 1, "undecodable")]
    assert letters[0]["stage"] == "projections/threads" and letters[0]["payload"]
    # the one dead-letter builder's rules: the tenant and the key from the undecodable record's key
    assert {(d["envelope"]["tenant_id"], d["headers"]["key"]) for d in letters} == {("acme", "acme|x")}


async def _read_all(kafka: KafkaSettings, topic: topics.Topic) -> list[dict]:
    name = topics.named(kafka.topic_prefix, topic)
    consumer = AIOKafkaConsumer(name, bootstrap_servers=kafka.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        return [Codec().decode(r.value) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()


async def test_on_postgresql_a_rebuild_equals_the_live_run(applied_topics: KafkaSettings,
                                                            postgres_url: str, tmp_path: Path):
    records = sample.generate(50, seed=25)
    await sample.produce(applied_topics, records)
    s = settings(applied_topics, postgres_url, batch_size=29)
    await runner.acatch_up(s)
    store = open_store(postgres_url)
    live = dump(store)
    assert live == reference(records, f"sqlite:///{tmp_path}/ref.db")
    for name in projections.PROJECTIONS:
        await runner.arebuild(s, name)
        assert dump(store, [name]) == dump_subset(live, name), name
    store.close()


async def test_a_rebuild_without_its_topics_leaves_the_tables_alone(kafka_settings: KafkaSettings,
                                                                     tmp_path: Path):
    url = f"sqlite:///{tmp_path}/keep.db"
    reference(sample.generate(5, seed=26), url)
    store = open_store(url)
    before = dump(store)
    with pytest.raises(runner.TopicMissing):
        await runner.arebuild(settings(kafka_settings, url), "threads")  # no topic under this prefix
    assert dump(store) == before and before["messages"]
    store.close()
