"""Routing decisions (streams/routing/logic.py), without a broker."""

from __future__ import annotations

import json
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.app.synthetic import events as f
from schemas.codec import Codec
from streams.routing import config, hours, logic
from streams.routing.hours import open_at
from streams.routing.logic import Signals
from streams.routing.state import Agent, CustomerRoute, Desk, ThreadRoute, View, Waiting
from streams.threads import logic as threads

T, MIN, HOUR, DAY = f.T0, f.MIN, f.HOUR, 24 * f.HOUR  # T: Monday 09:00 in Paris
NIGHT = T + 12 * HOUR  # Monday 21:00 in Paris
RULES_TOML = """
version = "test"
[tenants.acme]
timezone = "Europe/Paris"
[tenants.acme.hours.office]
label = "Mon-Fri 9:00-18:00"
mon = ["09:00-18:00"]
tue = ["09:00-18:00"]
wed = ["09:00-18:00"]
thu = ["09:00-18:00"]
fri = ["09:00-18:00"]
[tenants.acme.hours.always]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
[[tenants.acme.queues]]
name = "general"
hours = "office"
expected_response = "within the hour"
[[tenants.acme.queues]]
name = "billing"
intents = ["billing", "refund"]
skills = ["billing"]
hours = "office"
[[tenants.acme.queues]]
name = "english"
languages = ["en"]
hours = "office"
[[tenants.acme.queues]]
name = "vip"
skills = ["vip"]
hours = "always"
[[tenants.acme.queues]]
name = "escalation"
skills = ["escalation"]
hours = "office"
[tenants.acme.bot]
enabled = true
bot_id = "faq-bot"
intents = ["order_status", "greeting"]
max_turns = 2
[tenants.acme.vip]
tiers = { gold = 5 }
queue = "vip"
[tenants.acme.escalation]
min_contacts = 3
min_negative_contacts = 2
[tenants.acme.auto_reply]
texts.fr = "Fermé. Horaires : {hours}. Réouverture {next_open}, réponse {expected_response}."
"""
CFG = config.parse(RULES_TOML)
RULES = CFG.for_tenant("acme")


class Router:
    """The routing agent's three tables as dicts, plus the threads step in front of it."""

    def __init__(self, rules=RULES) -> None:
        self.rules = rules
        self.desk: dict[str, Desk] = {}
        self.threads: dict[str, ThreadRoute] = {}
        self.customers: dict[str, CustomerRoute] = {}
        self.thread_state: dict[str, threads.CustomerThreads] = {}
        self.n = 0

    def feed(self, *events) -> list[dict]:
        out = []
        for e in events:
            if not logic.wanted(e):
                continue
            tenant, tid, cid = logic.keys(e)
            view = View(tenant, self.desk.setdefault(tenant, Desk()), self.threads.get(f"{tenant}|{tid}"),
                        self.customers.get(f"{tenant}|{cid}"))
            after, produced = logic.step(view, e, self.rules, "v")
            self.desk[tenant] = after.desk
            if after.thread:
                self.threads[f"{tenant}|{after.thread.thread_id}"] = after.thread
            if after.customer:
                self.customers[f"{tenant}|{after.customer.customer_id}"] = after.customer
            out.extend(produced)
        return out

    def message(self, customer, text, at, *, language="fr", score=0.0, label="neutral", intents=(),
                channel="whatsapp"):
        """A customer message through threads, then its enrichment: what routing reads."""
        self.n += 1
        m = f.received("acme", f.identity(channel, customer), text, at, n=self.n, customer_id=customer)
        state = self.thread_state.get(customer, threads.CustomerThreads())
        state, produced = threads.step(state, m, threads.Rules())
        self.thread_state[customer] = state
        threaded = produced[-1]
        enriched = f.enriched(threaded, language=language, score=score, label=label, intents=intents)
        return [*produced, enriched]

    def contact(self, customer, at, **kw):
        return self.feed(*self.message(customer, "hello", at, **kw))


def online(agent, at=T - HOUR, **kw):
    kw.setdefault("capacity", 2)
    return f.agent_status("acme", agent, at, **kw)


def kinds(out):
    return [e["envelope"]["event_type"] for e in out]


def one(out, kind):
    (e,) = [e for e in out if e["envelope"]["event_type"] == kind]
    return e


