"""KPI arithmetic: pure functions over the events of one thread, one agent, one interval.

Definitions (version ``DEFINITION_VERSION``; ../shared/KPIS.md is the source, these are its exact
reading, shared with the independent batch recomputation in ``parley/app/batch/``):

* Event time only. Every timestamp is ``envelope.occurred_at`` (epoch ms UTC). An interval is the
  15-minute UTC bucket ``t - t % 900_000``.
* Order. A thread's events are ordered by ``(occurred_at, RANK[type], event_id)``, whatever order
  they arrived in. Every function here sorts its input, so its result depends only on the set of
  events: that is what makes the streaming figures independent of arrival order.
* Episodes. A thread is cut after each ``ConversationResolved``. An episode starts at the first
  ``MessageReceived`` of a cut and runs to the cut's end (its ``ConversationResolved``, if any);
  events of the cut before that message are ignored. So a reopen (a customer message after a
  resolution) starts a new episode. An episode is a *contact* when one of its events is a
  ``RoutingDecided`` with ``target_kind`` ``queue`` or ``agent`` (not ``bot``); the contact starts
  at the episode's first customer message, even when a bot spoke first (KPIS.md: "the first
  customer message of a conversation that is routed to a human queue"). Its id is
  ``derive_id("kpi.contact", tenant, thread, first message event id)``.
* Contact attributes: channel = channel of its first customer message; queue = queue of its first
  human ``RoutingDecided`` (for a bot-only episode: of its first ``RoutingDecided``, else
  ``"none"``); agent = author of its first human reply.
* Human reply = ``MessageSent`` with ``author_type == "agent"``. First reply including bots also
  counts ``author_type == "bot"`` (automation and system messages never count).
* Reply gaps: within an episode, each run of customer messages with no human reply in between
  gives one gap, first message of the run -> the next human reply, credited to that reply's
  author. A run still unanswered gives no gap yet; a resolution ends the run (the episode ends
  there: a message before a resolve never pairs with a reply after it). Customer wait = sum of
  an episode's gaps.
* Service level, percentiles, containment, concurrency: the arithmetic is
  ``streams.kpi.arithmetic`` (shared with the projections' read side), whose docstring is the
  exact rule. In short: short abandon = ended within 30 s of the start (``<=``) with no human
  reply, left out of SL(T); any later abandon counts as missed, even one that ended before T;
  ``sl_T = within / (within + after + long abandons + still waiting over T)``; a contact still
  waiting at most T is pending and left out.
* as_of (the watermark): "still waiting longer than T" needs a "now"; in event time it is the
  largest ``occurred_at`` among the KPI input events of the tenant (all ``CONVERSATION_TYPES`` and
  ``AgentStatusChanged``). Open presence and open assignments also run to it.
* Percentiles (FRT p50/p90, reply-gap p90) = nearest rank: the ``ceil(p n / 100)``-th smallest.
* Bot containment counts threads: a thread counts once, in the interval, channel and queue of its
  first episode (``thread_first``); it is contained (``thread_contained``) when none of its
  episodes is a contact and its latest episode is resolved.
* Agent concurrency: presence is ``online`` or not (away and offline are not); the state at time
  t is that of the agent's last status event with ``occurred_at <= t`` (ties by event id). A
  thread is assigned to the agent of a ``ConversationAssigned`` (or a ``ConversationTransferred``
  with ``to_agent_id``) until the thread's next Assigned/Transferred/Resolved event, or as_of.
  n(t) = number of such spans covering t. Per agent and interval: online ms; ``open_ms`` =
  integral of n over online time; idle = online time at n = 0; time at each level; peak = highest
  n held for a positive time while online. Concurrency = open_ms / online_ms; team concurrency =
  sum of open_ms / sum of online_ms (the online-time-weighted mean).
* Volumes and sentiment: messages in/out and ``MessageEnriched`` labels count in the interval of
  their own ``occurred_at``; every contact figure counts in the contact's start interval.

Which metrics a key carries (the equality contract with the batch): ``conversations`` (episodes)
and ``threads`` / ``bot_contained`` for every key with an episode, ``bot_containment`` when it
has a thread; contact block when it has a contact (means/p90/sl only when their
count is > 0); message counters only when > 0; the team block on ``overall`` when an agent was
online; the ``agent`` dimension carries answered/FRT by first responder and gaps by replier.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.events import derive_id
from streams.kpi import arithmetic
from streams.kpi.arithmetic import INTERVAL_MS, SHORT_ABANDON_MS, SL_TARGETS  # noqa: F401 (re-exported)

# 2: long abandons count as missed in SL(T); containment per thread; FRT p50 per interval.
DEFINITION_VERSION = "2"
MAX_SL_MS = max(SL_TARGETS) * 1000
OVERALL = ("overall", "all")
HUMAN_TARGETS = ("queue", "agent")

RANK = {
    "ConversationStarted": 0, "ConversationReopened": 1, "MessageReceived": 2,
    "MessageEnriched": 3, "RoutingDecided": 4, "ConversationQueued": 5,
    "ConversationAssigned": 6, "ConversationTransferred": 7, "MessageSent": 8,
    "ConversationResolved": 9,
}
CONVERSATION_TYPES = frozenset(RANK)
AGENT_STATUS = "AgentStatusChanged"
KPI_TYPES = CONVERSATION_TYPES | {AGENT_STATUS}
# Types that only move the watermark: no KPI reads their fields.
WATERMARK_ONLY = frozenset({"ConversationStarted", "ConversationReopened", "ConversationQueued"})

# A compact event: [occurred_at, rank, event_id, a, b, c] (JSON-friendly, for table values);
# a, b, c are its type's fields below, in this order (None where a type has fewer).
AT, EVENT_ID = 0, 2  # where a compact event keeps its time and its event id
_FIELDS = {
    "MessageReceived": ("channel", "customer_id", None),
    "MessageSent": ("channel", "author_type", "author_id"),
    "RoutingDecided": ("target_kind", "queue", None),
    "ConversationAssigned": ("agent_id", None, None),
    "ConversationTransferred": ("to_agent_id", None, None),
    "ConversationResolved": ("resolved_by", None, None),
    "MessageEnriched": ("message_event_id", "sentiment_label", "channel"),
}
R_RECEIVED, R_ENRICHED, R_ROUTED = RANK["MessageReceived"], RANK["MessageEnriched"], RANK["RoutingDecided"]
R_ASSIGNED, R_TRANSFERRED = RANK["ConversationAssigned"], RANK["ConversationTransferred"]
R_SENT, R_RESOLVED = RANK["MessageSent"], RANK["ConversationResolved"]

# An episode's summary (its keys: ``_add_episode``); it is stored as JSON in the stage's state.
Episode = dict[str, Any]


def bucket(t: int) -> int:
    """Start of the 15-minute UTC interval holding ``t`` (epoch ms)."""
    return t - t % INTERVAL_MS


def buckets_between(lo: int, hi: int) -> range:
    """Every interval start from the one holding ``lo`` to the one holding ``hi``."""
    return range(bucket(lo), bucket(hi) + 1, INTERVAL_MS)


def thread_of(event: Mapping[str, Any]) -> str:
    """The event's thread id; an event without one goes to the pseudo-thread ``~customer``."""
    return event.get("thread_id") or f"~{event.get('customer_id') or ''}"


