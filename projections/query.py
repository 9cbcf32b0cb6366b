"""Read functions over the projections, shared by ``parley kpi`` and ``parley api``.

Every function takes a ``Store`` and returns plain dicts and lists (JSON-ready). Times are epoch
milliseconds UTC in event time; ``parse_time`` reads what people type (ISO dates or times, or
epoch ms). KPI filters select contacts by the interval they were offered in, as KPIS.md says.

Service level from contact measures follows KPIS.md: answered within T ÷ (answered within T +
answered after T + still waiting longer than T); short abandons and contacts waiting less than T
are left out. "Still waiting" is judged at ``as_of``: the latest event time in the KPI tables,
never the wall clock, so the same log always gives the same figures.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from projections import customers as cust_p
from projections import kpis as kpi_p
from projections import threads as thr_p
from projections.engine import Table
from projections.store import Store

INTERVAL_MS = 15 * 60 * 1000
SL_TARGET = {300: 0.90, 20: 0.80}  # 90/300, and the call-centre 80/20 beside it
FRT_BUCKETS_S = (30, 60, 120, 300, 600, 1800, 3600)


# -- inputs ------------------------------------------------------------------------------------
def parse_time(text: str | int | None) -> int | None:
    """Epoch ms from ``1767225600000``, ``2026-01-01``, ``2026-01-01T08:30`` (UTC if no zone)."""
    if text is None or text == "":
        return None
    if isinstance(text, int) or str(text).lstrip("-").isdigit():
        return int(text)
    s = str(text).strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        dt = datetime.combine(date.fromisoformat(s), datetime.min.time())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class KpiFilter:
    """Which KPI rows: offered interval in [start, end), and optional tenant/channel/queue/agent."""

    start: int | None = None
    end: int | None = None
    tenant: str | None = None
    channel: str | None = None
    queue: str | None = None
    agent: str | None = None

    @classmethod
    def of(cls, start: Any = None, end: Any = None, **kw: Any) -> KpiFilter:
        return cls(parse_time(start), parse_time(end), **{k: v or None for k, v in kw.items()})

    def where(self, time_col: str = "interval_start", *, contacts: bool = True) -> tuple[str, list]:
        parts, args = ["1 = 1"], []
        for cond, val in ((f"{time_col} >= ?", self.start), (f"{time_col} < ?", self.end),
                          ("tenant_id = ?", self.tenant)):
            if val is not None:
                parts.append(cond)
                args.append(val)
        if contacts:
            for col, val in (("channel", self.channel), ("queue", self.queue), ("agent_id", self.agent)):
                if val is not None:
                    parts.append(f"{col} = ?")
                    args.append(val)
        return " AND ".join(parts), args

    def dimension(self) -> tuple[str, str | None] | None:
        """The one IntervalStat dimension matching this filter, or None when several are set."""
        dims = [(d, v) for d, v in (("channel", self.channel), ("queue", self.queue),
                                    ("agent", self.agent)) if v]
        if len(dims) > 1:
            return None
        return dims[0] if dims else ("overall", None)


def _decode(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        r = dict(r)
        for c in table.json_columns & r.keys():
            if isinstance(r[c], str):
                r[c] = json.loads(r[c])
        out.append(r)
    return out


# -- customers ---------------------------------------------------------------------------------
def list_customers(store: Store, *, tenant: str | None = None, q: str | None = None,
                   limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Customers, most recent contact first; ``q`` matches name or customer id."""
    where, args = ["merged_into IS NULL"], []
    if tenant:
        where.append("tenant_id = ?")
        args.append(tenant)
    if q:
        where.append("(LOWER(name) LIKE ? OR customer_id LIKE ?)")
        args += [f"%{q.lower()}%", f"%{q}%"]
    rows = store.query(
        f"SELECT * FROM customers WHERE {' AND '.join(where)} "
        "ORDER BY last_contact_at DESC NULLS LAST, customer_id LIMIT ? OFFSET ?",
        [*args, limit, offset])
    return [_profile_row(r) for r in _decode(cust_p.CUSTOMERS, rows)]


