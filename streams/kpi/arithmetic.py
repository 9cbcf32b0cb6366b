"""The arithmetic of every KPI figure Parley shows, in one place (../shared/KPIS.md).

Pure functions over plain numbers (epoch ms, counts); imports nothing, not even ``schemas``, so
the stream's logic (``streams.kpi.logic``), the projections' read side (``projections.query``:
``parley kpi``, ``parley api``, the dashboard) and the tests all call the same code. The SQL views
of ``projections/migrations/0003_kpi_figures.*.sql`` spell the same formulas in SQL; a test holds
them equal to these functions on SQLite and PostgreSQL.

* Percentiles are nearest-rank: the p-th percentile of n values is the value at rank
  ``ceil(p n / 100)`` (1-based) of the sorted values, computed with integers as
  ``(p n + 99) // 100`` (the SQL views use the same integer expression).
* A contact is classified for SL(T), T in ms, at ``as_of`` (the event-time "now"):

  ====================  ==========================================================  =========
  class                 when                                                        in SL(T)
  ====================  ==========================================================  =========
  ``within``            first human reply at most T after the start                 met
  ``after``             first human reply later than T                              missed
  ``short``             ended with no human reply at most 30 s after the start      left out
  ``abandoned``         ended with no human reply later than 30 s (whatever T)      missed
  ``over``              no human reply, not ended, waiting longer than T at as_of   missed
  ``pending``           no human reply, not ended, waiting at most T at as_of       left out
  ====================  ==========================================================  =========

  ``SL(T) = within / (within + after + abandoned + over)``, absent when that is 0; the target
  (percent) is met when ``100 within >= target x denominator`` (exact integers).
* Bot containment counts threads: a thread is contained when none of its contacts was ever
  routed to a human and it is resolved (its latest episode ended); the figure is contained
  threads / threads, each thread counted once, however often it reopened.
* Agents: the time at each level of n(t) (open assigned conversations) over online time;
  concurrency = the integral of n over online time / online time; idle = online time at n = 0;
  occupancy = (online - idle) / online, the share of online time with at least one conversation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any, TypeVar

INTERVAL_MS = 15 * 60 * 1000  # the KPI interval: IntervalStat, AgentIntervalStat, the dashboard's buckets
SHORT_ABANDON_MS = 30_000
SL_TARGETS = {300: 90, 20: 80}  # T in seconds -> target percentage (90/300, and 80/20 beside it)

WITHIN, AFTER, SHORT, ABANDONED, OVER, PENDING = (
    "within", "after", "short", "abandoned", "over", "pending")
SL_CLASSES = (WITHIN, AFTER, SHORT, ABANDONED, OVER, PENDING)
COUNTED = (WITHIN, AFTER, ABANDONED, OVER)  # the denominator of SL(T)


# --- percentiles ------------------------------------------------------------------------------

def rank(n: int, p: int) -> int:
    """The 1-based nearest rank of the p-th percentile (integer p, 0..100) among n values."""
    return max(1, (p * n + 99) // 100)


_N = TypeVar("_N", int, float)


def percentile(values: Iterable[_N], p: int) -> _N | None:
    """Nearest-rank p-th percentile; None when there are no values."""
    ordered = sorted(values)
    return ordered[rank(len(ordered), p) - 1] if ordered else None


# --- service level ----------------------------------------------------------------------------

def is_short_abandon(start: int, human_at: int | None, resolved_at: int | None) -> bool:
    """Ended within 30 s of its start (inclusive) with no human reply."""
    return human_at is None and resolved_at is not None and resolved_at - start <= SHORT_ABANDON_MS


def sl_class(start: int, human_at: int | None, resolved_at: int | None, t_ms: int,
             as_of: int | None) -> str:
    """The contact's class for SL(T) with T = ``t_ms`` (see the module docstring).

    ``as_of`` None (no watermark known) leaves a contact still waiting pending.
    """
    if human_at is not None:
        return WITHIN if human_at - start <= t_ms else AFTER
    if resolved_at is not None:
        return SHORT if resolved_at - start <= SHORT_ABANDON_MS else ABANDONED
    return OVER if as_of is not None and as_of - start > t_ms else PENDING


def sl_counts(classes: Iterable[str]) -> dict[str, int]:
    """How many contacts of each class (every class present, 0 when none)."""
    counts = dict.fromkeys(SL_CLASSES, 0)
    for c in classes:
        counts[c] += 1
    return counts


def service_level(counts: Mapping[str, int], target_pct: int | None = None
                  ) -> tuple[float | None, bool | None]:
    """``(SL, met)`` from class counts: SL None when no contact counts; met None without target."""
    denominator = sum(counts.get(c, 0) for c in COUNTED)
    if not denominator:
        return None, None
    within = counts.get(WITHIN, 0)
    met = None if target_pct is None else 100 * within >= target_pct * denominator
    return within / denominator, met


# --- shares -----------------------------------------------------------------------------------

def share(part: float, whole: float) -> float | None:
    """part / whole, None when whole is 0 (bot containment, negative share...)."""
    return part / whole if whole else None


def thread_contained(routed_to_human: Iterable[bool], last_resolved: bool) -> bool:
    """A thread is bot-contained: never routed to a human, and resolved."""
    return last_resolved and not any(routed_to_human)


# --- levels over time (agents' concurrency, contacts waiting) --------------------------------

def level_profile(online: Sequence[tuple[int, int]], spans: Iterable[tuple[int, int]]) -> dict[str, Any]:
    """Time at each level of n(t) = number of ``spans`` [lo, hi) covering t, over ``online``.

    ``online``: sorted, disjoint [lo, hi) segments. Returns online ms, the integral of n (open
    ms), ms at n = 0 (idle), the highest level held for a positive time, and ms per level.
    """
    deltas: dict[int, int] = defaultdict(int)
    for lo, hi in spans:
        if hi > lo:
            deltas[lo] += 1
            deltas[hi] -= 1
    points = sorted(set(deltas).union(*online) if online else ())
    levels: dict[int, int] = defaultdict(int)
    n, k = 0, 0
    for p, q in pairwise(points):
        n += deltas.get(p, 0)
        while k < len(online) and online[k][1] <= p:
            k += 1
        if k < len(online) and online[k][0] <= p:
            levels[n] += q - p
    return {
        "online_ms": sum(levels.values()), "open_ms": sum(lv * ms for lv, ms in levels.items()),
        "idle_ms": levels.get(0, 0), "peak": max(levels, default=0),
        "levels": {str(lv): ms for lv, ms in sorted(levels.items())},
    }


def concurrency(open_ms: float, online_ms: float) -> float | None:
    """Time-weighted mean level: the integral of n over online time / online time."""
    return share(open_ms, online_ms)


def occupancy(online_ms: float, idle_ms: float) -> float | None:
    """Share of online time with at least one open assigned conversation."""
    return share(online_ms - idle_ms, online_ms)


def merge_levels(levels: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Sum ``{level: ms}`` maps (agent intervals into a period), sorted by level."""
    total: dict[int, float] = defaultdict(int)
    for m in levels:
        for lv, ms in m.items():
            total[int(lv)] += ms
    return {str(lv): total[lv] for lv in sorted(total)}