def compact(event: Mapping[str, Any]) -> list[Any] | None:
    """The fields KPIs read from a conversation event, or None for a watermark-only type."""
    env = event["envelope"]
    names = _FIELDS.get(env["event_type"])
    if names is None:
        return None
    return [env["occurred_at"], RANK[env["event_type"]], env["event_id"],
            *(event.get(n) if n else None for n in names)]


def p90(values: list[int]) -> int:
    """Nearest-rank 90th percentile of a non-empty list (``arithmetic.percentile``)."""
    return _percentile(values, 90)


def _percentile(values: list[int], p: int) -> int:
    result = arithmetic.percentile(values, p)
    if result is None:
        raise ValueError(f"p{p} of no values")
    return result


# --- one thread -> episodes and assignment spans --------------------------------------------

def measure_thread(tenant: str, thread: str,
                   items: Iterable[list[Any]]) -> tuple[dict[str, Episode], list[list[Any]]]:
    """Episodes ``{episode_id: summary}`` and assignment spans of one thread's compact events.

    Spans are ``[span_id, agent_id, from, to or None]`` (None: still open). Pure and
    order-insensitive: the items are sorted first.
    """
    evs = sorted(items, key=lambda e: (e[0], e[1], e[2]))
    labels = {e[3]: e[4] for e in evs if e[1] == R_ENRICHED}  # message id -> label, last wins
    episodes: dict[str, Episode] = {}
    cut: list[list[Any]] = []
    for e in evs:
        cut.append(e)
        if e[1] == R_RESOLVED:
            _add_episode(episodes, tenant, thread, cut, labels)
            cut = []
    _add_episode(episodes, tenant, thread, cut, labels)
    _mark_thread(list(episodes.values()))
    return episodes, _spans(evs)