def customer_profile(store: Store, tenant: str, customer_id: str) -> dict[str, Any] | None:
    """The unified profile: row, identities per channel (merged customers' too), threads."""
    rows = _decode(cust_p.CUSTOMERS, store.query(
        "SELECT * FROM customers WHERE tenant_id = ? AND customer_id = ?", (tenant, customer_id)))
    if not rows:
        return None
    profile = _profile_row(rows[0])
    merged = [r["customer_id"] for r in store.query(
        "SELECT customer_id FROM customers WHERE tenant_id = ? AND merged_into = ? ORDER BY customer_id",
        (tenant, customer_id))]
    ids = [customer_id, *merged]
    marks = ", ".join("?" for _ in ids)
    idents = store.query(
        f"SELECT identity_key, customer_id, kind, channel, value, display_name, signal, linked_at, "
        f"first_seen_at, last_seen_at FROM customer_identities WHERE tenant_id = ? "
        f"AND customer_id IN ({marks}) ORDER BY kind, channel, value", (tenant, *ids))
    per_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in idents:
        per_channel[i["channel"] or i["kind"]].append(i)
    profile["merged_customers"] = merged
    profile["identities"] = dict(per_channel)
    profile["threads"] = list_threads(store, tenant=tenant, customer_ids=ids, limit=500)
    return profile


