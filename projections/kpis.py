"""kpis: KPI tables per interval, channel, queue and agent, and the agents' current presence.

Consumes: parley.kpi.contacts (ContactMeasured), parley.kpi.intervals (IntervalStat,
AgentIntervalStat), parley.agents.status (AgentStatusChanged).
Tables: ``kpi_contacts`` (tenant_id, contact_id), ``kpi_intervals`` (tenant_id, interval_start,
dimension, dimension_value), ``kpi_agent_intervals`` (tenant_id, agent_id, interval_start),
``agents`` (tenant_id, agent_id).
Idempotency: each KPI event is the latest measure of its key and replaces the row (an empty
measure deletes it, as ``streams.kpi`` emits one for a key that no longer has data), so applying
one twice changes nothing and no event ids are recorded. Every update of one key travels on one
partition (the KPI topics are keyed by it), so "latest" is Kafka's order, the same in a live
run and a rebuild; event time is not used to pick it, because a late event makes a newer measure
with an older event time. Fields added to the KPI schemas later land in ``extra`` (JSON).
Replay-safe.
"""

from __future__ import annotations

from typing import Any

from projections.engine import Event, Key, Projection, Row, Table
from schemas import topics

_COMMON = ("definition_version", "extra", "event_id", "updated_at")

CONTACTS = Table(
    "kpi_contacts", ("tenant_id", "contact_id"),
    ("tenant_id", "contact_id", "thread_id", "customer_id", "channel", "queue", "agent_id",
     "interval_start", "started_at", "first_human_reply_at", "first_reply_at", "resolved_at",
     "frt_ms", "first_reply_ms", "resolution_ms", "status", "short_abandon", "reply_gap_count",
     "reply_gap_total_ms", "reply_gap_max_ms", "last_customer_sentiment", *_COMMON),
    json_columns=frozenset({"extra"}),
    defaults={"extra": {}, "short_abandon": 0, "reply_gap_count": 0, "reply_gap_total_ms": 0,
              "reply_gap_max_ms": 0},
)
INTERVALS = Table(
    "kpi_intervals", ("tenant_id", "interval_start", "dimension", "dimension_value"),
    ("tenant_id", "interval_start", "dimension", "dimension_value", "metrics", *_COMMON),
    json_columns=frozenset({"metrics", "extra"}),
    defaults={"metrics": {}, "extra": {}},
)
AGENT_INTERVALS = Table(
    "kpi_agent_intervals", ("tenant_id", "agent_id", "interval_start"),
    ("tenant_id", "agent_id", "interval_start", "online_ms", "open_conversation_ms", "idle_ms",
     "peak_concurrency", "concurrency", "time_at_level_ms", *_COMMON),
    json_columns=frozenset({"time_at_level_ms", "extra"}),
    defaults={"time_at_level_ms": {}, "extra": {}, "online_ms": 0, "open_conversation_ms": 0,
              "idle_ms": 0, "peak_concurrency": 0},
)
AGENTS = Table(
    "agents", ("tenant_id", "agent_id"),
    ("tenant_id", "agent_id", "display_name", "presence", "capacity", "skills", "languages",
     "channels", "queues", "presence_at", "event_id"),
    json_columns=frozenset({"skills", "languages", "channels", "queues"}),
    defaults={"skills": [], "languages": [], "channels": [], "queues": []},
)


def route(event: Event) -> list[tuple[Table, Key]]:
    """The row an event replaces (pure)."""
    t, tenant = event["envelope"]["event_type"], event["envelope"]["tenant_id"]
    if t == "ContactMeasured":
        return [(CONTACTS, (tenant, event["contact_id"]))]
    if t == "IntervalStat":
        return [(INTERVALS, (tenant, event["interval_start"], event["dimension"],
                             event["dimension_value"]))]
    if t == "AgentIntervalStat":
        return [(AGENT_INTERVALS, (tenant, event["agent_id"], event["interval_start"]))]
    if t == "AgentStatusChanged":
        return [(AGENTS, (tenant, event["agent_id"]))]
    return []


def apply(table: Table, row: Row, event: Event) -> Row | None:
    """The row ``event`` measures: its fields replace the stored ones. An empty measure (a
    contact superseded by a late event: status ``void``; an interval with no metrics; an agent
    interval with no online time) deletes the row, as the KPI processor means it to."""
    if table is AGENTS:
        return apply_agent(row, event)
    if is_empty(event):
        return None
    out = _replace(table, row, event)
    if table is AGENT_INTERVALS:
        online = out["online_ms"] or 0
        out["concurrency"] = out["open_conversation_ms"] / online if online else None
        out["time_at_level_ms"] = {str(k): v for k, v in out["time_at_level_ms"].items()}
    if table is CONTACTS:
        out["short_abandon"] = int(bool(out["short_abandon"]))
        out["first_reply_ms"] = _since_start(out, "first_reply_at")
        out["resolution_ms"] = _since_start(out, "resolved_at")
    return out


def _since_start(row: Row, field: str) -> int | None:
    """Derived durations the contact event leaves out (it carries the instants)."""
    return None if row.get(field) is None else row[field] - row["started_at"]


def is_empty(event: Event) -> bool:
    t = event["envelope"]["event_type"]
    if t == "ContactMeasured":
        status: str = event["status"]
        return status == "void"
    if t == "IntervalStat":
        return not event["metrics"]
    return t == "AgentIntervalStat" and not event["online_ms"]


def _replace(table: Table, row: Row, event: Event) -> Row:
    env = event["envelope"]
    out = table.blank(table.key_of(row))
    extra: dict[str, Any] = {}
    for name, value in event.items():
        if name == "envelope" or name in table.key:
            continue
        if name in out and name not in _COMMON:
            out[name] = value
        elif name == "definition_version":
            out[name] = value
        else:
            extra[name] = value
    out.update(extra=extra, event_id=env["event_id"], updated_at=env["occurred_at"])
    return out


def apply_agent(row: Row, event: Event) -> Row:
    """An agent's presence, capacity and skills as last announced (the topic is per tenant)."""
    return {
        **row, "display_name": event.get("display_name") or row["display_name"],
        "presence": event["presence"], "capacity": event["capacity"],
        "skills": sorted(event["skills"]), "languages": sorted(event["languages"]),
        "channels": sorted(event["channels"]), "queues": sorted(event["queues"]),
        "presence_at": event["envelope"]["occurred_at"], "event_id": event["envelope"]["event_id"],
    }


PROJECTION = Projection(
    name="kpis",
    reads=(
        (topics.KPI_CONTACTS, frozenset({"ContactMeasured"})),
        (topics.KPI_INTERVALS, frozenset({"IntervalStat", "AgentIntervalStat"})),
        (topics.AGENT_STATUS, frozenset({"AgentStatusChanged"})),
    ),
    tables=(CONTACTS, INTERVALS, AGENT_INTERVALS, AGENTS),
    route=route,
    apply=apply,
    dedup=False,
)