def sig(intents=(), channel="whatsapp", language="fr", score=0.0, label="neutral"):
    return Signals(channel, language, tuple(intents), score, label)


# --- pure helpers ----------------------------------------------------------------------------

@pytest.mark.parametrize("signals, queue", [
    (sig([("refund", 0.9)]), "billing"),
    (sig([("greeting", 0.9), ("billing", 0.8)]), "billing"),
    (sig([("refund", 0.3)]), "general"),  # below the confidence floor
    (sig([("complaint", 0.9)], language="en"), "english"),
    (sig([]), "general"),
])
def test_select_queue(signals, queue) -> None:
    assert logic.select_queue(RULES, signals)[0].name == queue


W = Waiting("t1", "c1", "billing", 0, T, "whatsapp", "fr")


@pytest.mark.parametrize("agent, skills, ok", [
    (Agent("a", "online", 2, skills=("billing",)), ("billing",), True),
    (Agent("a", "online", 2), ("billing",), False),  # lacks the queue's skill
    (Agent("a", "away", 2, skills=("billing",)), ("billing",), False),
    (Agent("a", "online", 1, skills=("billing",), assigned=("x",)), ("billing",), False),  # full
    (Agent("a", "online", 2, languages=("en",)), (), False),
    (Agent("a", "online", 2, languages=("en", "fr")), (), True),
    (Agent("a", "online", 2, channels=("email",)), (), False),
    (Agent("a", "online", 2, queues=("general",)), (), False),
    (Agent("a", "online", 2, queues=("billing",)), (), True),
])
def test_qualifies(agent, skills, ok) -> None:
    assert logic.qualifies(agent, W, skills) is ok


def test_best_agent_is_least_loaded_then_least_utilised_then_longest_idle() -> None:
    agents = [Agent("a", "online", 3, assigned=("x", "y")), Agent("b", "online", 3, assigned=("z",)),
              Agent("c", "online", 5, assigned=("w",)), Agent("d", "online", 5, assigned=("v",), last_assigned_at=1)]
    assert logic.best_agent(agents, W, ()).agent_id == "c"
    assert logic.best_agent(agents[:2], W, ()).agent_id == "b"
    assert logic.best_agent(agents[2:], W, ()).agent_id == "c"


@pytest.mark.parametrize("at, is_open, next_open", [
    (T, True, None),  # Monday 09:00 Paris
    (T - MIN, False, T),  # 08:59
    (NIGHT, False, T + DAY),  # Monday 21:00 -> Tuesday 09:00
    (T + 4 * DAY + 10 * HOUR, False, T + 7 * DAY),  # Friday 19:00 -> Monday 09:00
])
def test_business_hours(at, is_open, next_open) -> None:
    assert open_at(RULES, RULES.queue("general"), at) == (is_open, next_open)


def test_business_hours_follow_daylight_saving_time() -> None:
    summer = 1_751_871_600_000  # Monday 2025-07-07 07:00 UTC = 09:00 Paris (UTC+2)
    assert open_at(RULES, RULES.queue("general"), summer) == (True, None)
    assert open_at(RULES, RULES.queue("general"), summer - MIN)[0] is False


@given(st.integers(min_value=T - 20 * DAY, max_value=T + 200 * DAY), st.integers(0, MIN - 1))
@settings(max_examples=300, deadline=None)
def test_business_hours_answer_the_same_for_every_instant_of_a_minute(at, within) -> None:
    """open_at remembers its answer per minute: any instant of the minute gets the uncached one."""
    minute = at - at % MIN
    queue = RULES.queue("general")
    open_at(RULES, queue, minute + (within * 7919) % MIN)  # cache the minute from another instant
    assert open_at(RULES, queue, minute + within) == hours._open_at(RULES, queue, minute + within)


# --- contacts to agents ----------------------------------------------------------------------

def test_a_contact_goes_to_the_least_loaded_qualified_agent() -> None:
    r = Router()
    r.feed(online("a1", capacity=2), online("a2", capacity=3))
    picked = []
    for i, c in enumerate(["c1", "c2", "c3"]):
        out = r.contact(c, T + i * MIN)
        assert kinds(out)[-3:] == ["RoutingDecided", "ConversationQueued", "ConversationAssigned"]
        picked.append(one(out, "ConversationAssigned")["agent_id"])
    # empty and equal: by id; then the emptier; then equal loads: the lower utilisation (1/3 < 1/2)
    assert picked == ["a1", "a2", "a2"]
    decided = one(out, "RoutingDecided")
    assert decided["target_kind"] == "agent" and decided["agent_id"] == "a2" and decided["queue"] == "general"
    assert decided["reasons"] == ["queue:general:default", "assigned:least_loaded:a2"]
    assert decided["business_hours_open"] is True and decided["rules_version"] == "v"
    for e in out:
        Codec().encode(e)


