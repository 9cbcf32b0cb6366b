"""The KPI stage: a tenant's interval and agent figures from its threads' measures.

Consumes ``kpi.threads`` (key tenant): each changed thread's measure (episodes, assignment spans,
    message counters, latest time; JSON, from the conversations stage, where the thread's events
    are) and agent presence (AgentStatusChanged, from the presence forwarder). Applied as they
    come: the engine is order-insensitive and a measure replaces the thread's last one.
Produces, once per transaction, what changed (``KpiEngine.flush``; an interval still open at
    most once per second of event time while its tenant's records flow, at once when they stop):
    ``ContactMeasured`` -> ``parley.kpi.contacts`` (key tenant|contact, compacted);
    ``IntervalStat`` / ``AgentIntervalStat`` -> ``parley.kpi.intervals`` (key
    tenant|interval|dimension|value, compacted).
Key: tenant. Interval figures span a tenant's threads and agents (team concurrency,
    percentiles); the input is one record per changed thread per transaction, not per message.
State: the engine's stores (``streams.kpi.engine``): threads (last measure), buckets, agents,
    pieces, tenants, members; written in the same transaction as the figures and the offsets, so a
    crash neither loses nor doubles a count.
Replay-safe: output ids derive from key, as-of time and content.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, cast

from schemas import topics
from streams.kpi.engine import KpiEngine
from streams.kpi.state import CODECS, Measure, Stores
from streams.runtime.stage import Input, Stage, StoreSpec
from streams.runtime.task import Task

TABLES = ("threads", "buckets", "agents", "pieces", "tenants", "members")
OUTPUTS = {"ContactMeasured": topics.KPI_CONTACTS, "IntervalStat": topics.KPI_INTERVALS,
           "AgentIntervalStat": topics.KPI_INTERVALS}


class KpiStage(Stage):
    name = "kpi"
    inputs = (Input(topics.KPI_THREADS, sequenced=False),)
    outputs = (topics.KPI_CONTACTS, topics.KPI_INTERVALS)
    stores = tuple(StoreSpec(name, *CODECS[name]) for name in TABLES)

    def process(self, ctx: Task, event: dict[str, Any]) -> None:
        engine = _engine(ctx)
        ctx.cache["fed"] = True
        if event.get("type") == "ThreadMeasured":
            engine.apply_measure(event["tenant"], event["thread"], Measure.from_json(event["m"]),
                                 tuple(event["cause"]))
        else:
            engine.apply(event)  # AgentStatusChanged

    def end_batch(self, ctx: Task) -> None:
        engine = ctx.cache.get("engine")
        if engine is None:
            return
        # while records keep coming, open intervals are recomputed once per REFRESH_MS of event
        # time; a turn that brought none flushes everything (``KpiEngine.flush``)
        fed = ctx.cache.pop("fed", False)
        for rec in engine.flush(defer=fed):
            ctx.send(OUTPUTS[rec["envelope"]["event_type"]], rec)


def _engine(ctx: Task) -> KpiEngine:
    engine = ctx.cache.get("engine")
    if engine is None:
        # a Store is a mutable mapping by its methods, not by inheritance (no ABC on the hot path)
        stores = (cast(MutableMapping[str, Any], ctx.store(name)) for name in TABLES)
        engine = ctx.cache["engine"] = KpiEngine(Stores(*stores))
    return engine
