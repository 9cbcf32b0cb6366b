"""The shared KPI arithmetic (streams.kpi.arithmetic): exact tables, one row per rule."""

from __future__ import annotations

import math
import random

import pytest

from streams.kpi import arithmetic as a


@pytest.mark.parametrize("values,p,expected", [
    ([], 50, None), ([5], 50, 5), ([5], 90, 5), ([2, 1], 50, 1), ([2, 1], 90, 2),
    (list(range(1, 11)), 50, 5), (list(range(1, 11)), 90, 9), (list(range(1, 12)), 50, 6),
    (list(range(1, 12)), 90, 10), (list(range(1, 21)), 90, 18), ([7, 7, 7, 100], 90, 100),
    ([3, 1, 2], 0, 1), ([3, 1, 2], 100, 3),
])
def test_percentile_is_nearest_rank(values, p, expected):
    assert a.percentile(values, p) == expected


def test_rank_is_the_ceiling_of_p_n_over_100_with_integers_only():
    for n in range(1, 400):
        for p in (1, 10, 25, 50, 75, 90, 95, 99, 100):
            assert a.rank(n, p) == max(1, math.ceil(p * n / 100))


def test_the_issue_9_disagreement_is_gone():
    """``sorted[int(q n)]`` (the old read side) and nearest rank differ whenever q n is whole."""
    rng = random.Random(9)
    values = sorted(rng.randrange(1, 10**6) for _ in range(40))
    assert values[int(0.9 * 40)] != a.percentile(values, 90) == values[35]


S = 1000


@pytest.mark.parametrize("human,resolved,t_s,as_of,expected", [
    (20, None, 20, None, a.WITHIN), (21, None, 20, None, a.AFTER), (21, 22, 300, None, a.WITHIN),
    (None, 30, 20, None, a.SHORT), (None, 31, 20, None, a.ABANDONED),
    (None, 31, 300, None, a.ABANDONED),  # ended before T, after 30 s: missed all the same
    (None, 301, 300, None, a.ABANDONED), (None, None, 300, 300, a.PENDING),
    (None, None, 300, 301, a.OVER), (None, None, 300, None, a.PENDING),
])
def test_sl_class(human, resolved, t_s, as_of, expected):
    ms = lambda v: None if v is None else v * S  # noqa: E731
    assert a.sl_class(0, ms(human), ms(resolved), t_s * S, ms(as_of)) == expected


@pytest.mark.parametrize("counts,target,expected", [
    ({"within": 9, "after": 1}, 90, (0.9, True)),
    ({"within": 9, "abandoned": 1, "short": 5, "pending": 7}, 90, (0.9, True)),
    ({"within": 8, "over": 1, "abandoned": 1}, 90, (0.8, False)),
    ({"short": 3, "pending": 2}, 90, (None, None)),
    ({"within": 1}, None, (1.0, None)),
])
def test_service_level(counts, target, expected):
    assert a.service_level(counts, target) == expected


def test_sl_counts_has_every_class():
    assert a.sl_counts([a.WITHIN, a.WITHIN, a.SHORT]) == {
        "within": 2, "after": 0, "short": 1, "abandoned": 0, "over": 0, "pending": 0}


def test_levels_concurrency_and_occupancy():
    p = a.level_profile([(0, 100)], [(10, 60), (30, 100)])
    assert p == {"online_ms": 100, "open_ms": 120, "idle_ms": 10, "peak": 2,
                 "levels": {"0": 10, "1": 60, "2": 30}}
    assert a.concurrency(p["open_ms"], p["online_ms"]) == 1.2
    assert a.occupancy(p["online_ms"], p["idle_ms"]) == 0.9
    assert a.occupancy(0, 0) is None
    assert a.merge_levels([{"0": 5, "2": 1}, {"10": 3, "0": 1}]) == {"0": 6, "2": 1, "10": 3}


def test_thread_contained():
    assert a.thread_contained([False, False], True)
    assert not a.thread_contained([False, True], True)
    assert not a.thread_contained([False], False)