def test_no_agent_queues_and_an_agent_coming_online_takes_it() -> None:
    r = Router()
    out = r.contact("c1", T)
    assert kinds(out)[-2:] == ["RoutingDecided", "ConversationQueued"]
    assert one(out, "RoutingDecided")["reasons"][-1] == "waiting:no_agent_available"
    status = online("a1", at=T + 5 * MIN)
    out = r.feed(status)
    assigned = one(out, "ConversationAssigned")
    assert assigned["agent_id"] == "a1" and assigned["queue"] == "general"
    assert assigned["envelope"]["causation_id"] == status["envelope"]["event_id"]
    assert assigned["envelope"]["occurred_at"] == T + 5 * MIN
    assert assigned["envelope"]["partition_key"] == "acme|c1"


def test_skills_route_billing_to_a_billing_agent_only() -> None:
    r = Router()
    r.feed(online("generalist"), online("biller", skills=["billing"]))
    out = r.contact("c1", T, intents=[("refund", 0.9)])
    assert one(out, "ConversationAssigned")["agent_id"] == "biller"
    assert one(out, "RoutingDecided")["reasons"][0] == "queue:billing:intent=refund"


def test_capacity_is_respected_and_a_resolution_frees_the_agent() -> None:
    r = Router()
    r.feed(online("a1", capacity=1))
    first = one(r.contact("c1", T), "ConversationAssigned")
    second = r.contact("c2", T + MIN)
    assert "ConversationAssigned" not in kinds(second)
    resolved = f.thread_command("ConversationResolved", "acme", "c1", first["thread_id"], T + 10 * MIN,
                                resolved_by="agent", agent_id="a1")
    out = r.feed(resolved)
    assert one(out, "ConversationAssigned")["customer_id"] == "c2"
    assert r.feed(resolved) == []  # a repeated resolution frees nothing twice


def test_vip_is_prioritised_in_the_waiting_line() -> None:
    r = Router()
    r.feed(f.context("acme", "vip-1", T - DAY, tier="gold"))
    r.contact("c1", T)
    out = r.contact("vip-1", T + MIN)
    decided = one(out, "RoutingDecided")
    assert (decided["queue"], decided["priority"]) == ("vip", 5)
    assert "vip:gold" in decided["reasons"]
    out = r.feed(online("a1", at=T + 2 * MIN, capacity=1, skills=["vip"]))
    assert one(out, "ConversationAssigned")["customer_id"] == "vip-1"  # arrived later, served first


def test_vip_skips_the_bot() -> None:
    r = Router()
    r.feed(f.context("acme", "vip-1", T - DAY, tier="gold"))
    decided = one(r.contact("vip-1", T, intents=[("order_status", 0.9)]), "RoutingDecided")
    assert decided["target_kind"] != "bot"


def test_recurring_unhappy_customer_is_escalated() -> None:
    r = Router()
    r.feed(online("a1", skills=["escalation"]))
    for i in range(2):  # two earlier unhappy contacts, each resolved
        out = r.contact("c1", T + i * HOUR, score=-0.7, label="negative", intents=[("complaint", 0.9)])
        tid = out[0]["thread_id"]
        r.feed(f.thread_command("ConversationResolved", "acme", "c1", tid, T + i * HOUR + MIN, resolved_by="agent"))
        r.thread_state["c1"] = threads.step(r.thread_state["c1"], f.thread_command(
            "ConversationResolved", "acme", "c1", tid, T + i * HOUR + MIN, resolved_by="agent"), threads.Rules())[0]
    out = r.feed(*r.message("c1", "toujours rien !!", T + 9 * DAY, score=-0.8, label="negative"))
    decided = one(out, "RoutingDecided")
    assert decided["queue"] == "escalation" and decided["priority"] == 5
    assert any(x.startswith("escalation:recurring_unhappy:3_contacts:3_negative") for x in decided["reasons"])
    calm = Router()
    calm.feed(online("a1", skills=["escalation"]))
    assert one(calm.contact("c9", T, score=-0.8, label="negative"), "RoutingDecided")["queue"] == "general"


