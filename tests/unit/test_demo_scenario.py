"""The synthetic day of `parley demo`: seeded, scaled, varied, its roster fit for the routing
rules, its stories always there, and its agenda in event-time order."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from parley.app.demo.main import packaged
from parley.app.synthetic import texts
from parley.app.synthetic.cast import ROSTER, agents_for
from parley.app.synthetic.scenario import (
    BAD_AT_SCALE_1,
    CHANNELS,
    STORIES,
    BadRequest,
    Inbound,
    Presence,
    Redelivery,
    Say,
    Scenario,
    build_day,
)
from streams.enrich.logic import BuiltinEnricher
from streams.routing import config
from streams.threads.logic import references

DAY = date(2026, 11, 17)  # a Tuesday


@pytest.fixture(scope="module")
def full_day() -> Scenario:
    return build_day(42, 1.0, DAY)


@pytest.fixture(scope="module")
def small_day() -> Scenario:
    return build_day(42, 0.05, DAY)


def _says(s: Scenario) -> list[tuple[str, Say]]:
    out = []
    for c in s.conversations:
        out += [(c.key, say) for _, say in c.opening]
        out += [(c.key, say) for say in (*c.to_bot, *c.to_agent, c.nudge) if say is not None]
        out += [(c.key, say) for _, say in c.reopens]
    return out


def test_same_seed_same_day_other_seed_other_day() -> None:
    assert build_day(7, 0.1, DAY) == build_day(7, 0.1, DAY)
    assert build_day(7, 0.1, DAY).agenda != build_day(8, 0.1, DAY).agenda


@pytest.mark.parametrize("scale, regular", [(0.05, 15), (0.1, 30), (1.0, 300), (2.0, 600)])
def test_scale_multiplies_the_conversations(scale: float, regular: int) -> None:
    s = build_day(3, scale, DAY)
    stories = sum(c.story in ("unhappy", "vip") for c in s.conversations)
    assert len(s.conversations) - stories == regular
    assert len(s.agents) == max(3, round(12 * scale))


def test_scale_must_be_positive() -> None:
    with pytest.raises(ValueError):
        build_day(1, 0, DAY)


def test_every_channel_both_languages_and_every_intent(full_day: Scenario) -> None:
    inbound = [s for s in full_day.agenda if isinstance(s, Inbound)]
    channels = {m.channel for m in inbound} | {say.channel for _, say in _says(full_day) if say.channel}
    assert channels == set(CHANNELS)
    assert {m.language for m in inbound} == {"fr", "en"}
    assert {"order_status", "refund", "cancellation", "complaint", "billing", "delivery_problem",
            "greeting", "human_request"} <= {c.intent for c in full_day.conversations}
    assert any(m.image for m in inbound)
    assert all(m.subject for m in inbound if m.channel == "email")


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_the_stories_are_told_at_every_scale(scale: float) -> None:
    s = build_day(11, scale, DAY)
    told = defaultdict(list)
    for c in s.conversations:
        told[c.story].append(c)
    assert set(STORIES) | {"unhappy", "vip"} <= set(told)
    for c in told["link"] + told["merge"]:  # found again by its order, from another channel
        labels = [say.label for say in c.to_agent if say is not None]
        switch = next(say for say in c.to_agent if say is not None and say.label == "switch")
        assert labels[0] == "switch" and switch.channel != c.channel and c.order in switch.text
        assert c.order in c.opening[0][1].text
    for c in told["transfer"]:
        assert any(say is not None and say.label == "transfer_ask" for say in c.to_agent)
    for c in told["unhappy"]:  # the same order three times: a start and two reopens
        assert c.channel == "whatsapp" and len(c.reopens) == 2
    vip = told["vip"]
    assert len(vip) == 2 and vip[0].customer == vip[1].customer and vip[0].customer.tier in ("gold", "platinum")


def test_every_order_mention_is_a_reference_the_threads_processor_reads(full_day: Scenario) -> None:
    """A follow-up must land in its conversation's thread: the order reads the same everywhere."""
    for _, say in _says(full_day):
        for order in re.findall(r"CMD-\d{5}", say.text):
            assert references(say.text) == (order.replace("-", ""),), say.text