def _mark_thread(eps: list[Episode]) -> None:
    """Thread-level containment, carried by the thread's first episode (chronological order)."""
    contained = bool(eps) and arithmetic.thread_contained(
        (ep["contact"] for ep in eps), eps[-1]["resolved_at"] is not None)
    for i, ep in enumerate(eps):
        ep["thread_first"] = i == 0
        ep["thread_contained"] = contained and i == 0


def _add_episode(out: dict[str, Episode], tenant: str, thread: str, cut: list[list[Any]],
                 labels: dict[str, Any]) -> None:
    start = next((i for i, e in enumerate(cut) if e[1] == R_RECEIVED), None)
    if start is None:
        return
    first = cut[start]
    ep: Episode = {
        "thread": thread, "customer": first[4], "channel": first[3], "start": first[0],
        "first_eid": first[2], "contact": False, "queue": None, "any_queue": None,
        "human_at": None, "agent": None, "reply_at": None, "resolved_at": None,
        "resolved_by": None, "gaps": [], "last_sentiment": None, "last_at": first[0],
    }
    run_start = last_msg = None
    for e in cut[start:]:
        t, rank = e[0], e[1]
        ep["last_at"] = t
        if rank == R_RECEIVED:
            last_msg = e[2]
            if run_start is None:
                run_start = t
        elif rank == R_SENT:
            run_start = _on_sent(ep, e, run_start)
        elif rank == R_ROUTED:
            if ep["any_queue"] is None:
                ep["any_queue"] = e[4]
            if e[3] in HUMAN_TARGETS and not ep["contact"]:
                ep["contact"], ep["queue"] = True, e[4]
        elif rank == R_RESOLVED:
            ep["resolved_at"], ep["resolved_by"] = t, e[3]
    if not ep["contact"]:
        ep["queue"] = ep["any_queue"] if ep["any_queue"] is not None else "none"
    del ep["any_queue"]
    ep["last_sentiment"] = labels.get(last_msg) if last_msg is not None else None
    out[derive_id("kpi.contact", tenant, thread, first[2])] = ep


def _on_sent(ep: Episode, e: list[Any], run_start: int | None) -> int | None:
    """A business message: first replies and the end of a customer run; returns the new run."""
    t, author_type, author = e[0], e[4], e[5]
    if author_type in ("agent", "bot") and ep["reply_at"] is None:
        ep["reply_at"] = t
    if author_type != "agent":
        return run_start
    if ep["human_at"] is None:
        ep["human_at"], ep["agent"] = t, author
    if run_start is not None:
        ep["gaps"].append([t - run_start, author])
    return None


def _spans(evs: list[list[Any]]) -> list[list[Any]]:
    spans: list[list[Any]] = []
    open_: list[Any] | None = None
    for e in evs:
        if e[1] not in (R_ASSIGNED, R_TRANSFERRED, R_RESOLVED):
            continue
        if open_ is not None and e[0] > open_[2]:
            spans.append([*open_, e[0]])
        open_ = [e[2], e[3], e[0]] if e[1] != R_RESOLVED and e[3] else None
    if open_ is not None:
        spans.append([*open_, None])
    return spans