# --- the bot ---------------------------------------------------------------------------------

def test_routine_intent_goes_to_the_bot_first() -> None:
    r = Router()
    r.feed(online("a1"))
    out = r.contact("c1", T, intents=[("order_status", 0.9)])
    assert kinds(out)[-1:] == ["RoutingDecided"]
    decided = out[-1]
    assert (decided["target_kind"], decided["bot_id"], decided["queue"]) == ("bot", "faq-bot", "bot")
    assert decided["reasons"][-1] == "bot_first:order_status"
    assert r.desk["acme"].agents["a1"].load == 0


@pytest.mark.parametrize("follow_up, reason", [
    ({"intents": [("human_request", 0.9)]}, "handoff:human_request"),
    ({"intents": [("order_status", 0.9)], "score": -0.6, "label": "negative"}, "handoff:negative_sentiment"),
    ({"intents": []}, "handoff:bot_failure:unknown_intent"),
])
def test_bot_hands_off_to_a_human(follow_up, reason) -> None:
    r = Router()
    r.feed(online("a1"))
    r.contact("c1", T, intents=[("order_status", 0.9)])
    out = r.feed(*r.message("c1", "...", T + MIN, **follow_up))
    assert kinds(out)[-4:] == ["RoutingDecided", "ConversationTransferred", "ConversationQueued",
                               "ConversationAssigned"]
    decided, moved = one(out, "RoutingDecided"), one(out, "ConversationTransferred")
    assert reason in decided["reasons"] and decided["target_kind"] == "agent"
    assert (moved["from_queue"], moved["to_queue"]) == ("bot", "general")


def test_bot_hands_off_after_max_turns_and_on_its_own_request() -> None:
    r = Router()
    r.contact("c1", T, intents=[("order_status", 0.9)])
    assert r.contact("c1", T + MIN, intents=[("greeting", 0.9)]) [-1:] == []  # turn 1: stays
    out = r.contact("c1", T + 2 * MIN, intents=[("greeting", 0.9)])  # turn 2 = max_turns
    assert "handoff:bot_failure:max_turns" in one(out, "RoutingDecided")["reasons"]
    r2 = Router()
    out = r2.contact("c2", T, intents=[("greeting", 0.9)])
    tid = out[0]["thread_id"]
    bot_msg = f.sent("acme", f.identity("whatsapp", "c2"), "Let me get a colleague", T + MIN, author_type="bot",
                     author_id="faq-bot", customer_id="c2", thread_id=tid, template_name="handoff")
    out = r2.feed(bot_msg)
    assert one(out, "RoutingDecided")["reasons"][0] == "handoff:bot_requested"


# --- business hours --------------------------------------------------------------------------

def test_out_of_hours_contact_waits_and_gets_an_automated_reply() -> None:
    r = Router()
    r.feed(online("night-owl", at=NIGHT - HOUR, queues=["vip"]))  # online, but not for general
    out = r.contact("c1", NIGHT)
    assert kinds(out)[-3:] == ["RoutingDecided", "ConversationQueued", "MessageSent"]
    decided, reply = one(out, "RoutingDecided"), one(out, "MessageSent")
    assert decided["business_hours_open"] is False and decided["next_open_at"] == T + DAY
    assert "closed:business_hours" in decided["reasons"]
    assert reply["author_type"] == "automation" and reply["thread_id"] == decided["thread_id"]
    assert reply["text"] == ("Fermé. Horaires : Mon-Fri 9:00-18:00. Réouverture Tue 07 Jan 09:00 "
                             "(Europe/Paris), réponse within the hour.")
    assert reply["recipient"]["id"] == "c1" and reply["channel"] == "whatsapp"
    Codec().encode(reply)


def test_waiting_contact_is_assigned_once_the_queue_opens_in_event_time() -> None:
    r = Router()
    r.feed(online("a1", at=NIGHT - HOUR))  # an agent online all night
    out = r.contact("c1", NIGHT)
    assert "ConversationAssigned" not in kinds(out)
    assert r.desk["acme"].wake_at == T + DAY
    assert "ConversationAssigned" not in kinds(r.contact("c2", T + DAY - MIN))  # 08:59: still closed
    out = r.contact("c3", T + DAY + MIN)  # the first event after 09:00 wakes the queue
    assigned = [e for e in out if e["envelope"]["event_type"] == "ConversationAssigned"]
    assert [e["customer_id"] for e in assigned] == ["c1", "c2"]  # capacity 2, first come first served


