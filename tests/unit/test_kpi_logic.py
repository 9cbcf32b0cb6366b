"""Pure KPI arithmetic (streams.kpi.logic): tables of inputs and exact expected figures."""

from __future__ import annotations

import pytest

from streams.kpi import logic
from streams.kpi.arithmetic import INTERVAL_MS
from streams.kpi.engine import REFRESH_MS, KpiEngine
from streams.kpi.logic import MAX_SL_MS

M = 60_000
B0 = 1_741_000_500_000  # an interval start (divisible by 900 000)


def ep(start=0, human_at=None, resolved_at=None, reply_at=None, contact=True, gaps=(), agent="a1",
       last=None, channel="sms", queue="q"):
    return {"thread": "th", "customer": "c", "channel": channel, "start": start,
            "first_eid": "m", "contact": contact, "queue": queue, "human_at": human_at,
            "agent": agent if human_at is not None else None, "reply_at": reply_at,
            "resolved_at": resolved_at, "resolved_by": None, "gaps": [list(g) for g in gaps],
            "last_sentiment": last, "last_at": start}


@pytest.mark.parametrize("t,expected", [
    (B0, B0), (B0 + 1, B0), (B0 + 899_999, B0), (B0 + 900_000, B0 + 900_000), (B0 - 1, B0 - 900_000),
])
def test_interval_is_a_15_minute_utc_bucket(t, expected):
    assert logic.bucket(t) == expected


@pytest.mark.parametrize("values,expected", [
    ([5], 5), ([2, 1], 2), (list(range(1, 11)), 9), (list(range(1, 21)), 18),
    (list(range(1, 12)), 10), ([7, 7, 7, 100], 100),
])
def test_p90_is_nearest_rank(values, expected):
    assert logic.p90(values) == expected


def test_containment_counts_each_thread_once_in_its_first_episode():
    def item(t, rank, eid, a=None, b=None, c=None):
        return [t, logic.RANK[rank], eid, a, b, c]
    bot_then_reopen = [  # bot-resolved, reopened, bot-resolved again: one contained thread
        item(0, "MessageReceived", "m1", "sms", "c"), item(1, "RoutingDecided", "r1", "bot", "bot"),
        item(9, "ConversationResolved", "x1", "bot"),
        item(99, "MessageReceived", "m2", "sms", "c"), item(100, "RoutingDecided", "r2", "bot", "bot"),
        item(120, "ConversationResolved", "x2", "bot")]
    eps, _ = logic.measure_thread("acme", "th", bot_then_reopen)
    assert [(e["thread_first"], e["thread_contained"]) for e in eps.values()] == [
        (True, True), (False, False)]
    m = logic.interval_metrics(list(eps.values()), {}, [], 10**9)[logic.OVERALL]
    assert (m["conversations"], m["threads"], m["bot_contained"], m["bot_containment"]) == (
        2, 1, 1, 1.0)
    later_human = [*bot_then_reopen[:3], item(99, "MessageReceived", "m2", "sms", "c"),
                   item(100, "RoutingDecided", "r2", "queue", "billing")]
    eps, _ = logic.measure_thread("acme", "th", later_human)  # handed to a human on the reopen
    assert [e["thread_contained"] for e in eps.values()] == [False, False]
    open_again = bot_then_reopen[:4]  # reopened, not resolved yet: not contained (yet)
    eps, _ = logic.measure_thread("acme", "th", open_again)
    assert [e["thread_contained"] for e in eps.values()] == [False, False]


# SL(T) classes: (episode, T ms, as_of) -> class
@pytest.mark.parametrize("e,t_ms,as_of,expected", [
    (ep(human_at=120_000), 300_000, 10**9, "within"),
    (ep(human_at=300_000), 300_000, 10**9, "within"),          # "within T" includes T
    (ep(human_at=300_001), 300_000, 10**9, "after"),
    (ep(), 300_000, 200_000, "pending"),                        # waiting < T: left out
    (ep(), 300_000, 300_000, "pending"),                        # exactly T is not longer than T
    (ep(), 300_000, 300_001, "over"),                           # still waiting longer than T
    (ep(resolved_at=25_000), 20_000, 10**9, "short"),          # short abandon: left out of SL(20)
    (ep(resolved_at=30_000), 20_000, 10**9, "short"),          # 30 s included
    (ep(resolved_at=30_000), 300_000, 10**9, "short"),
    (ep(resolved_at=31_000), 20_000, 10**9, "abandoned"),      # a long abandon counts as missed
    (ep(resolved_at=31_000), 300_000, 10**9, "abandoned"),     # even when it ended before T
    (ep(resolved_at=400_000), 300_000, 10**9, "abandoned"),
    (ep(human_at=10_000, resolved_at=20_000), 20_000, 10**9, "within"),  # answered: not abandon
    (ep(reply_at=1_000), 300_000, 400_000, "over"),            # a bot reply is no answer
])
def test_sl_class(e, t_ms, as_of, expected):
    assert logic.sl_class(e, t_ms, as_of) == expected