def test_thanks_to_the_bot_read_as_thanks_and_unhappy_texts_as_negative() -> None:
    e = BuiltinEnricher()
    for lang in ("fr", "en"):
        for t in texts.BOT_THANKS[lang]:
            r = e.enrich(t, "acme")
            assert "thanks" in [i.name for i in r.intents if i.confidence >= 0.5], t
        for t in (*texts.OPENING["complaint"][lang], *texts.UNHAPPY_AGAIN[lang]):
            r = e.enrich(texts.fill(t, order="CMD-12345"), "acme")
            assert r.sentiment_label == "negative", t


def test_the_roster_serves_every_queue_of_the_routing_rules() -> None:
    rules = config.load(packaged("routing.example.toml")).tenants["acme"]
    for scale in (0.05, 1.0):
        agents = agents_for(scale)
        for q in rules.queues:
            langs = q.languages or ("fr", "en")
            for lang in langs:
                assert any(q.name in a.queues and set(q.skills) <= set(a.skills) and lang in a.languages
                           for a in agents), (scale, q.name, lang)
    assert all(2 <= a.capacity <= 4 for a in ROSTER)
    assert all(b0 < b1 and any(s0 < b0 and b1 < s1 for s0, s1 in a.shifts) for a in ROSTER for b0, b1 in a.breaks)


def test_presence_online_away_offline_per_shift(full_day: Scenario) -> None:
    presence = defaultdict(list)
    for p in full_day.agenda:
        if isinstance(p, Presence):
            presence[p.agent.id].append(p.presence)
    assert set(presence) == {a.id for a in full_day.agents}
    for a in full_day.agents:
        states = presence[a.id]
        assert states.count("online") == len(a.shifts) + len(a.breaks)
        assert states.count("offline") == len(a.shifts) and states[-1] == "offline"


def test_redeliveries_repeat_a_message_right_after_it(full_day: Scenario) -> None:
    agenda = list(full_day.agenda)
    redeliveries = [(i, s) for i, s in enumerate(agenda) if isinstance(s, Redelivery)]
    assert redeliveries
    for i, r in redeliveries:
        assert agenda[i - 1] == r.original or agenda[i - 1].at_ms == r.at_ms == r.original.at_ms


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_every_kind_of_bad_request_is_present(scale: float) -> None:
    s = build_day(9, scale, DAY)
    flaws = [b.flaw for b in s.agenda if isinstance(b, BadRequest)]
    assert set(flaws) == set(BAD_AT_SCALE_1)
    if scale == 1.0:
        assert len(flaws) == sum(BAD_AT_SCALE_1.values())


def test_agenda_times_inside_the_day_whole_seconds_sorted_one_message_per_channel_second(
        small_day: Scenario, full_day: Scenario) -> None:
    for s in (small_day, full_day):
        tz = ZoneInfo(s.timezone)
        local = datetime.combine(s.day, datetime.min.time(), tz)
        utc_start, utc_end = (int(local.astimezone(UTC).timestamp() * 1000),
                              int((local + timedelta(days=1)).astimezone(UTC).timestamp() * 1000))
        times = [st.at_ms for st in s.agenda]
        assert times == sorted(times) and [st.seq for st in s.agenda] == list(range(len(times)))
        assert all(utc_start <= t < utc_end and s.start_ms <= t < s.end_ms for t in times)
        assert all(t % 1000 == 0 for t in times)
        inbound = [(m.channel, m.at_ms) for m in s.agenda if isinstance(m, Inbound)]
        assert len(inbound) == len(set(inbound))  # the driver finds a message by these


def test_bursts_at_opening_hours(full_day: Scenario) -> None:
    tz = ZoneInfo(full_day.timezone)
    per_hour: dict[int, int] = defaultdict(int)
    for c in full_day.conversations:
        per_hour[datetime.fromtimestamp(c.start_ms / 1000, tz).hour] += 1
    calm = (per_hour[11] + per_hour[16]) / 2
    assert per_hour[9] > 1.8 * calm and per_hour[14] > 1.8 * calm
    assert per_hour[7] + per_hour[8] > 0 and per_hour[19] + per_hour[20] > 0  # out of hours too
