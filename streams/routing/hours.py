"""Business hours in event time: is a queue open at an instant, and when does it open next."""

from __future__ import annotations

from datetime import datetime, timedelta

from streams.routing.config import Hours, Queue, TenantRules

HORIZON_DAYS = 15  # a schedule closed for longer than this reports no next opening


MINUTE_MS = 60_000
_CACHE_SIZE = 4096
_cache: dict[tuple[int, int, int], tuple[TenantRules, Queue, tuple[bool, int | None]]] = {}


def open_at(rules: TenantRules, queue: Queue, at_ms: int) -> tuple[bool, int | None]:
    """``(open, next_open_ms)``: next_open_ms is None when open (or never opening).

    Schedules are in whole minutes (and zones' offsets too), so the answer is the same for
    every instant of a minute: it is remembered per (rules, queue, minute), as routing asks it
    for every waiting queue at every decision (the rules are frozen)."""
    key = (id(rules), id(queue), at_ms // MINUTE_MS)
    hit = _cache.get(key)
    if hit is not None and hit[0] is rules and hit[1] is queue:
        return hit[2]
    if len(_cache) >= _CACHE_SIZE:
        _cache.clear()
    answer = _open_at(rules, queue, at_ms)
    _cache[key] = (rules, queue, answer)
    return answer


def _open_at(rules: TenantRules, queue: Queue, at_ms: int) -> tuple[bool, int | None]:
    hours = rules.hours_of(queue)
    if hours is None:
        return True, None
    local = datetime.fromtimestamp(at_ms / 1000, rules.zone(hours))
    if _open(hours, local):
        return True, None
    return False, _next_open(hours, local, at_ms)


def _open(hours: Hours, local: datetime) -> bool:
    if local.date() in hours.closed_dates:
        return False
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in hours.ranges(local.weekday()))


def _next_open(hours: Hours, local: datetime, at_ms: int) -> int | None:
    for offset in range(HORIZON_DAYS):
        day = local.date() + timedelta(days=offset)
        if day in hours.closed_dates:
            continue
        for start, _ in hours.ranges(day.weekday()):
            opening = datetime(day.year, day.month, day.day, start // 60, start % 60, tzinfo=local.tzinfo)
            ms = int(opening.timestamp() * 1000)
            if ms > at_ms:
                return ms
    return None


def describe(rules: TenantRules, queue: Queue, at_ms: int) -> str:
    """An instant as the customer reads it: ``Mon 06 Jan 09:00 (Europe/Paris)``."""
    hours = rules.hours_of(queue)
    zone = rules.zone(hours) if hours else rules.zone(Hours())
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    return f"{local:%a %d %b %H:%M} ({zone.key})"
