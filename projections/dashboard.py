"""The dashboard's data: everything ``/dashboard`` draws, in one JSON response (``/api/dashboard``).

Reads the projection tables through ``projections.query`` and computes every figure with
``streams.kpi.arithmetic`` (the KPI processor's own arithmetic), so the tiles, tables and charts
show the same numbers as ``parley kpi`` and ``/api/kpi/summary``. Pure reads, no writes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from projections import query
from projections.query import KpiFilter, iso
from projections.store import Store
from streams.kpi import arithmetic as ar
from streams.kpi.arithmetic import INTERVAL_MS

FRT_BUCKETS_S = (30, 60, 120, 300, 600, 1800, 3600)


def build(store: Store, f: KpiFilter) -> dict[str, Any]:
    """Everything the dashboard draws (see the module docstring)."""
    contacts = query.kpi_contacts(store, f, limit=1_000_000)
    now = query.as_of_by_tenant(store, f.tenant)
    top = max(now.values(), default=None)
    figures = query.period_figures(store, f, contacts, now)
    agents = agent_table(store, f, contacts)
    return {
        "as_of": top, "as_of_utc": iso(top), "filter": query.filter_dict(f),
        "targets": {"sl_300": query.SL_TARGET[300], "sl_20": query.SL_TARGET[20]},
        "summary": figures["overall"], "channels": figures["channels"],
        "team": team(agents),
        "agents": agents,
        "sl_by_interval": sl_by_interval(store, f, contacts, now),
        "waiting_by_interval": waiting_by_interval(contacts, now),
        "frt_histogram": frt_histogram(contacts),
        "volumes_by_channel": volumes_by_channel(store, f, contacts),
        "sentiment_by_interval": sentiment_by_interval(store, f),
        "choices": query.choices(store, f.tenant),
    }


# -- agents ------------------------------------------------------------------------------------
def agent_table(store: Store, f: KpiFilter, contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per agent: presence figures (online, idle, occupancy, concurrency, peak, time per level)
    and the contacts the agent answered first (count, FRT p50/p90)."""
    presence = {a["agent_id"]: a for a in query.kpi_agents(store, f)}
    frts: dict[str, list[int]] = defaultdict(list)
    for c in contacts:
        if c["agent_id"] and c["frt_ms"] is not None:
            frts[c["agent_id"]].append(c["frt_ms"])
    out = []
    for agent in sorted(set(presence) | set(frts)):
        row = presence.get(agent) or query.agent_figures(agent, [])
        out.append({**row, "answered": len(frts[agent]),
                    "frt_p50_ms": ar.percentile(frts[agent], 50),
                    "frt_p90_ms": ar.percentile(frts[agent], 90)})
    return out


def team(agents: list[dict[str, Any]]) -> dict[str, Any]:
    """The team over the period: concurrency weighted by online time, idle time, occupancy."""
    online = sum(a["online_ms"] for a in agents)
    open_ms = sum(a["open_conversation_ms"] for a in agents)
    idle = sum(a["idle_ms"] for a in agents)
    return {"agents": sum(1 for a in agents if a["online_ms"]), "online_ms": online,
            "open_conversation_ms": open_ms, "idle_ms": idle,
            "concurrency": ar.concurrency(open_ms, online), "occupancy": ar.occupancy(online, idle),
            "time_at_level_ms": ar.merge_levels(a["time_at_level_ms"] for a in agents)}


# -- contacts over time ------------------------------------------------------------------------
def sl_by_interval(store: Store, f: KpiFilter, contacts: list[dict[str, Any]],
                   now: query.Now) -> dict[str, Any]:
    """SL(300) and SL(20) per interval: the streaming IntervalStat figures where the filter is
    one dimension and they exist, else recomputed from the contact measures (same arithmetic)."""
    dim = f.dimension()
    rows = query.kpi_intervals(store, f) if dim else []
    if dim and any(r["sl_300"] is not None for r in rows):  # intervals without contacts have none: gaps
        points = [{"interval_start": r["interval_start"], "interval": r["interval"],
                   "sl_300": r["sl_300"], "sl_20": r["sl_20"],
                   "offered": r["metrics"].get("offered")} for r in rows]
        return {"source": f"kpi_intervals:{dim[0]}", "points": points}
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for c in contacts:
        groups[c["interval_start"]].append(c)
    points = []
    for start in sorted(groups):
        cs = groups[start]
        points.append({"interval_start": start, "interval": iso(start),
                       "sl_300": query.service_level(cs, 300, now)["sl"],
                       "sl_20": query.service_level(cs, 20, now)["sl"], "offered": len(cs)})
    return {"source": "kpi_contacts", "points": points}