def _profile_row(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r.pop("versions", None)
    r["attributes"] = {k: v["value"] for k, v in (r.get("attributes") or {}).items()}
    r["first_contact"], r["last_contact"] = iso(r["first_contact_at"]), iso(r["last_contact_at"])
    return r


# -- threads -----------------------------------------------------------------------------------
def list_threads(store: Store, *, tenant: str | None = None, customer_ids: list[str] | None = None,
                 status: str | None = None, queue: str | None = None, assignee: str | None = None,
                 limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Threads, most recent message first."""
    where, args = ["1 = 1"], []
    for col, val in (("tenant_id", tenant), ("status", status), ("queue", queue), ("assignee", assignee)):
        if val:
            where.append(f"{col} = ?")
            args.append(val)
    if customer_ids:
        where.append(f"customer_id IN ({', '.join('?' for _ in customer_ids)})")
        args += customer_ids
    rows = store.query(
        f"SELECT * FROM threads WHERE {' AND '.join(where)} "
        "ORDER BY last_message_at DESC NULLS LAST, thread_id LIMIT ? OFFSET ?", [*args, limit, offset])
    out = _decode(thr_p.THREADS, rows)
    for r in out:
        r.pop("versions", None)
    return out


def thread_detail(store: Store, tenant: str, thread_id: str) -> dict[str, Any] | None:
    """A thread and every message of it in event-time order, across channels."""
    threads = _decode(thr_p.THREADS, store.query(
        "SELECT * FROM threads WHERE tenant_id = ? AND thread_id = ?", (tenant, thread_id)))
    if not threads:
        return None
    t = threads[0]
    t.pop("versions", None)
    msgs = store.query(
        "SELECT * FROM thread_messages WHERE tenant_id = ? AND thread_id = ? "
        "ORDER BY occurred_at, event_id", (tenant, thread_id))
    for m in msgs:
        for c in ("attachments", "rich", "intents"):
            if isinstance(m.get(c), str):
                m[c] = json.loads(m[c])
        m["occurred"] = iso(m["occurred_at"])
    t["messages"] = msgs
    return t


# -- KPI rows ----------------------------------------------------------------------------------
def kpi_contacts(store: Store, f: KpiFilter, limit: int = 10_000) -> list[dict[str, Any]]:
    where, args = f.where()
    rows = store.query(f"SELECT * FROM kpi_contacts WHERE {where} "
                       "ORDER BY interval_start, started_at, contact_id LIMIT ?", [*args, limit])
    return _decode(kpi_p.CONTACTS, rows)


def kpi_intervals(store: Store, f: KpiFilter, dimension: str | None = None,
                  value: str | None = None) -> list[dict[str, Any]]:
    """IntervalStat rows; by default the dimension the filter points at (overall if none)."""
    if dimension is None:
        dim = f.dimension() or ("overall", None)
        dimension, value = dim[0], value or dim[1]
    where, args = f.where(contacts=False)
    where += " AND dimension = ?"
    args.append(dimension)
    if value:
        where += " AND dimension_value = ?"
        args.append(value)
    rows = _decode(kpi_p.INTERVALS, store.query(
        f"SELECT * FROM kpi_intervals WHERE {where} ORDER BY interval_start, dimension_value", args))
    for r in rows:
        r["interval"] = iso(r["interval_start"])
        m = r["metrics"]
        for t in SL_TARGET:
            sl, met = m.get(f"sl_{t}"), m.get(f"sl_{t}_met")  # the processor's exact verdict
            r[f"sl_{t}"] = sl
            r[f"met_{t}"] = bool(met) if met is not None else None if sl is None else sl >= SL_TARGET[t]
    return rows


def kpi_agents(store: Store, f: KpiFilter) -> list[dict[str, Any]]:
    """Per agent over the period: online, idle, time-weighted concurrency, peak, levels."""
    where, args = f.where(contacts=False)
    if f.agent:
        where += " AND agent_id = ?"
        args.append(f.agent)
    rows = _decode(kpi_p.AGENT_INTERVALS, store.query(
        f"SELECT * FROM kpi_agent_intervals WHERE {where} ORDER BY agent_id, interval_start", args))
    per: dict[str, dict[str, Any]] = {}
    for r in rows:
        a = per.setdefault(r["agent_id"], {"agent_id": r["agent_id"], "intervals": 0, "online_ms": 0,
                                           "open_conversation_ms": 0, "idle_ms": 0,
                                           "peak_concurrency": 0, "time_at_level_ms": Counter()})
        a["intervals"] += 1
        for k in ("online_ms", "open_conversation_ms", "idle_ms"):
            a[k] += r[k] or 0
        a["peak_concurrency"] = max(a["peak_concurrency"], r["peak_concurrency"] or 0)
        a["time_at_level_ms"].update({str(k): v for k, v in r["time_at_level_ms"].items()})
    out = []
    for a in per.values():
        a["concurrency"] = a["open_conversation_ms"] / a["online_ms"] if a["online_ms"] else None
        a["time_at_level_ms"] = dict(sorted(a["time_at_level_ms"].items(), key=lambda kv: int(kv[0])
                                            if kv[0].lstrip("-").isdigit() else 0))
        out.append(a)
    return out


def as_of(store: Store, tenant: str | None = None) -> int | None:
    """The latest event time the KPI tables have seen (the 'now' of every waiting contact).

    The KPI processor stamps its records with its watermark, so this is the watermark it had.
    """
    where, args = ("WHERE tenant_id = ?", [tenant]) if tenant else ("", [])
    times = [r["t"] for t in ("kpi_contacts", "kpi_intervals", "kpi_agent_intervals")
             for r in store.query(f"SELECT MAX(updated_at) AS t FROM {t} {where}", args)
             if r["t"] is not None]
    return max(times) if times else None


# -- figures from contact measures ----------------------------------------------------------------
def service_level(contacts: list[dict[str, Any]], t_s: int, now: int | None) -> dict[str, Any]:
    """SL(T) over contact measures, per KPIS.md (see the module docstring)."""
    t_ms, within = t_s * 1000, 0
    after = waiting_over = excluded = 0
    for c in contacts:
        if c["short_abandon"]:
            excluded += 1
        elif c["first_human_reply_at"] is not None:
            frt = c["frt_ms"] if c["frt_ms"] is not None else c["first_human_reply_at"] - c["started_at"]
            within, after = (within + 1, after) if frt <= t_ms else (within, after + 1)
        elif ((c["resolved_at"] or now or c["started_at"]) - c["started_at"]) > t_ms:
            waiting_over += 1
        else:
            excluded += 1  # still pending (or gone) within T: not counted
    denom = within + after + waiting_over
    sl = within / denom if denom else None
    pct = round(SL_TARGET[t_s] * 100) if t_s in SL_TARGET else None
    return {"t_s": t_s, "sl": sl, "target": SL_TARGET.get(t_s),
            "met": None if sl is None or pct is None else 100 * within >= pct * denom,  # exact
            "within": within, "after": after, "waiting_over": waiting_over, "excluded": excluded}


def contact_figures(contacts: list[dict[str, Any]], now: int | None) -> dict[str, Any]:
    """Offered, answered, resolved, SL(300) and SL(20), FRT mean/p50/p90, reply gaps, sentiment."""
    frts = sorted(c["frt_ms"] for c in contacts if c["frt_ms"] is not None)
    gaps = sum(c["reply_gap_count"] or 0 for c in contacts)
    neg = sum(1 for c in contacts if c["last_customer_sentiment"] == "negative")
    return {
        "offered": len(contacts),
        "answered": sum(1 for c in contacts if c["first_human_reply_at"] is not None),
        "resolved": sum(1 for c in contacts if c["resolved_at"] is not None),
        "sl_300": service_level(contacts, 300, now), "sl_20": service_level(contacts, 20, now),
        "frt_mean_ms": sum(frts) / len(frts) if frts else None,
        "frt_p50_ms": _pct(frts, 0.5), "frt_p90_ms": _pct(frts, 0.9),
        "reply_gap_mean_ms": (sum(c["reply_gap_total_ms"] or 0 for c in contacts) / gaps) if gaps else None,
        "negative_share": neg / len(contacts) if contacts else None,
    }


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def kpi_summary(store: Store, f: KpiFilter) -> dict[str, Any]:
    """The period's figures overall and per channel (recomputed from contact measures)."""
    contacts = kpi_contacts(store, f, limit=1_000_000)
    now = as_of(store, f.tenant)
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in contacts:
        by_channel[c["channel"] or "?"].append(c)
    return {"as_of": now, "as_of_utc": iso(now), "filter": _filter_dict(f),
            "overall": contact_figures(contacts, now),
            "channels": {ch: contact_figures(cs, now) for ch, cs in sorted(by_channel.items())}}


def _filter_dict(f: KpiFilter) -> dict[str, Any]:
    d = dict(f.__dict__)
    d["from_utc"], d["to_utc"] = iso(f.start), iso(f.end)
    return d


# -- the dashboard's data -----------------------------------------------------------------------
def dashboard(store: Store, f: KpiFilter) -> dict[str, Any]:
    """Everything the dashboard draws, in one response."""
    contacts = kpi_contacts(store, f, limit=1_000_000)
    now = as_of(store, f.tenant)
    return {
        "as_of": now, "as_of_utc": iso(now), "filter": _filter_dict(f),
        "targets": {"sl_300": SL_TARGET[300], "sl_20": SL_TARGET[20]},
        "summary": contact_figures(contacts, now),
        "sl_by_interval": sl_by_interval(store, f, contacts, now),
        "frt_histogram": frt_histogram(contacts),
        "concurrency_by_agent": [
            {k: a[k] for k in ("agent_id", "concurrency", "peak_concurrency", "online_ms", "idle_ms")}
            for a in kpi_agents(store, f)],
        "volumes_by_channel": volumes_by_channel(store, f, contacts),
        "sentiment_by_interval": sentiment_by_interval(store, f),
        "choices": choices(store, f.tenant),
    }


def sl_by_interval(store: Store, f: KpiFilter, contacts: list[dict[str, Any]],
                   now: int | None) -> dict[str, Any]:
    """SL(300) and SL(20) per interval: the streaming IntervalStat figures where the filter is
    one dimension and they exist, else recomputed from the contact measures."""
    dim = f.dimension()
    rows = kpi_intervals(store, f) if dim else []
    if any(r["sl_300"] is not None for r in rows):  # intervals without contacts have none: gaps
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
                       "sl_300": service_level(cs, 300, now)["sl"],
                       "sl_20": service_level(cs, 20, now)["sl"], "offered": len(cs)})
    return {"source": "kpi_contacts", "points": points}


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


def volumes_by_channel(store: Store, f: KpiFilter, contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contacts offered/answered/resolved and messages in/out per channel over the period."""
    per: dict[str, dict[str, int]] = defaultdict(lambda: Counter())  # type: ignore[arg-type]
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


def choices(store: Store, tenant: str | None = None) -> dict[str, list[str]]:
    """The channels, queues and agents known to the KPI tables (for filter menus)."""
    where, args = ("WHERE tenant_id = ?", [tenant]) if tenant else ("", [])
    out = {}
    for key, col in (("channels", "channel"), ("queues", "queue"), ("agents", "agent_id")):
        rows = store.query(f"SELECT DISTINCT {col} AS v FROM kpi_contacts {where} ORDER BY {col}", args)
        out[key] = [r["v"] for r in rows if r["v"] is not None]
    out["tenants"] = [r["v"] for r in store.query("SELECT DISTINCT tenant_id AS v FROM kpi_contacts ORDER BY v")]
    return out
