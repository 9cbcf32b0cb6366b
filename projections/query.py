"""Read functions over the projections, shared by ``parley kpi`` and ``parley api``.

Every function takes a ``Store`` and returns plain dicts and lists (JSON-ready). Times are epoch
milliseconds UTC in event time; ``parse_time`` reads what people type (ISO dates or times, or
epoch ms). KPI filters select contacts by the interval they were offered in, as KPIS.md says.

Every KPI figure is computed with ``streams.kpi.arithmetic``, the functions the KPI processor
uses (KPIS.md): nearest-rank percentiles; SL(T) = answered within T ÷ (answered within T +
answered after T + abandoned after 30 s + still waiting longer than T), short abandons and
contacts waiting at most T left out; bot containment per thread. "Still waiting" is judged at
each tenant's ``as_of``: the latest event time in its KPI tables (the processor's watermark),
never the wall clock, so the same log always gives the same figures.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from projections import customers as cust_p
from projections import kpis as kpi_p
from projections import threads as thr_p
from projections.engine import Table
from projections.store import Store
from streams.kpi import arithmetic as ar

# 90/300, and the call-centre 80/20 beside it, as shares
SL_TARGET = {t: pct / 100 for t, pct in ar.SL_TARGETS.items()}


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
        for c in ("attachments", "rich", "intents", "delivery_rendering"):
            if isinstance(m.get(c), str):
                m[c] = json.loads(m[c])
        m["occurred"] = iso(m["occurred_at"])
    t["messages"] = msgs
    return t


def delivery_summary(store: Store, f: KpiFilter) -> list[dict[str, Any]]:
    """Per channel: outbound messages by delivery status (the provider's receipt when there is
    one, else the egress's send status; ``unsent``: no delivery event yet) and the commonest
    failure codes, for the messages sent in the period (event time)."""
    where, args = f.where("occurred_at", contacts=False)
    if f.channel:
        where, args = f"{where} AND channel = ?", [*args, f.channel]
    rows = store.query(
        "SELECT channel, COALESCE(delivery_status, 'unsent') AS status, COUNT(*) AS n FROM thread_messages "
        f"WHERE direction = 'out' AND {where} GROUP BY channel, COALESCE(delivery_status, 'unsent') "
        "ORDER BY channel, status", args)
    codes = store.query(
        "SELECT channel, delivery_error_code AS code, COUNT(*) AS n FROM thread_messages "
        f"WHERE direction = 'out' AND delivery_status IN ('failed', 'undelivered') AND {where} "
        "GROUP BY channel, delivery_error_code ORDER BY channel, n DESC", args)
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = out.setdefault(r["channel"], {"channel": r["channel"], "total": 0, "statuses": {}, "failures": {}})
        c["statuses"][r["status"]] = int(r["n"])
        c["total"] += int(r["n"])
    for r in codes:
        out[r["channel"]]["failures"][r["code"] or "unknown"] = int(r["n"])
    return list(out.values())


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
    """Per agent over the period: online, idle, occupancy, time-weighted concurrency, peak, and
    the time at each level (0, 1, 2, ... open assigned conversations)."""
    where, args = f.where(contacts=False)
    if f.agent:
        where += " AND agent_id = ?"
        args.append(f.agent)
    rows = _decode(kpi_p.AGENT_INTERVALS, store.query(
        f"SELECT * FROM kpi_agent_intervals WHERE {where} ORDER BY agent_id, interval_start", args))
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per[r["agent_id"]].append(r)
    return [agent_figures(agent, rs) for agent, rs in per.items()]


def agent_figures(agent: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One agent's period from its agent-interval rows (the arithmetic of ``arithmetic``)."""
    online = sum(r["online_ms"] or 0 for r in rows)
    open_ms = sum(r["open_conversation_ms"] or 0 for r in rows)
    idle = sum(r["idle_ms"] or 0 for r in rows)
    return {"agent_id": agent, "intervals": len(rows), "online_ms": online,
            "open_conversation_ms": open_ms, "idle_ms": idle,
            "peak_concurrency": max((r["peak_concurrency"] or 0 for r in rows), default=0),
            "time_at_level_ms": ar.merge_levels(r["time_at_level_ms"] for r in rows),
            "concurrency": ar.concurrency(open_ms, online), "occupancy": ar.occupancy(online, idle)}


def as_of_by_tenant(store: Store, tenant: str | None = None) -> dict[str, int]:
    """Each tenant's latest event time in the KPI tables: the 'now' of its waiting contacts.

    The KPI processor stamps its records with its watermark, one per tenant, so this is the
    watermark it had.
    """
    where, args = ("WHERE tenant_id = ?", [tenant]) if tenant else ("", [])
    out: dict[str, int] = {}
    for t in ("kpi_contacts", "kpi_intervals", "kpi_agent_intervals"):
        for r in store.query(f"SELECT tenant_id, MAX(updated_at) AS t FROM {t} {where} "
                             "GROUP BY tenant_id", args):
            if r["t"] is not None:
                out[r["tenant_id"]] = max(out.get(r["tenant_id"], r["t"]), r["t"])
    return out


def as_of(store: Store, tenant: str | None = None) -> int | None:
    """The latest event time the KPI tables have seen (over the tenants)."""
    return max(as_of_by_tenant(store, tenant).values(), default=None)


# -- figures from contact measures ----------------------------------------------------------------
Now = int | Mapping[str, int] | None  # one as-of time, or one per tenant


def sl_class(c: Mapping[str, Any], t_s: int, now: Now) -> str:
    """A contact row's class for SL(T): ``streams.kpi.arithmetic.sl_class`` on its instants."""
    at = now.get(c.get("tenant_id") or "") if isinstance(now, Mapping) else now
    return ar.sl_class(c["started_at"], c["first_human_reply_at"], c["resolved_at"], t_s * 1000, at)


def service_level(contacts: list[dict[str, Any]], t_s: int, now: Now) -> dict[str, Any]:
    """SL(T) over contact measures, per KPIS.md (see the module docstring)."""
    counts = ar.sl_counts(sl_class(c, t_s, now) for c in contacts)
    sl, met = ar.service_level(counts, ar.SL_TARGETS.get(t_s))
    return {"t_s": t_s, "sl": sl, "target": SL_TARGET.get(t_s), "met": met,
            "within": counts[ar.WITHIN], "after": counts[ar.AFTER],
            "abandoned": counts[ar.ABANDONED], "waiting_over": counts[ar.OVER],
            "short_abandoned": counts[ar.SHORT], "pending": counts[ar.PENDING],
            "excluded": counts[ar.SHORT] + counts[ar.PENDING]}


def contact_figures(contacts: list[dict[str, Any]], now: Now) -> dict[str, Any]:
    """Offered, answered, resolved, SL(300) and SL(20), FRT mean/p50/p90, reply gaps, sentiment."""
    frts = [c["frt_ms"] for c in contacts if c["frt_ms"] is not None]
    gaps = sum(c["reply_gap_count"] or 0 for c in contacts)
    known = [c["last_customer_sentiment"] for c in contacts if c["last_customer_sentiment"]]
    return {
        "offered": len(contacts),
        "answered": sum(1 for c in contacts if c["first_human_reply_at"] is not None),
        "resolved": sum(1 for c in contacts if c["resolved_at"] is not None),
        "sl_300": service_level(contacts, 300, now), "sl_20": service_level(contacts, 20, now),
        "frt_mean_ms": sum(frts) / len(frts) if frts else None,
        "frt_p50_ms": ar.percentile(frts, 50), "frt_p90_ms": ar.percentile(frts, 90),
        "reply_gap_mean_ms": (sum(c["reply_gap_total_ms"] or 0 for c in contacts) / gaps) if gaps else None,
        "negative_share": ar.share(sum(1 for s in known if s == "negative"), len(known)),
    }


def containment(store: Store, f: KpiFilter) -> dict[str, dict[str, Any]]:
    """Bot containment over the period, ``{"overall" | channel: {threads, bot_contained,
    bot_containment}}``: the KPI processor's per-interval thread counts, summed (each thread
    counts once, in the interval and channel of its first message; KPIS.md). Empty under an
    agent filter or several dimension filters (threads have no such dimension)."""
    dim = f.dimension()
    if dim is None or dim[0] == "agent":
        return {}
    where, args = f.where(contacts=False)
    if dim[0] == "overall":
        where += " AND dimension IN ('overall', 'channel')"
    else:
        where += " AND dimension = ? AND dimension_value = ?"
        args += list(dim)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in _decode(kpi_p.INTERVALS, store.query(
            f"SELECT dimension, dimension_value, metrics FROM kpi_intervals WHERE {where}", args)):
        keys = (["overall"] if r["dimension"] in ("overall", "queue")
                else [r["dimension_value"] or "?"])
        if dim[0] == "channel":
            keys.append("overall")
        for k in keys:
            sums[k][0] += r["metrics"].get("threads", 0)
            sums[k][1] += r["metrics"].get("bot_contained", 0)
    return {k: {"threads": int(n), "bot_contained": int(c), "bot_containment": ar.share(c, n)}
            for k, (n, c) in sums.items()}


NO_CONTAINMENT = {"threads": None, "bot_contained": None, "bot_containment": None}


def period_figures(store: Store, f: KpiFilter, contacts: list[dict[str, Any]], now: Now
                   ) -> dict[str, Any]:
    """``{"overall": figures, "channels": {channel: figures}}``: contact figures and containment."""
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in contacts:
        by_channel[c["channel"] or "?"].append(c)
    cont = containment(store, f)
    channels = sorted(set(by_channel) | (set(cont) - {"overall"}))
    return {"overall": {**contact_figures(contacts, now), **cont.get("overall", NO_CONTAINMENT)},
            "channels": {ch: {**contact_figures(by_channel.get(ch, []), now),
                              **cont.get(ch, NO_CONTAINMENT)} for ch in channels}}


def kpi_summary(store: Store, f: KpiFilter) -> dict[str, Any]:
    """The period's figures overall and per channel (recomputed from contact measures; bot
    containment from the processor's thread counts)."""
    contacts = kpi_contacts(store, f, limit=1_000_000)
    now = as_of_by_tenant(store, f.tenant)
    top = max(now.values(), default=None)
    return {"as_of": top, "as_of_utc": iso(top), "filter": filter_dict(f),
            **period_figures(store, f, contacts, now)}


def filter_dict(f: KpiFilter) -> dict[str, Any]:
    d = dict(f.__dict__)
    d["from_utc"], d["to_utc"] = iso(f.start), iso(f.end)
    return d


def choices(store: Store, tenant: str | None = None) -> dict[str, list[str]]:
    """The channels, queues and agents known to the KPI tables (for filter menus)."""
    where, args = ("WHERE tenant_id = ?", [tenant]) if tenant else ("", [])
    out = {}
    for key, col in (("channels", "channel"), ("queues", "queue"), ("agents", "agent_id")):
        rows = store.query(f"SELECT DISTINCT {col} AS v FROM kpi_contacts {where} ORDER BY {col}", args)
        out[key] = [r["v"] for r in rows if r["v"] is not None]
    out["tenants"] = [r["v"] for r in store.query("SELECT DISTINCT tenant_id AS v FROM kpi_contacts ORDER BY v")]
    return out
