"""The synthetic day (parley.app.synthetic.simulate): deterministic, varied, and delivered messily."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from parley.app.synthetic.simulate import shuffled_with_duplicates, simulate_day
from schemas.codec import Codec


def test_same_seed_same_day_other_seed_other_day():
    assert simulate_day(5, 0.2) == simulate_day(5, 0.2)
    assert simulate_day(5, 0.2) != simulate_day(6, 0.2)
    assert simulate_day(5, 0.2, tenant="beta", day="2025-03-04")[0]["envelope"]["tenant_id"] == "beta"


def test_a_day_has_everything_the_kpis_need():
    day = simulate_day(7, 0.5)
    types = Counter(e["envelope"]["event_type"] for e in day)
    assert set(types) == {
        "MessageReceived", "MessageSent", "MessageEnriched", "RoutingDecided",
        "ConversationStarted", "ConversationQueued", "ConversationAssigned",
        "ConversationTransferred", "ConversationResolved", "ConversationReopened",
        "AgentStatusChanged"}
    assert len({e["channel"] for e in day if e["envelope"]["event_type"] == "MessageReceived"}) >= 6
    assert {e["author_type"] for e in day if "author_type" in e} == {"agent", "bot", "automation"}
    assert {e["target_kind"] for e in day if "target_kind" in e} == {"agent", "queue", "bot"}
    assert {e["resolved_by"] for e in day if "resolved_by" in e} == {"agent", "bot", "customer"}
    assert {e["presence"] for e in day if "presence" in e} == {"online", "away", "offline"}
    times = [e["envelope"]["occurred_at"] for e in day]
    assert times == sorted(times)
    codec = Codec()
    assert all(codec.decode(codec.encode(e)) == e for e in day[:300])  # valid against the schemas


def test_delivery_is_out_of_order_with_redeliveries():
    day = simulate_day(7, 0.2)
    delivery = shuffled_with_duplicates(day, 1, duplicate_rate=0.1)
    ids = Counter(e["envelope"]["event_id"] for e in delivery)
    assert set(ids) == {e["envelope"]["event_id"] for e in day}
    assert 0.05 < sum(n - 1 for n in ids.values()) / len(day) < 0.15
    times = [e["envelope"]["occurred_at"] for e in delivery]
    assert sum(1 for a, b in pairwise(times) if b < a) > len(day) // 10
    assert shuffled_with_duplicates(day, 1) == shuffled_with_duplicates(day, 1)
