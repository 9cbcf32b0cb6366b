"""What the pipeline did with the demo's day, one line per feature, read from its outputs.

Sources: the routing decisions, assignments and transfers of ``parley.conversations`` (the
driver's ``View``, folded from that topic), the identity events of ``parley.identity.events``,
and the projection database (messages, threads, customers, identities, KPI tables, read with
the same ``projections.query`` and ``projections.dashboard`` functions as ``parley kpi``, the API
and the dashboard). Nothing here reads the scenario: a line says what the pipeline did, so a
feature the pipeline did not exercise shows up as a zero.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from parley.app.demo.view import Thread, View
from projections import dashboard, query
from projections.store import Store
from streams.kpi import arithmetic as ar


@dataclass(frozen=True)
class Line:
    """One feature: what the pipeline did, in words and as counts (for tests)."""

    feature: str
    text: str
    counts: Mapping[str, int] = field(default_factory=dict)

    def __iter__(self):  # (feature, text), as printed
        return iter((self.feature, self.text))


def lines(store: Store, view: View, identity_events: Iterable[Mapping[str, Any]], tz: str) -> list[Line]:
    """Every feature's line (see the module docstring)."""
    threads = sorted(view.threads.values(), key=lambda t: t.thread_id)
    return [routing(threads), queues(store, tz), concurrency(store), reply_gaps(store),
            bot(threads, view.bot_queue), out_of_hours(store, threads), identity(list(identity_events)),
            transfers(threads), reopens(store), vip(threads), escalation(threads), channels(store),
            egress(store)]


def _reasons(t: Thread, prefix: str) -> list[tuple[dict[str, Any], str]]:
    return [(d, r) for d in t.decisions for r in d["reasons"] if r.startswith(prefix)]


def routing(threads: list[Thread]) -> Line:
    human = [d for t in threads for d in t.decisions if d["target"] != "bot"]
    why = Counter(next((r.split(":")[0] for r in d["reasons"]
                        if r.startswith(("assigned:", "waiting:", "closed:"))), "?") for d in human)
    to_bot = sum(d["target"] == "bot" for t in threads for d in t.decisions)
    assigned = [a for t in threads for a in t.assignments]
    later = sum(1 for t in threads for d in t.decisions
                if d["target"] == "queue" and any(at >= d["at"] for at, _ in t.assignments))
    return Line("routing", f"{len(human) + to_bot} routing decisions: {why['assigned']} to an agent at once, "
                           f"{why['waiting']} queued for a free agent, {why['closed']} queued out of hours, "
                           f"{to_bot} to the bot; {len(assigned)} ConversationAssigned to "
                           f"{len({a for _, a in assigned})} agents ({later} of them after waiting in a queue)",
                {"assigned": len(assigned), "at_once": why["assigned"], "after_waiting": later,
                 "agents": len({a for _, a in assigned})})


def queues(store: Store, tz: str) -> Line:
    contacts = query.kpi_contacts(store, query.KpiFilter(), limit=1_000_000)
    now = query.as_of_by_tenant(store)
    waiting = dashboard.waiting_by_interval(contacts, now)
    zone = ZoneInfo(tz)

    def peak(hour: int) -> str:
        rows = [w for w in waiting if datetime.fromtimestamp(w["interval_start"] / 1000, zone).hour == hour]
        best = max(rows, key=lambda w: (w["peak"], -w["interval_start"]), default=None)
        if best is None:
            return f"none around {hour}:00"
        at = datetime.fromtimestamp(best["interval_start"] / 1000, zone).strftime("%H:%M")
        busiest = max(best["by_queue"].items(), key=lambda kv: kv[1], default=("-", 0))
        return f"{best['peak']} at {at} (busiest queue {busiest[0]})"

    return Line("queues", f"contacts waiting for a first human reply, peak: {peak(9)}; {peak(14)}",
                {"peak": max((w["peak"] for w in waiting), default=0)})


def concurrency(store: Store) -> Line:
    agents = query.kpi_agents(store, query.KpiFilter())
    worked = [a for a in agents if a["open_conversation_ms"]]
    team = dashboard.team(agents)
    per = [a["concurrency"] for a in worked if a["concurrency"] is not None]
    span = f"{min(per):.2f}-{max(per):.2f}" if per else "-"
    idle = ar.share(team["idle_ms"], team["online_ms"]) if team["online_ms"] else None
    return Line("concurrency", f"{len(worked)} of {len(agents)} agents held conversations: team concurrency "
                               f"{_f(team['concurrency'])}, per agent {span}, peak "
                               f"{max((a['peak_concurrency'] for a in agents), default=0)}; idle "
                               f"{_pct(idle)} of {team['online_ms'] / 3_600_000:.1f} h online",
                {"agents_worked": len(worked), "idle_ms": team["idle_ms"], "online_ms": team["online_ms"]})


def reply_gaps(store: Store) -> Line:
    rows = store.query("SELECT SUM(reply_gap_count) AS n, SUM(reply_gap_total_ms) AS total, "
                       "MAX(reply_gap_max_ms) AS longest, COUNT(*) AS contacts FROM kpi_contacts "
                       "WHERE reply_gap_count > 0")
    r = rows[0] if rows else {}
    n = r.get("n") or 0
    mean = (r.get("total") or 0) / n if n else None
    return Line("reply gaps", f"{n} reply gaps in {r.get('contacts') or 0} contacts, mean {_dur(mean)}, "
                              f"longest {_dur(r.get('longest'))}", {"gaps": n})