# --- idempotency, replay, state --------------------------------------------------------------

def test_replayed_inputs_change_nothing() -> None:
    r = Router()
    inputs = [online("a1"), *r.message("c1", "hello", T),
              *r.message("c2", "refund", T + MIN, intents=[("refund", 0.9)])]
    first = r.feed(*inputs)
    state = ({k: d.copy() for k, d in r.desk.items()}, dict(r.threads), dict(r.customers))
    version = r.desk["acme"].version
    assert r.feed(*inputs) == []
    assert (r.desk, r.threads, r.customers) == state and r.desk["acme"].version == version
    fresh = Router()
    assert fresh.feed(*inputs) == first  # a replay decides the same, with the same ids


def test_an_enrichment_before_its_message_waits_for_it_and_decides_the_same() -> None:
    """Threads and enrich both write routing's input: the enrichment may come first."""
    in_order, reordered = Router(), Router()
    head = [online("a1"), *in_order.message("c0", "hello", T)]
    *message, enriched = in_order.message("c1", "refund please", T + MIN, intents=[("refund", 0.9)])
    in_order.feed(*head)
    reordered.feed(*head)
    expected = in_order.feed(*message, enriched)
    assert reordered.feed(enriched) == []  # parked: nothing decided without its message
    assert reordered.feed(enriched) == []  # a repeat while it waits changes nothing
    got = reordered.feed(*message)
    assert got == expected and "RoutingDecided" in kinds(got)
    assert one(got, "RoutingDecided")["channel"] == "whatsapp"
    assert (reordered.threads, reordered.desk) == (in_order.threads, in_order.desk)


def test_older_agent_status_is_ignored() -> None:
    r = Router()
    r.feed(online("a1", at=T), f.agent_status("acme", "a1", T - MIN, presence="offline"))
    assert r.desk["acme"].agents["a1"].presence == "online"


def test_step_equals_evolve_over_input_and_outputs() -> None:
    r = Router()
    r.feed(online("a1"), f.context("acme", "c1", T - DAY, tier="gold"))
    for e in r.message("c1", "hi", T)[:-1]:
        r.feed(e)
    *message, enriched = r.message("c1", "refund please", T + MIN, intents=[("refund", 0.9)])
    r.feed(*message)
    tenant, tid, cid = logic.keys(enriched)

    def view() -> View:  # the desk changes in place: each side gets its own copy
        return View(tenant, r.desk[tenant].copy(), r.threads.get(f"{tenant}|{tid}"), r.customers.get(f"{tenant}|{cid}"))

    after, out = logic.step(view(), enriched, RULES, "v")
    assert reduce(logic.evolve, [enriched, *out], view()) == after


def test_state_round_trips_json() -> None:
    r = Router()
    r.feed(online("a1", capacity=1), f.context("acme", "c1", T, tier="gold"))
    r.contact("c1", T)
    r.contact("c2", T + MIN)
    def via_json(x):
        return json.loads(json.dumps(x.to_json()))

    assert Desk.from_json(via_json(r.desk["acme"])) == r.desk["acme"]
    for t in r.threads.values():
        assert ThreadRoute.from_json(via_json(t)) == t
    for c in r.customers.values():
        assert CustomerRoute.from_json(via_json(c)) == c


@pytest.mark.parametrize("event, ok", [
    (f.agent_status("acme", "a1", T), True),
    (f.context("acme", "c1", T), True),
    (f.received("acme", f.identity("sms", "+1"), "x", T, customer_id="c", thread_id="t"), True),
    (f.received("acme", f.identity("sms", "+1"), "x", T, customer_id="c"), False),  # not threaded
    (f.sent("acme", f.identity("sms", "+1"), "x", T, author_type="agent", customer_id="c", thread_id="t"), False),
    (f.sent("acme", f.identity("sms", "+1"), "x", T, author_type="bot", customer_id="c", thread_id="t"), True),
])
def test_wanted(event, ok) -> None:
    assert logic.wanted(event) is ok