def span_pieces(start: int, end: int) -> dict[int, list[int]]:
    """A closed span cut at interval boundaries: ``{interval_start: [lo, hi]}``."""
    return {b: [max(start, b), min(end, b + INTERVAL_MS)] for b in buckets_between(start, end - 1)}


# --- one contact ---------------------------------------------------------------------------

def contact_status(ep: Mapping[str, Any]) -> str:
    if ep["resolved_at"] is not None:
        return "resolved" if ep["human_at"] is not None else "abandoned"
    return "answered" if ep["human_at"] is not None else "waiting"


def is_short_abandon(ep: Mapping[str, Any]) -> bool:
    return arithmetic.is_short_abandon(ep["start"], ep["human_at"], ep["resolved_at"])


def sl_class(ep: Mapping[str, Any], t_ms: int, as_of: int) -> str:
    """within | after | short | abandoned | over | pending, for SL(T) with T = ``t_ms``."""
    return arithmetic.sl_class(ep["start"], ep["human_at"], ep["resolved_at"], t_ms, as_of)


def contact_fields(ep: Mapping[str, Any]) -> dict[str, Any]:
    """The ContactMeasured fields (without envelope and contact id) of a contact episode."""
    gaps = [g for g, _ in ep["gaps"]]
    start = ep["start"]
    return {
        "thread_id": ep["thread"],
        "customer_id": ep["customer"] or "", "channel": ep["channel"] or "",
        "queue": ep["queue"], "agent_id": ep["agent"], "interval_start": bucket(start),
        "started_at": start, "first_human_reply_at": ep["human_at"],
        "first_reply_at": ep["reply_at"], "resolved_at": ep["resolved_at"],
        "frt_ms": _minus(ep["human_at"], start), "status": contact_status(ep),
        "short_abandon": is_short_abandon(ep), "reply_gap_count": len(gaps),
        "reply_gap_total_ms": sum(gaps), "reply_gap_max_ms": max(gaps, default=0),
        "last_customer_sentiment": ep["last_sentiment"],
        "definition_version": DEFINITION_VERSION,
    }


def _minus(t: int | None, start: int) -> int | None:
    return None if t is None else t - start


# --- one agent in one interval --------------------------------------------------------------

def online_segments(presence: list[list[Any]], lo: int, hi: int) -> list[tuple[int, int]]:
    """Online time within [lo, hi) from sorted ``[t, event_id, online]`` entries."""
    times = [p[0] for p in presence]
    i = bisect.bisect_right(times, lo)
    state, since = (presence[i - 1][2] if i else 0), lo
    out: list[tuple[int, int]] = []
    for t, _, online in presence[i:]:
        if t >= hi:
            break
        if state and t > since:
            out.append((since, t))
        state, since = online, t
    if state and hi > since:
        out.append((since, hi))
    return out


def agent_figures(online: list[tuple[int, int]], pieces: Iterable[tuple[int, int]]) -> dict[str, Any]:
    """Online ms, open-conversation ms, idle ms, peak and ms per level over online time."""
    return arithmetic.level_profile(online, pieces)


# --- one interval: every dimension -----------------------------------------------------------