def waiting_by_interval(contacts: list[dict[str, Any]], now: query.Now) -> list[dict[str, Any]]:
    """Contacts waiting for a first human reply, per 15-minute interval of the day: the
    time-weighted mean and the peak, overall and per queue (mean). A contact waits from its
    start to its first human reply, its end, or its tenant's as-of time if neither came yet."""
    pieces: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for c in contacts:
        lo, hi = c["started_at"], _wait_end(c, now)
        if hi is None or hi <= lo:
            continue
        for b in range(lo - lo % INTERVAL_MS, hi, INTERVAL_MS):
            pieces[b].append((max(lo, b), min(hi, b + INTERVAL_MS), c["queue"] or "?"))
    if not pieces:
        return []
    last = max(now.values(), default=None) if isinstance(now, Mapping) else now
    out = []
    for b in range(min(pieces), max(pieces) + INTERVAL_MS, INTERVAL_MS):
        span = [(b, min(b + INTERVAL_MS, last) if last and last > b else b + INTERVAL_MS)]
        length = span[0][1] - b  # the interval holding as-of is only counted up to it
        total = ar.level_profile(span, [(lo, hi) for lo, hi, _ in pieces[b]])
        queues: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for lo, hi, q in pieces[b]:
            queues[q].append((lo, hi))
        out.append({"interval_start": b, "interval": iso(b),
                    "mean": ar.concurrency(total["open_ms"], length), "peak": total["peak"],
                    "by_queue": {q: ar.concurrency(ar.level_profile(span, qs)["open_ms"], length)
                                 for q, qs in sorted(queues.items())}})
    return out


def _wait_end(c: dict[str, Any], now: query.Now) -> int | None:
    ends = [t for t in (c["first_human_reply_at"], c["resolved_at"]) if t is not None]
    if ends:
        return min(ends)
    return now.get(c.get("tenant_id") or "") if isinstance(now, Mapping) else now


def frt_histogram(contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contacts per first-response-time bucket (seconds), the last one open-ended."""
    edges = (0, *FRT_BUCKETS_S)
    counts = [0] * len(edges)
    for c in contacts:
        if c["frt_ms"] is None:
            continue
        s = c["frt_ms"] / 1000
        i = max(i for i, e in enumerate(edges) if s >= e) if s >= 0 else 0
        counts[i] += 1
    return [{"from_s": lo, "to_s": edges[i + 1] if i + 1 < len(edges) else None,
             "label": _bucket_label(lo, edges[i + 1] if i + 1 < len(edges) else None),
             "count": counts[i]} for i, lo in enumerate(edges)]


def _bucket_label(lo: int, hi: int | None) -> str:
    def fmt(s: int) -> str:
        return f"{s}s" if s < 60 else f"{s // 60}m" if s < 3600 else f"{s // 3600}h"
    return f"≥{fmt(lo)}" if hi is None else f"{fmt(lo)}–{fmt(hi)}"


# -- messages ----------------------------------------------------------------------------------
def volumes_by_channel(store: Store, f: KpiFilter, contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contacts offered/answered/resolved and messages in/out per channel over the period."""
    per: dict[str, Counter] = defaultdict(Counter)
    for c in contacts:
        v = per[c["channel"] or "?"]
        v["offered"] += 1
        v["answered"] += c["first_human_reply_at"] is not None
        v["resolved"] += c["resolved_at"] is not None
    where, args = replace(f, queue=None, agent=None).where("occurred_at")
    for r in store.query(f"SELECT channel, direction, COUNT(*) AS n FROM messages WHERE {where} "
                         "GROUP BY channel, direction", args):
        per[r["channel"]][f"messages_{r['direction']}"] += r["n"]
    keys = ("offered", "answered", "resolved", "messages_in", "messages_out")
    return [{"channel": ch, **{k: per[ch].get(k, 0) for k in keys}} for ch in sorted(per)]


def sentiment_by_interval(store: Store, f: KpiFilter) -> list[dict[str, Any]]:
    """Inbound message sentiment labels per 15-minute interval (event time)."""
    where, args = replace(f, queue=None, agent=None).where("occurred_at")
    rows = store.query(
        f"SELECT (occurred_at / {INTERVAL_MS}) * {INTERVAL_MS} AS interval_start, sentiment_label, "
        f"COUNT(*) AS n, AVG(sentiment_score) AS mean_score FROM message_enrichments WHERE {where} "
        "GROUP BY interval_start, sentiment_label ORDER BY interval_start", args)
    per: dict[int, dict[str, Any]] = {}
    for r in rows:
        p = per.setdefault(r["interval_start"], {"interval_start": r["interval_start"],
                                                  "interval": iso(r["interval_start"]),
                                                  "negative": 0, "neutral": 0, "positive": 0,
                                                  "_score": 0.0, "_n": 0})
        p[r["sentiment_label"] or "neutral"] = p.get(r["sentiment_label"] or "neutral", 0) + r["n"]
        p["_score"] += (r["mean_score"] or 0) * r["n"]
        p["_n"] += r["n"]
    out = []
    for p in per.values():
        n, score = p.pop("_n"), p.pop("_score")
        out.append({**p, "total": n, "mean_score": score / n if n else None})
    return out