def test_long_abandons_count_as_missed_short_ones_and_pending_are_left_out():
    eps = [ep(human_at=60_000), ep(human_at=400_000), ep(resolved_at=45_000),
           ep(resolved_at=10_000), ep(start=900_000)]  # pending at as_of 1 000 000
    m = logic.interval_metrics(eps, {}, [], 1_000_000)[logic.OVERALL]
    assert (m["answered_within_300"], m["answered_after_300"], m["long_abandoned"],
            m["short_abandoned"], m["unanswered_within_300"]) == (1, 1, 1, 1, 1)
    assert m["sl_300"] == 1 / 3 and m["sl_20"] == 0.0
    assert m["abandoned"] == 2


@pytest.mark.parametrize("e,status,short", [
    (ep(), "waiting", False),
    (ep(human_at=5), "answered", False),
    (ep(human_at=5, resolved_at=9), "resolved", False),
    (ep(resolved_at=40_000), "abandoned", False),
    (ep(resolved_at=30_000), "abandoned", True),
])
def test_contact_status(e, status, short):
    assert logic.contact_status(e) == status
    assert logic.is_short_abandon(e) is short


def test_sl_block_target_met_is_exact_integer_arithmetic():
    # 9 within, 1 after: exactly 90 % meets 90/300; 8 within, 2 after: 80 % meets 80/20
    eps = [ep(human_at=10_000) for _ in range(8)] + [ep(human_at=100_000)] + [ep(human_at=400_000)]
    m = logic.interval_metrics(eps, {}, [], 10**9)[logic.OVERALL]
    assert (m["sl_300"], m["sl_300_met"]) == (0.9, 1.0)
    assert (m["sl_20"], m["sl_20_met"]) == (0.8, 1.0)


def test_pending_only_interval_has_no_service_level():
    m = logic.interval_metrics([ep()], {}, [], 100_000)[logic.OVERALL]
    assert "sl_300" not in m and m["unanswered_within_300"] == 1 and m["waiting"] == 1


@pytest.mark.parametrize("presence,lo,hi,expected", [
    ([], 0, 100, []),
    ([[0, "e1", 1]], 10, 100, [(10, 100)]),
    ([[0, "e1", 1], [50, "e2", 0]], 10, 100, [(10, 50)]),
    ([[0, "e1", 1], [50, "e2", 0], [70, "e3", 1]], 10, 100, [(10, 50), (70, 100)]),
    ([[20, "e1", 1], [20, "e2", 0]], 0, 100, []),                 # same time: the later id wins
    ([[120, "e1", 1]], 0, 100, []),
    ([[0, "e1", 0], [100, "e2", 1]], 0, 100, []),
])
def test_online_segments(presence, lo, hi, expected):
    assert logic.online_segments(presence, lo, hi) == expected


@pytest.mark.parametrize("online,pieces,figures", [
    ([], [(0, 10)], (0, 0, 0, 0, {})),
    ([(0, 100)], [], (100, 0, 100, 0, {"0": 100})),
    ([(0, 100)], [(10, 60), (30, 100)], (100, 120, 10, 2, {"0": 10, "1": 60, "2": 30})),
    # assignments while offline are not counted
    ([(0, 40), (60, 100)], [(20, 80)], (80, 40, 40, 1, {"0": 40, "1": 40})),
    ([(0, 100)], [(50, 50)], (100, 0, 100, 0, {"0": 100})),        # zero-length span
])
def test_agent_figures(online, pieces, figures):
    f = logic.agent_figures(online, pieces)
    assert (f["online_ms"], f["open_ms"], f["idle_ms"], f["peak"], f["levels"]) == figures


@pytest.mark.parametrize("start,end,pieces", [
    (B0 + 5, B0 + 10, {B0: [B0 + 5, B0 + 10]}),
    (B0 + 5, B0 + 900_000, {B0: [B0 + 5, B0 + 900_000]}),
    (B0 + 5, B0 + 900_001, {B0: [B0 + 5, B0 + 900_000], B0 + 900_000: [B0 + 900_000, B0 + 900_001]}),
])
def test_span_pieces_cut_at_interval_boundaries(start, end, pieces):
    assert logic.span_pieces(start, end) == pieces