def interval_metrics(
    episodes: Iterable[Mapping[str, Any]], counters: Mapping[str, int],
    agents: Iterable[Mapping[str, Any]], as_of: int,
) -> dict[tuple[str, str], dict[str, float]]:
    """``{(dimension, value): metrics}`` for one interval.

    ``episodes``: summaries of the episodes started in it; ``counters``: message counters
    ``"name|dimension|value" -> n`` of messages in it; ``agents``: agent figures in it.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for ep in episodes:
        for key in (OVERALL, ("channel", ep["channel"] or ""), ("queue", ep["queue"])):
            groups[key].append(ep)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key, group in groups.items():
        m = _conversation_block(group)
        contacts = [ep for ep in group if ep["contact"]]
        if contacts:
            m.update(_contact_block(contacts, as_of))
        out[key] = m
    for key, m in _agent_blocks(groups.get(OVERALL, [])).items():
        out.setdefault(key, {}).update(m)
    for name, n in counters.items():
        if n:
            metric, dim, value = name.split("|", 2)
            out.setdefault((dim, value), {})[metric] = float(n)
    team = _team_block(agents)
    if team:
        out.setdefault(OVERALL, {}).update(team)
    return out


def episode_keys(ep: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every (dimension, value) an episode contributes to in ``interval_metrics``."""
    keys = [OVERALL, ("channel", ep["channel"] or ""), ("queue", ep["queue"])]
    if ep["contact"]:
        agents = {a for _, a in ep["gaps"]} | {ep["agent"] if ep["human_at"] is not None else None}
        keys += [("agent", a) for a in sorted(a for a in agents if a is not None)]
    return keys


def _conversation_block(group: list[Mapping[str, Any]]) -> dict[str, float]:
    """Episodes, and the threads whose first episode is here (containment counts threads)."""
    threads = [ep for ep in group if ep.get("thread_first", True)]
    contained = sum(1 for ep in threads if ep.get(
        "thread_contained", not ep["contact"] and ep["resolved_at"] is not None))
    m = {"conversations": float(len(group)), "threads": float(len(threads)),
         "bot_contained": float(contained)}
    if threads:
        m["bot_containment"] = contained / len(threads)
    return m


def _contact_block(contacts: list[Mapping[str, Any]], as_of: int) -> dict[str, float]:
    n = len(contacts)
    answered = [ep for ep in contacts if ep["human_at"] is not None]
    resolved = [ep for ep in contacts if ep["resolved_at"] is not None]
    m: dict[str, float] = {
        "offered": float(n), "answered": float(len(answered)), "resolved": float(len(resolved)),
        "abandoned": float(sum(1 for ep in resolved if ep["human_at"] is None)),
        "short_abandoned": float(sum(1 for ep in contacts if is_short_abandon(ep))),
        "long_abandoned": float(sum(1 for ep in resolved
                                    if ep["human_at"] is None and not is_short_abandon(ep))),
        "waiting": float(sum(1 for ep in contacts
                             if ep["human_at"] is None and ep["resolved_at"] is None)),
    }
    for t_s, pct in SL_TARGETS.items():
        m.update(_sl_block(contacts, t_s, pct, as_of))
    _stats(m, "frt", [ep["human_at"] - ep["start"] for ep in answered], p=True, mx=True,
           p50=True)
    _stats(m, "first_reply", [ep["reply_at"] - ep["start"] for ep in contacts
                              if ep["reply_at"] is not None])
    _stats(m, "resolution", [ep["resolved_at"] - ep["start"] for ep in resolved])
    gaps = [g for ep in contacts for g, _ in ep["gaps"]]
    _stats(m, "reply_gap", gaps, p=True, mx=True)
    m["customer_wait_total_ms"] = float(sum(gaps))
    m["customer_wait_mean_ms"] = sum(gaps) / n
    known = [ep["last_sentiment"] for ep in contacts if ep["last_sentiment"] is not None]
    negative = sum(1 for s in known if s == "negative")
    m["last_sentiment_known"], m["last_negative"] = float(len(known)), float(negative)
    if known:
        m["last_negative_share"] = negative / len(known)
    return m


def _sl_block(contacts: list[Mapping[str, Any]], t_s: int, pct: int, as_of: int) -> dict[str, float]:
    c = arithmetic.sl_counts(sl_class(ep, t_s * 1000, as_of) for ep in contacts)
    m = {f"answered_within_{t_s}": float(c["within"]), f"answered_after_{t_s}": float(c["after"]),
         f"unanswered_over_{t_s}": float(c["over"]),
         f"unanswered_within_{t_s}": float(c["pending"])}
    sl, met = arithmetic.service_level(c, pct)
    if sl is not None:
        m[f"sl_{t_s}"] = sl
        m[f"sl_{t_s}_met"] = 1.0 if met else 0.0
    return m