def test_unknown_tenant_uses_the_fallback_rules() -> None:
    assert CFG.for_tenant("globex") is config.DEFAULT_RULES
    assert config.load(None).for_tenant("x").default_queue == "general"


def test_the_desk_keeps_its_line_sorted_and_its_indexes_right_under_any_changes() -> None:
    """The desk changes in place (a long line must not make each event slower); after any
    sequence of changes it equals the same line rebuilt from scratch, and reports what changed."""
    import random as rnd_mod

    rnd = rnd_mod.Random(4)
    desk, model = Desk(), {}
    for step in range(600):
        tid = f"t{rnd.randrange(60)}"
        if rnd.random() < 0.6:
            w = Waiting(tid, f"c{tid}", rnd.choice(["general", "billing"]), rnd.choice([0, 5]), rnd.randrange(1000))
            desk.enqueue(w)
            model[tid] = w
        else:
            desk.dequeue(tid)
            model.pop(tid, None)
        if step % 50 == 0:
            agent = Agent(f"a{step}", presence="online", capacity=2, assigned=(tid,))
            desk.set_agent(agent)
            assert desk.holder(tid) == agent.agent_id
    assert desk.waiting == tuple(sorted(model.values(), key=lambda w: w.order))
    assert desk.waiting_queues() == sorted({w.queue for w in model.values()})
    assert Desk.from_json(json.loads(json.dumps(desk.to_json()))) == desk
    head, changed = desk.take_changes()
    assert head and set(changed) <= {f"t{i}" for i in range(60)} and desk.take_changes() == (False, [])


# --- dispatch: heads of the kinds' lines = the whole line walked in order ---------------------

def _walk_the_line(desk: Desk, rules, at: int) -> list[tuple[str, str]]:
    """The reference: walk every waiting contact by priority and arrival, skip those whose queue
    is closed or that no free agent may take, give each other one to its best free agent."""
    agents = dict(desk.agents)
    line = sorted(desk.waiting, key=lambda w: w.order)
    out = []
    for w in line:
        if not open_at(rules, rules.queue(w.queue), at)[0]:
            continue
        agent = logic.best_agent([a for a in agents.values() if a.available], w, rules.queue(w.queue).skills)
        if agent is None:
            continue
        out.append((w.thread_id, agent.agent_id))
        agents[agent.agent_id] = Agent(agent.agent_id, agent.presence, agent.capacity, agent.skills,
                                       agent.languages, agent.channels, agent.queues,
                                       tuple(sorted((*agent.assigned, w.thread_id))), agent.version,
                                       max(agent.last_assigned_at, at))
    return out


_agent = st.builds(
    lambda i, cap, skills, langs, chans: Agent(f"a{i}", "online", cap, tuple(skills), tuple(langs), tuple(chans)),
    st.integers(0, 5), st.integers(0, 3), st.lists(st.sampled_from(["billing", "vip"]), max_size=2, unique=True),
    st.lists(st.sampled_from(["fr", "en"]), max_size=1), st.lists(st.sampled_from(["sms", "whatsapp"]), max_size=1))
_waiting = st.builds(
    lambda i, q, prio, dt, chan, lang: Waiting(f"t{i:03}", f"c{i}", q, prio, T - dt * MIN, chan, lang),
    st.integers(0, 60), st.sampled_from(["general", "billing", "vip", "english"]), st.integers(0, 5),
    st.integers(0, 30), st.sampled_from(["sms", "whatsapp"]), st.sampled_from([None, "fr", "en"]))


@settings(max_examples=300, deadline=None)
@given(agents=st.lists(_agent, max_size=6, unique_by=lambda a: a.agent_id),
       waiting=st.lists(_waiting, max_size=40, unique_by=lambda w: w.thread_id),
       at=st.sampled_from([T, NIGHT]))
def test_dispatch_assigns_as_a_walk_of_the_whole_line_would(agents, waiting, at) -> None:
    desk = Desk({a.agent_id: a for a in agents}, waiting)
    expected = _walk_the_line(desk, RULES, at)
    cause = f.received("acme", f.identity("sms", "+33600000001"), "x", at, n=999)
    _, out = logic.dispatch(View("acme", desk), cause, RULES)
    assert [(e["thread_id"], e["agent_id"]) for e in out] == expected
    assert not ({tid for tid, _ in expected} & {w.thread_id for w in desk.waiting})  # taken off the line
