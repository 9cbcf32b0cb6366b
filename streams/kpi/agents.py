"""Faust wiring of the KPI processor: repartition by tenant, measure, publish.

Consumes ``parley.conversations`` (key tenant|customer) and ``parley.agents.status`` (key tenant);
both are forwarded unchanged (raw bytes) to ``parley.kpi.input`` keyed by tenant, so one tenant's
whole KPI input is one ordered-enough stream in one partition, and the tables below are
partitioned like it. The measuring agent decodes each record, applies it to a ``KpiEngine``
whose ``Stores`` are Faust tables (in memory by default, the app's store: ``memory://`` or
``rocksdb://``; changelogged), and publishes what ``flush`` returns:

* ``ContactMeasured`` -> ``parley.kpi.contacts``, key ``tenant|contact_id`` (compacted);
* ``IntervalStat`` -> ``parley.kpi.intervals``, key ``tenant|interval|dimension|value``;
* ``AgentIntervalStat`` -> ``parley.kpi.intervals``, key ``tenant|interval|agent_status|agent``.

Flushes happen every ``FLUSH_EVERY`` marks and on a timer, so a figure lags its input by about
``FLUSH_INTERVAL_S``; the timer is the only processing-time element and it decides *when* figures
are published, never *what* they are. Idempotent: a repeated event id changes no table (see
``engine``). Replay-safe: output ids derive from key, as-of time and content. Undecodable input
goes to ``parley.deadletter`` (stage ``kpi``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from parley import logs
from parley.settings import WorkerSettings
from schemas import topics
from schemas.codec import Codec, DecodeError
from schemas.events import derive_id, envelope, make
from streams.kpi.engine import KpiEngine, Stores

FLUSH_EVERY = 2000
FLUSH_INTERVAL_S = 1.0
TABLES = ("threads", "buckets", "agents", "pieces", "tenants")

log = logs.get("streams.kpi")


@dataclass
class KpiProcessor:
    """What ``register`` declared, for tests and the benchmark."""

    engine: KpiEngine
    tables: dict[str, Any]
    agents: dict[str, Any]
    input_topic: Any


def register(app: faust.App, settings: WorkerSettings) -> KpiProcessor:
    """Declare the KPI topics, tables, agents and flush timer on ``app``."""
    prefix = settings.kafka.topic_prefix
    codec = Codec()

    def topic(t: topics.Topic) -> Any:
        return app.topic(topics.named(prefix, t), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    conversations, status = topic(topics.CONVERSATIONS), topic(topics.AGENT_STATUS)
    kpi_input = topic(topics.KPI_INPUT)
    outputs = {"ContactMeasured": topic(topics.KPI_CONTACTS),
               "IntervalStat": topic(topics.KPI_INTERVALS),
               "AgentIntervalStat": topic(topics.KPI_INTERVALS)}
    dead = topic(topics.DEAD_LETTER)
    tables = {name: app.Table(f"kpi-{name}", default=None,
                              partitions=topics.KPI_INPUT.partitions,  # JSON keys and values
                              help=f"KPI state: {name} (see streams.kpi.engine)")
              for name in TABLES}
    engine = KpiEngine(Stores(**tables))

    async def forward(stream: Any) -> None:
        async for event in stream.events():
            await kpi_input.send(key=_tenant_of(event.key, event.value, codec),
                                 value=event.value)

    async def publish(records: list[dict[str, Any]]) -> None:
        for rec in records:
            out = outputs[rec["envelope"]["event_type"]]
            await out.send(key=rec["envelope"]["partition_key"].encode(),
                           value=codec.encode(rec, out.get_topic_name()))

    async def measure(stream: Any) -> None:
        async for event in stream.events():
            try:
                record = codec.decode(event.value)
            except DecodeError as e:
                await _dead_letter(dead, codec, event, str(e))
                continue
            engine.apply(record)
            if engine.pending >= FLUSH_EVERY:
                await publish(engine.flush())

    async def flush_timer() -> None:
        records = engine.flush()
        if records:
            log.debug("kpi.flushed", records=len(records))
            await publish(records)

    agents = {
        "forward_conversations": app.agent(conversations, name="kpi-forward-conversations")(forward),
        "forward_status": app.agent(status, name="kpi-forward-status")(forward),
        "measure": app.agent(kpi_input, name="kpi-measure")(measure),
    }
    app.timer(FLUSH_INTERVAL_S, name="kpi-flush")(flush_timer)
    return KpiProcessor(engine, tables, agents, kpi_input)


def _tenant_of(key: bytes | None, value: bytes, codec: Codec) -> bytes:
    """The tenant: the first part of the key (tenant|...), else read from the event."""
    if key:
        return key.split(b"|", 1)[0]
    try:
        return codec.decode(value)["envelope"]["tenant_id"].encode()
    except DecodeError:
        return b""


async def _dead_letter(dead: Any, codec: Codec, event: Any, error: str) -> None:
    msg = event.message
    log.warning("kpi.undecodable", topic=msg.topic, partition=msg.partition, offset=msg.offset,
                error=error)
    env = envelope("DeadLetter", event_id=derive_id("kpi", msg.topic, msg.partition, msg.offset),
                   occurred_at=msg.timestamp and int(msg.timestamp * 1000) or 0, tenant_id="",
                   partition_key="kpi", producer="streams/kpi")
    rec = make("DeadLetter", env, stage="kpi", reason="undecodable", error=error,
               payload=bytes(event.value or b""), source_topic=msg.topic,
               source_partition=msg.partition, source_offset=msg.offset)
    await dead.send(key=b"kpi", value=codec.encode(rec, dead.get_topic_name()))
