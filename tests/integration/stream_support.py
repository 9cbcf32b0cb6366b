"""Helpers of the stream worker's integration tests: write inputs, run workers, read outputs."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from parley.settings import KafkaSettings, WorkerSettings
from schemas import topics
from schemas.codec import Codec
from streams.runtime.stage import Stage
from streams.runtime.worker import Names, Worker
from tests import waiting

CODEC = Codec()
PUBLIC = (topics.CONVERSATION_MESSAGES, topics.CONVERSATIONS, topics.IDENTITY)
COMPACTED = (topics.KPI_CONTACTS, topics.KPI_INTERVALS)


def produce(k: KafkaSettings, records: list[tuple[topics.Topic, Any]], *, key: bytes = b"acme|whatsapp|x") -> None:
    """Write events (or raw bytes, under ``key``) as ingress and the agent API would."""
    p = Producer(k.librdkafka_config(**{"partitioner": "murmur2_random", "linger.ms": 5, "acks": "all"}))
    for t, e in records:
        if isinstance(e, bytes):
            p.produce(topics.named(k.topic_prefix, t), e, key)
        else:
            p.produce(topics.named(k.topic_prefix, t), CODEC.encode(e), e["envelope"]["partition_key"].encode())
        p.poll(0)
    assert p.flush(30) == 0


def read_all(k: KafkaSettings, t: topics.Topic | None = None, *,
             name: str | None = None) -> list[tuple[bytes | None, Any]]:
    """Every committed record of a topic (``t`` of the catalogue, or the real ``name``) so far,
    decoded: (key, value)."""
    topic = name or topics.named(k.topic_prefix, t)
    c = Consumer(k.librdkafka_config(**{"group.id": "reader", "enable.auto.commit": False,
                                        "isolation.level": "read_committed", "enable.partition.eof": True}))
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(md.partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        todo = {p for p in parts if ends[p] > 0}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        out: list[tuple[bytes | None, Any]] = []
        while todo:
            for m in c.consume(10_000, 1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(m.partition())
                    continue
                v = m.value()
                out.append((m.key(), None if v is None else json.loads(v) if v[:1] == b"{" else CODEC.decode(v)))
        return out
    finally:
        c.close()


def copy_log(src: KafkaSettings, dst: KafkaSettings, ts: tuple[topics.Topic, ...]) -> int:
    """Copy topics record by record into the same partitions, in the same order: one input log,
    twice. Returns the number of records copied."""
    p = Producer(dst.librdkafka_config(**{"linger.ms": 5, "acks": "all"}))
    n = 0
    for t in ts:
        name = topics.named(src.topic_prefix, t)
        c = Consumer(src.librdkafka_config(**{"group.id": "copier", "enable.auto.commit": False,
                                              "enable.partition.eof": True}))
        try:
            parts = sorted(c.list_topics(name, timeout=10).topics[name].partitions)
            todo = {q for q in parts if c.get_watermark_offsets(TopicPartition(name, q), timeout=10)[1] > 0}
            c.assign([TopicPartition(name, q, OFFSET_BEGINNING) for q in todo])
            while todo:
                for m in c.consume(10_000, 1.0):
                    if m.error() is not None:
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            todo.discard(m.partition())
                        continue
                    p.produce(topics.named(dst.topic_prefix, t), m.value(), m.key(), partition=m.partition())
                    p.poll(0)
                    n += 1
        finally:
            c.close()
    assert p.flush(30) == 0
    return n


def events(k: KafkaSettings, t: topics.Topic) -> list[dict[str, Any]]:
    return [v for _, v in read_all(k, t) if v is not None]


def of_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["envelope"]["event_type"] == kind]


def tables(k: KafkaSettings) -> dict[str, dict[str, Any]]:
    """Public topics by event id (asserting each id once), compacted KPI topics by key (the
    last value, without its envelope: the as-of time of a figure may differ between runs)."""
    out: dict[str, dict[str, Any]] = {}
    for t in PUBLIC:
        recs = events(k, t)
        ids = Counter(r["envelope"]["event_id"] for r in recs)
        assert not ids or max(ids.values()) == 1, f"{t.name} repeats {[i for i, n in ids.items() if n > 1][:3]}"
        out[t.name] = {r["envelope"]["event_id"]: json.dumps(r, sort_keys=True) for r in recs}
    for t in COMPACTED:
        last: dict[str, Any] = {}
        for key, v in read_all(k, t):
            last[(key or b"").decode()] = None if v is None else json.dumps(
                {f: x for f, x in v.items() if f != "envelope"}, sort_keys=True)
        out[t.name] = last
    return out


def diff(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per topic: ids/keys in one only, and ids/keys whose content differs."""
    out = {}
    for name in a:
        only = sorted(a[name].keys() ^ b[name].keys())
        changed = sorted(x for x in a[name].keys() & b[name].keys() if a[name][x] != b[name][x])
        if only or changed:
            out[name] = {"only": only[:3], "n_only": len(only), "changed": changed[:3], "n_changed": len(changed)}
    return out


def wait_until(cond: Callable[[], object], timeout: float, every: float = 0.5) -> bool:
    """``tests.waiting.wait_until`` at a slower pace: these conditions read whole topics."""
    return waiting.wait_until(cond, timeout, every)


def idle(k: KafkaSettings, app_id: str) -> Callable[[], bool]:
    """True once every task of the workers ``app_id`` has published an idle watermark: its
    inputs read to their end and quiet for ``idle_ms``. A task's mark goes out with the
    transaction after the one holding the outputs it covers, so by then all of them (the last
    KPI figures too) are committed."""
    name = Names(k.topic_prefix, app_id).watermarks()

    def check() -> bool:
        marks = dict(read_all(k, name=name))  # task id -> its latest mark
        return bool(marks) and all(m is not None and m["idle"] for m in marks.values())
    return check


@contextlib.contextmanager
def running(settings: WorkerSettings, stages: list[Stage]) -> Iterator[Worker]:
    """A worker in a thread of this process, stopped (and its last transaction committed) at
    the end of the block."""
    worker = Worker(settings, stages)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as e:  # noqa: BLE001 - reported to the test below
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)
        if errors:
            raise errors[0]


def settled(k: KafkaSettings, want_messages: set[str], *, extra: Callable[[list[dict]], bool] | None = None
            ) -> Callable[[], bool]:
    """True once every message in ``want_messages`` is enriched on parley.conversations."""
    def check() -> bool:
        conv = events(k, topics.CONVERSATIONS)
        done = {e["message_event_id"] for e in of_type(conv, "MessageEnriched")}
        return done >= want_messages and (extra is None or extra(conv))
    return check