def _stats(m: dict[str, float], name: str, values: list[int], p: bool = False, mx: bool = False,
           p50: bool = False) -> None:
    m[f"{name}_count"] = float(len(values))
    if values:
        m[f"{name}_mean_ms"] = sum(values) / len(values)
        if mx:
            m[f"{name}_max_ms"] = float(max(values))
        if p50:
            m[f"{name}_p50_ms"] = float(_percentile(values, 50))
        if p:
            m[f"{name}_p90_ms"] = float(p90(values))


def _agent_blocks(episodes: list[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    frt: dict[str, list[int]] = defaultdict(list)
    gaps: dict[str, list[int]] = defaultdict(list)
    for ep in episodes:
        if not ep["contact"]:
            continue
        if ep["human_at"] is not None and ep["agent"] is not None:
            frt[ep["agent"]].append(ep["human_at"] - ep["start"])
        for g, agent in ep["gaps"]:
            if agent is not None:
                gaps[agent].append(g)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for agent in sorted(set(frt) | set(gaps)):
        m: dict[str, float] = {}
        if frt[agent]:
            m["answered"] = float(len(frt[agent]))
            m["answered_within_300"] = float(sum(1 for v in frt[agent] if v <= 300_000))
            m["frt_mean_ms"] = sum(frt[agent]) / len(frt[agent])
        _stats(m, "reply_gap", gaps[agent], p=True, mx=True)
        out[("agent", agent)] = m
    return out


def _team_block(agents: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    online = [a for a in agents if a and a["online_ms"] > 0]
    if not online:
        return {}
    total = sum(a["online_ms"] for a in online)
    open_ms = sum(a["open_ms"] for a in online)
    return {"agents_online": float(len(online)), "agents_online_ms": float(total),
            "agents_open_conversation_ms": float(open_ms),
            "agents_idle_ms": float(sum(a["idle_ms"] for a in online)),
            "team_concurrency": open_ms / total}


# --- reading the published figures back -----------------------------------------------------

def fold_outputs(records: Iterable[Mapping[str, Any] | None]) -> dict[str, dict[Any, Any]]:
    """The latest KPI figures from a sequence of emitted KPI records (as a compacted topic holds).

    Returns ``{"contacts": {contact_id: fields}, "intervals": {(tenant, start, dim, value):
    metrics}, "agents": {(tenant, agent, start): figures}}``; empty or void records remove keys.
    """
    contacts: dict[str, dict[str, Any]] = {}
    intervals: dict[tuple[str, int, str, str], dict[str, float]] = {}
    agents: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in records:
        if r is None:
            continue
        env, kind = r["envelope"], r["envelope"]["event_type"]
        if kind == "ContactMeasured":
            _put(contacts, r["contact_id"], _contact_view(r) if r["status"] != "void" else None)
        elif kind == "IntervalStat":
            _put(intervals, (env["tenant_id"], r["interval_start"], r["dimension"], r["dimension_value"]),
                 dict(r["metrics"]) or None)
        elif kind == "AgentIntervalStat":
            _put(agents, (env["tenant_id"], r["agent_id"], r["interval_start"]),
                 _agent_view(r) if r["online_ms"] > 0 else None)
    return {"contacts": contacts, "intervals": intervals, "agents": agents}


def _put(d: dict[Any, Any], key: Any, value: Any) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value


CONTACT_VIEW = (
    "thread_id", "customer_id", "channel", "queue", "agent_id", "interval_start", "started_at",
    "first_human_reply_at", "first_reply_at", "resolved_at", "frt_ms", "status",
    "short_abandon", "reply_gap_count", "reply_gap_total_ms", "reply_gap_max_ms",
    "last_customer_sentiment",
)


def _contact_view(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in CONTACT_VIEW}


def _agent_view(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"online_ms": r["online_ms"], "open_ms": r["open_conversation_ms"],
            "idle_ms": r["idle_ms"], "peak": r["peak_concurrency"],
            "levels": dict(r["time_at_level_ms"])}