def test_reply_gaps_per_agent_and_customer_wait():
    eps = [ep(human_at=60_000, gaps=[(60_000, "a1"), (30_000, "a2")]),
           ep(human_at=10_000, gaps=[(10_000, "a1")], agent="a1")]
    out = logic.interval_metrics(eps, {}, [], 10**9)
    assert out[logic.OVERALL]["customer_wait_total_ms"] == 100_000
    assert out[logic.OVERALL]["customer_wait_mean_ms"] == 50_000
    assert out[logic.OVERALL]["reply_gap_p90_ms"] == 60_000
    assert out[("agent", "a1")]["reply_gap_count"] == 2
    assert out[("agent", "a1")]["reply_gap_mean_ms"] == 35_000
    assert out[("agent", "a2")] == {"reply_gap_count": 1.0, "reply_gap_mean_ms": 30_000.0,
                                    "reply_gap_max_ms": 30_000.0, "reply_gap_p90_ms": 30_000.0}


def test_bot_containment_and_last_sentiment_share():
    eps = [ep(contact=False, resolved_at=5), ep(contact=False), ep(last="negative"),
           ep(last="positive"), ep()]
    for i, e in enumerate(eps):  # five threads, the first one contained
        e["thread_first"], e["thread_contained"] = True, i == 0
    m = logic.interval_metrics(eps, {}, [], 10**9)[logic.OVERALL]
    assert (m["conversations"], m["threads"], m["bot_contained"], m["bot_containment"]) == (
        5, 5, 1, 0.2)
    assert (m["offered"], m["last_sentiment_known"], m["last_negative_share"]) == (3, 2, 0.5)


def test_team_concurrency_is_weighted_by_online_time():
    agents = [{"online_ms": 100, "open_ms": 300, "idle_ms": 0},
              {"online_ms": 300, "open_ms": 300, "idle_ms": 50},
              {"online_ms": 0, "open_ms": 0, "idle_ms": 0}]
    m = logic.interval_metrics([], {}, agents, 10**9)[logic.OVERALL]
    assert m == {"agents_online": 2.0, "agents_online_ms": 400.0,
                 "agents_open_conversation_ms": 600.0, "agents_idle_ms": 50.0,
                 "team_concurrency": 1.5}


# --- the stage's flush while records flow: open intervals at most once per REFRESH_MS --------

class _Counting(KpiEngine):
    """The engine, noting each interval it recomputes and the watermark then."""

    def __init__(self) -> None:
        super().__init__()
        self.recomputed: list[tuple[tuple[str, int], int]] = []

    def _flush_interval(self, key, cause):  # type: ignore[no-untyped-def]
        self.recomputed.append((key, self._tenant(key[0]).watermark))
        return super()._flush_interval(key, cause)


def test_deferred_flushes_recompute_an_open_interval_once_per_refresh_and_end_with_the_same_figures() -> None:
    from parley.app.synthetic.simulate import simulate_day

    day = simulate_day(7, 0.3)
    eager, lazy = _Counting(), _Counting()
    eager_out: list[dict] = []
    lazy_out: list[dict] = []
    for e in day:  # one event per transaction: the worst case for an eager engine
        eager.apply(e)
        lazy.apply(e)
        eager_out += eager.flush()
        lazy_out += lazy.flush(defer=True)
    lazy_out += lazy.flush()  # the turn without input

    def last(out: list[dict]) -> dict[str, dict]:
        return {r["envelope"]["partition_key"]: {k: v for k, v in r.items() if k != "envelope"} for r in out}

    assert last(lazy_out) == last(eager_out)
    assert len(lazy.recomputed) < len(eager.recomputed)
    seen: dict[tuple[str, int], int] = {}
    for key, at in lazy.recomputed[:-10]:  # the last flush may come early: it is the final one
        closed = key[1] + INTERVAL_MS <= at - MAX_SL_MS
        if key in seen and not closed:  # an open interval: REFRESH_MS of event time apart
            assert at - seen[key] >= REFRESH_MS, (key, seen[key], at)
        seen[key] = at


def test_a_tenant_that_goes_quiet_gets_its_last_figures_while_another_tenant_goes_on() -> None:
    """One KPI task holds several tenants: the deferral follows each tenant's own records."""
    from parley.app.synthetic.simulate import simulate_day

    quiet = simulate_day(7, 0.3, tenant="quiet")[:400]
    busy = simulate_day(8, 0.3, tenant="busy")
    eager, lazy = _Counting(), _Counting()
    eager_out: list[dict] = []
    lazy_out: list[dict] = []
    for e in quiet:
        eager.apply(e)
        lazy.apply(e)
        eager_out += eager.flush()
        lazy_out += lazy.flush(defer=True)
    for e in busy[:50]:  # the other tenant goes on: every flush is deferred, as in the stage
        lazy.apply(e)
        lazy_out += lazy.flush(defer=True)

    def figures(out: list[dict], tenant: str) -> dict[str, dict]:
        return {r["envelope"]["partition_key"]: {k: v for k, v in r.items() if k != "envelope"} for r in out
                if r["envelope"]["tenant_id"] == tenant}

    assert figures(lazy_out, "quiet") == figures(eager_out, "quiet")