def bot(threads: list[Thread], bot_queue: str) -> Line:
    first = [t for t in threads if any(d["target"] == "bot" for d in t.decisions)]
    contained = [t for t in first if t.resolved_by == "bot" and all(d["target"] == "bot" for d in t.decisions)]
    handoffs = [x for t in threads for x in t.transfers if x.by_routing and x.from_queue == bot_queue]
    why = Counter(r.removeprefix("handoff:") for x in handoffs for r in (x.reason or "?").split(","))
    return Line("bot", f"{len(first)} threads went to the bot first: {len(contained)} resolved by the bot, "
                       f"{len(handoffs)} handed off to a person (" + _counts(why) + ")",
                {"bot_first": len(first), "contained": len(contained), "handed_off": len(handoffs)})


def out_of_hours(store: Store, threads: list[Thread]) -> Line:
    n = store.query("SELECT COUNT(*) AS n FROM messages WHERE author_type = 'automation'")[0]["n"]
    closed = [(t, d) for t in threads for d in t.decisions if any(r.startswith("closed:") for r in d["reasons"])]
    served = sum(1 for t, d in closed if any(at >= d["at"] for at, _ in t.assignments))
    return Line("out of hours", f"{n} automated replies with the opening hours; {len(closed)} contacts arrived "
                                f"while their queue was closed, {served} assigned once it opened",
                {"auto_replies": n, "closed": len(closed), "served_at_opening": served})


def identity(events: list[Mapping[str, Any]]) -> Line:
    linked = Counter(e["signal"] for e in events if e["envelope"]["event_type"] == "IdentityLinked")
    merged = [e for e in events if e["envelope"]["event_type"] == "IdentitiesMerged"]
    by_agent = sum(1 for e in merged if e.get("merged_by"))
    manual = linked.pop("agent_manual", 0)
    return Line("identity", f"{sum(linked.values())} identity keys linked by the identity graph ({_counts(linked)}), "
                            f"{manual} linked by an agent; {len(merged)} profiles merged "
                            f"({by_agent} by an agent, {len(merged) - by_agent} by the graph)",
                {"linked": sum(linked.values()), "linked_by_agent": manual, "merged": len(merged),
                 "merged_by_agent": by_agent})


def transfers(threads: list[Thread]) -> Line:
    by_agents = [(t, x) for t in threads for x in t.transfers if not x.by_routing]
    why = Counter(x.reason or "?" for _, x in by_agents)
    taken = sum(1 for t, x in by_agents if any(at >= x.at and a != x.from_agent for at, a in t.assignments))
    return Line("transfer", f"{len(by_agents)} threads transferred by agents ({_counts(why)}), "
                            f"{taken} picked up by another agent",
                {"transfers": len(by_agents), "taken": taken, **{f"reason:{k}": n for k, n in why.items()}})


def reopens(store: Store) -> Line:
    rows = store.query("SELECT COUNT(*) AS n, SUM(CASE WHEN status = 'resolved' THEN 1 ELSE 0 END) AS again, "
                       "SUM(reopened_count) AS total FROM threads WHERE reopened_count > 0")
    r = rows[0]
    return Line("reopen", f"{r['n']} threads reopened after a resolution ({r['total'] or 0} reopens), "
                          f"{r['again'] or 0} resolved again", {"reopened": r["n"]})


def vip(threads: list[Thread]) -> Line:
    hits = [(t, d, r) for t in threads for d, r in _reasons(t, "vip:")]
    served = sorted({a for t, d, _ in hits for at, a in t.assignments if at >= d["at"]})
    tiers = Counter(r for _, _, r in hits)
    queues_ = Counter(d["queue"] for _, d, _ in hits)
    return Line("vip", f"{len(hits)} contacts of {len({t.customer_id for t, _, _ in hits})} VIP customers "
                       f"routed with priority ({_counts(tiers)}) to queue {_counts(queues_)}, "
                       f"answered by {', '.join(served) or 'nobody yet'}",
                {"contacts": len(hits), "served_by": len(served)})


def escalation(threads: list[Thread]) -> Line:
    hits = [(t, d, r) for t in threads for d, r in _reasons(t, "escalation:")]
    served = sorted({a for t, d, _ in hits for at, a in t.assignments if at >= d["at"]})
    why = sorted({r for _, _, r in hits})
    return Line("escalation", f"{len(hits)} contacts escalated ({', '.join(why) or '-'}) to queue "
                              f"{_counts(Counter(d['queue'] for _, d, _ in hits))}, "
                              f"taken by {', '.join(served) or 'nobody yet'}",
                {"contacts": len(hits), "served_by": len(served)})


def channels(store: Store) -> Line:
    rows = store.query("SELECT channels FROM threads")
    multi = Counter(tuple(sorted(json.loads(r["channels"] or "[]"))) for r in rows)
    across = {k: n for k, n in multi.items() if len(k) > 1}
    return Line("threads", f"{len(rows)} threads, {sum(across.values())} of them on more than one channel "
                           f"({_counts(Counter({'+'.join(k): n for k, n in across.items()}))})",
                {"threads": len(rows), "across_channels": sum(across.values())})


def egress(store: Store) -> Line:
    """The business's messages as the egress delivered them (to the providers' emulators)."""
    try:
        rows = store.query("SELECT status, COUNT(*) AS n FROM outbound_deliveries GROUP BY status")
    except Exception:  # noqa: BLE001 - a database without the egress's table
        rows = []
    by = Counter({r["status"]: r["n"] for r in rows})
    return Line("egress", f"{sum(by.values())} outbound messages handed to the providers ({_counts(by)})",
                {"outbound": sum(by.values()), **{f"status:{k}": n for k, n in by.items()}})


def _counts(c: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def _dur(ms: float | None) -> str:
    if ms is None:
        return "-"
    s = int((ms + 500) // 1000)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"
