"""Routing: where each new contact goes and why (pure logic).

Consumes (all re-keyed by tenant on ``routing.by-tenant``): from ``parley.conversations``
    ConversationStarted/Reopened (a new contact), MessageReceived (where replies go),
    MessageEnriched (the trigger: language, sentiment, intents), bot MessageSent (hand-off
    requests), ConversationResolved and agent-API ConversationTransferred; AgentStatusChanged
    (``parley.agents.status``); CustomerContextUpdated (``parley.customers.context``: the tier).
Produces, to ``parley.conversations`` (key tenant|customer): RoutingDecided (target, priority,
    reasons), ConversationTransferred (bot hand-off), ConversationQueued, ConversationAssigned,
    and the out-of-hours MessageSent (author_type automation).
Key: tenant. Agents' presence and load must be one consistent state across a tenant's
    customers, so a tenant's desk (agents + waiting contacts) lives on one partition.
State: :class:`~streams.routing.state.View`: the tenant's desk, the event's thread route and
    customer route (three tables, co-partitioned on the tenant-keyed stream).

A new contact (the first enriched customer message of a started or reopened thread):
1. queue by the rules: the best intent's queue, else a channel/language queue, else the default;
2. VIP tiers raise the priority (and may pick the VIP queue); a recurring unhappy customer
   (negative now, ``min_contacts`` contacts of which ``min_negative_contacts`` negative within
   ``window_days``) goes to the escalation queue;
3. a routine intent goes to the bot first (never for VIPs with ``skip_bot``, escalations or an
   explicit request for a human); the bot hands off on a human request, negative sentiment, an
   unknown intent, too many turns, or a bot message with the hand-off template;
4. otherwise the contact is queued and the least-loaded qualified available agent under capacity
   takes it (load, then utilisation, then longest since last assignment, then id); skills are
   the queue's skills, the agent's languages and channels; out of business hours it waits and
   the customer gets an automated reply with the hours and the expected response time.
Waiting contacts are assigned, by priority then arrival, when an agent comes online or frees up,
or when a queue's opening hour has passed by the time of the next event (event time).

Idempotency: an event already applied to its thread is ignored (bounded ids per thread); agent
    status and customer tier are last-writer-wins by (occurred_at, event_id); assignments and
    queues are sets keyed by thread id; a repeated or outdated input causes nothing.
Replay: ids derive from input ids and times from ``occurred_at``, so a re-run emits the same
    events with the same ids. Which of several qualified agents takes a contact depends on the
    order of the tenant stream: re-reading the same repartition topic decides exactly the same,
    but a fresh re-run that interleaves different customers' events differently may pick
    another equally qualified agent (or queue a contact where capacity ran out). Removing that
    needs an event-time reorder buffer in front of routing (not done).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas import topics
from schemas.events import caused_by, make
from streams.frozen import replace
from streams.routing.config import Queue, TenantRules
from streams.routing.hours import describe, open_at
from streams.routing.state import Agent, Contact, CustomerRoute, Desk, Kind, ThreadRoute, View, Waiting

PRODUCER = "streams/routing"
MAX_HANDLED = 64
MAX_CONTACTS = 50
MAX_ADDRESSES = 8
MAX_PARKED = 8  # enrichments waiting for their message, per thread
DAY_MS = 24 * 3600 * 1000
THREAD_EVENTS = frozenset({"ConversationStarted", "ConversationReopened", "MessageReceived", "MessageEnriched",
                           "MessageSent", "ConversationResolved", "ConversationTransferred",
                           "ConversationQueued", "ConversationAssigned", "RoutingDecided"})
INPUT_TYPES = frozenset({"ConversationStarted", "ConversationReopened", "MessageReceived", "MessageEnriched",
                         "MessageSent", "ConversationResolved", "ConversationTransferred",
                         "AgentStatusChanged", "CustomerContextUpdated"})
DISPATCH_ON = frozenset({"AgentStatusChanged", "ConversationResolved", "ConversationTransferred"})


@dataclass(frozen=True)
class Signals:
    """What the enrichment said about the customer's latest message."""

    channel: str | None
    language: str | None
    intents: tuple[tuple[str, float], ...]  # best first
    score: float
    label: str

    def named(self, names: Iterable[str], min_confidence: float) -> list[str]:
        wanted = set(names)
        return [n for n, c in self.intents if n in wanted and c >= min_confidence]

    def top(self, min_confidence: float) -> list[str]:
        return [n for n, c in self.intents if c >= min_confidence]


def wanted(event: Mapping[str, Any]) -> bool:
    """Whether routing needs this event (routing's own outputs are already applied)."""
    env = event["envelope"]
    if env["event_type"] not in INPUT_TYPES or env.get("producer") == PRODUCER:
        return False
    if env["event_type"] == "MessageSent":
        return event.get("author_type") == "bot" and bool(event.get("thread_id"))
    return env["event_type"] != "MessageReceived" or bool(event.get("thread_id"))


def keys(event: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(tenant, thread id, customer id) whose state the event reads and writes."""
    tenant = event["envelope"]["tenant_id"]
    kind = event["envelope"]["event_type"]
    if kind == "AgentStatusChanged":
        return tenant, None, None
    if kind == "CustomerContextUpdated":
        return tenant, None, event["customer_id"]
    return tenant, event.get("thread_id"), event.get("customer_id")


# --- step = decide + evolve ------------------------------------------------------------------

def decide(view: View, event: dict[str, Any], rules: TenantRules, rules_version: str = "") -> list[dict[str, Any]]:
    return step(view, event, rules, rules_version)[1]


def step(view: View, event: dict[str, Any], rules: TenantRules,
         rules_version: str = "") -> tuple[View, list[dict[str, Any]]]:
    """Apply ``event``, decide what it causes, apply that too; returns the state and outputs."""
    if _already(view, event):
        return view, []
    kind = event["envelope"]["event_type"]
    if kind in ("MessageReceived", "MessageEnriched") and view.thread is not None and view.thread.stage == "human":
        return view, []  # a human has the thread: its messages decide nothing here (see below)
    if kind == "MessageEnriched" and not _message_seen(view, event):
        return _park(view, event), []
    version = view.desk.version
    before, view = view, evolve(view, event)
    if (view is before or view == before) and view.desk.version == version:
        return view, []  # a repeated or outdated status/context: nothing changes, nothing is caused
    out: list[dict[str, Any]] = []
    if kind == "MessageEnriched":
        view, out = _on_enriched(view, event, rules, rules_version)
    elif kind == "MessageSent":
        view, out = _on_bot_message(view, event, rules, rules_version)
    at = event["envelope"]["occurred_at"]
    wake = view.desk.wake_at is not None and at >= view.desk.wake_at
    if kind in DISPATCH_ON or wake:
        view, more = dispatch(view, event, rules)
        out += more
    if kind == "MessageReceived":
        view, more = _unpark(view, event, rules, rules_version)
        out += more
    return view, out


# The conversations stage sends a message and then its MessageEnriched, sequenced together, so
# the enrichment normally comes second; should it come first, it waits in its thread until its
# message is there, so a decision always sees the same state (channel, address, stage).
# Once a human has a thread, its messages change nothing here: the conversations stage stops
# sending them when it learns of the decision, which it does some time after routing took it,
# so whether a later message still comes must not matter. A contact is "negative" (for the
# recurring-unhappy escalation) if a message was negative while routing or the bot held it.

def _message_seen(view: View, enriched: Mapping[str, Any]) -> bool:
    return view.thread is not None and enriched["message_event_id"] in view.thread.handled


def _park(view: View, enriched: dict[str, Any]) -> View:
    view = _ensure(view, enriched)
    t = view.thread
    if t is None or any(p["envelope"]["event_id"] == enriched["envelope"]["event_id"] for p in t.parked):
        return view
    return replace(view, thread=replace(t, parked=(*t.parked, enriched)[-MAX_PARKED:]))


def _unpark(view: View, message: Mapping[str, Any], rules: TenantRules,
            version: str) -> tuple[View, list[dict[str, Any]]]:
    t = view.thread
    mid = message["envelope"]["event_id"]
    ready = [p for p in t.parked if p["message_event_id"] == mid] if t is not None else []
    if not ready:
        return view, []
    t = _thread(view)
    view = replace(view, thread=replace(t, parked=tuple(p for p in t.parked if p["message_event_id"] != mid)))
    out: list[dict[str, Any]] = []
    for enriched in ready:
        view, more = step(view, enriched, rules, version)
        out += more
    return view, out


def _already(view: View, event: Mapping[str, Any]) -> bool:
    return view.thread is not None and event["envelope"]["event_id"] in view.thread.handled


def _on_enriched(view: View, ev: dict[str, Any], rules: TenantRules,
                 version: str) -> tuple[View, list[dict[str, Any]]]:
    thread = _thread(view)
    signals = Signals(ev["channel"], ev.get("language"), tuple((i["name"], i["confidence"]) for i in ev["intents"]),
                      ev["sentiment_score"], ev["sentiment_label"])
    if thread.stage == "new":  # "resolved": the message belonged to the conversation just closed
        return route(view, ev, signals, rules, version)
    if thread.stage == "bot":
        reasons = handoff_reasons(thread, signals, rules)
        if reasons:
            return route(view, ev, signals, rules, version, handoff=reasons)
    return view, []


def _on_bot_message(view: View, msg: dict[str, Any], rules: TenantRules,
                    version: str) -> tuple[View, list[dict[str, Any]]]:
    thread = view.thread
    if thread is None or thread.stage != "bot" or msg.get("template_name") != rules.bot.handoff_template:
        return view, []
    signals = Signals(thread.channel, thread.language, thread.intents, *thread.sentiment)
    return route(view, msg, signals, rules, version, handoff=["handoff:bot_requested"])


def handoff_reasons(thread: ThreadRoute, s: Signals, rules: TenantRules) -> list[str]:
    """Why a conversation with the bot should go to a human now (empty: stay with the bot)."""
    bot = rules.bot
    reasons = []
    if s.named(bot.handoff_intents, bot.min_confidence):
        reasons.append("handoff:human_request")
    if bot.handoff_on_negative and _negative(s, rules):
        reasons.append("handoff:negative_sentiment")
    if bot.handoff_on_unknown_intent and not s.top(bot.min_confidence):
        reasons.append("handoff:bot_failure:unknown_intent")
    if thread.bot_turns >= bot.max_turns:
        reasons.append("handoff:bot_failure:max_turns")
    return reasons


# --- routing a contact -----------------------------------------------------------------------

def route(view: View, cause: dict[str, Any], s: Signals, rules: TenantRules, version: str,
          handoff: list[str] | None = None) -> tuple[View, list[dict[str, Any]]]:
    """Decide the target of the thread's contact: bot, or a queue and maybe an agent."""
    at = cause["envelope"]["occurred_at"]
    queue, why = select_queue(rules, s)
    reasons = [*(handoff or []), why]
    priority = 0
    tier = view.customer.tier if view.customer else None
    vip_priority = rules.vip.tiers.get(tier) if tier is not None else None
    vip = vip_priority is not None
    if vip_priority is not None:
        priority = vip_priority
        reasons.append(f"vip:{tier}")
        if rules.vip.queue:
            queue = rules.queue(rules.vip.queue)
    unhappy = recurring_unhappy(view.customer, s, rules, at)
    if unhappy:
        queue = rules.queue(rules.escalation.queue)
        priority = max(priority, rules.escalation.priority)
        reasons.append(unhappy)
    human = bool(s.named(rules.bot.handoff_intents, rules.intent_min_confidence))
    if human:
        reasons.append("human_request")
    routine = s.named(rules.bot.intents, rules.bot.min_confidence)
    if rules.bot.enabled and routine and not (handoff or unhappy or human or (vip and rules.vip.skip_bot)):
        decided = _decided(view, cause, rules, version, "bot", rules.bot.queue, priority,
                           [*reasons, f"bot_first:{routine[0]}"], bot_id=rules.bot.bot_id)
        return evolve(view, decided), [decided]
    return _to_human(view, cause, rules, version, queue, priority, reasons, handoff is not None)


def _to_human(view: View, cause: dict[str, Any], rules: TenantRules, version: str, queue: Queue,
              priority: int, reasons: list[str], from_bot: bool) -> tuple[View, list[dict[str, Any]]]:
    at = cause["envelope"]["occurred_at"]
    thread = _thread(view)
    is_open, next_open = open_at(rules, queue, at)
    # The decision is applied first, as it is listed first; its target (agent or queue) does
    # not change what it does to the state, so the provisional one stands in until dispatch.
    view = evolve(view, _decided(view, cause, rules, version, "queue", queue.name, priority, reasons))
    out = []
    if from_bot:
        out.append(_thread_event(cause, view, "ConversationTransferred", from_queue=rules.bot.queue,
                                 from_agent_id=None, to_queue=queue.name, to_agent_id=None,
                                 reason=",".join(r for r in reasons if r.startswith("handoff:"))))
    out.append(_thread_event(cause, view, "ConversationQueued", named=f"{queue.name}|{priority}", queue=queue.name,
                             priority=priority))
    for e in out:
        view = evolve(view, e)
    view, assigned = dispatch(view, cause, rules)
    agent_id = view.desk.holder(thread.thread_id)
    if agent_id:
        reasons.append(f"assigned:least_loaded:{agent_id}")
    elif not is_open:
        reasons.append("closed:business_hours")
    else:
        reasons.append("waiting:no_agent_available")
    decided = _decided(view, cause, rules, version, "agent" if agent_id else "queue", queue.name, priority,
                       reasons, agent_id=agent_id, is_open=is_open, next_open=next_open)
    mine = [e for e in assigned if e["thread_id"] == thread.thread_id]
    others = [e for e in assigned if e["thread_id"] != thread.thread_id]
    out = [decided, *out, *mine]
    if not is_open and rules.auto_reply.enabled and _address(view, cause)[2]:
        out.append(_auto_reply(cause, view, rules, queue, next_open))
    return view, out + others


def select_queue(rules: TenantRules, s: Signals) -> tuple[Queue, str]:
    """The queue for a contact and the reason: by intent first, then channel/language."""
    def fits(q: Queue) -> bool:
        return (not q.channels or s.channel in q.channels) and (not q.languages or s.language in q.languages)

    for intent in s.top(rules.intent_min_confidence):
        for q in rules.queues:
            if intent in q.intents and fits(q):
                return q, f"queue:{q.name}:intent={intent}"
    for q in rules.queues:
        if not q.intents and (q.channels or q.languages) and fits(q):
            return q, f"queue:{q.name}:" + ("channel" if q.channels else "language")
    return rules.queue(rules.default_queue), f"queue:{rules.default_queue}:default"


def recurring_unhappy(customer: CustomerRoute | None, s: Signals, rules: TenantRules, at: int) -> str | None:
    """The escalation reason if this customer keeps coming back unhappy, else None."""
    esc = rules.escalation
    if not esc.enabled or customer is None or not _negative(s, rules):
        return None
    recent = [c for c in customer.contacts if at - esc.window_days * DAY_MS <= c.started_at <= at]
    negative = sum(c.negative for c in recent)
    if len(recent) >= esc.min_contacts and negative >= esc.min_negative_contacts:
        return f"escalation:recurring_unhappy:{len(recent)}_contacts:{negative}_negative:{esc.window_days}d"
    return None


def _negative(s: Signals, rules: TenantRules) -> bool:
    return s.label == "negative" or s.score <= rules.escalation.negative_threshold


# --- assignment ------------------------------------------------------------------------------

def qualifies(agent: Agent, w: Waiting, skills: Iterable[str]) -> bool:
    """An available agent who serves the queue, channel and language and has the skills."""
    return (agent.available
            and (not agent.queues or w.queue in agent.queues)
            and (not agent.channels or w.channel in agent.channels)
            and (not w.language or not agent.languages or w.language in agent.languages)
            and set(skills) <= set(agent.skills))


def best_agent(agents: Iterable[Agent], w: Waiting, skills: Iterable[str]) -> Agent | None:
    """The least-loaded qualified agent: load, utilisation, longest since assigned, id."""
    skills = tuple(skills)
    fit = [a for a in agents if qualifies(a, w, skills)]
    return min(fit, key=lambda a: (a.load, a.load / a.capacity, a.last_assigned_at, a.agent_id), default=None)


def dispatch(view: View, cause: dict[str, Any], rules: TenantRules) -> tuple[View, list[dict[str, Any]]]:
    """Assign waiting contacts whose queue is open to available agents, best first."""
    at = cause["envelope"]["occurred_at"]
    desk = view.desk
    out = []
    free = {a.agent_id: a for a in desk.agents.values() if a.available}
    is_open = _open_queues(desk, rules, at) if free else {}
    # Walking the line in order and skipping the contacts no free agent may take is the same
    # as taking, again and again, the first of the heads of the kinds' lines that a free agent
    # may take; free agents only shrink, so a kind found unfit stays so
    unfit: set[Kind] = {kind for _, kind in desk.heads() if not is_open.get(kind[0], (False,))[0]}
    while free:
        first = min(((head, kind) for head, kind in desk.heads() if kind not in unfit), default=None)
        if first is None:
            break
        w = desk.entry(first[0][2])
        assert w is not None  # a line holds the order keys of waiting entries only
        agent = best_agent(free.values(), w, _queue(rules, w.queue).skills)
        if agent is None:
            unfit.add(first[1])
            continue
        env = caused_by(cause, "ConversationAssigned", id_suffix=f"{w.thread_id}|{agent.agent_id}",
                        producer=PRODUCER, partition_key=topics.ROUTING_DECISIONS.key(view.tenant, w.customer_id))
        e = make("ConversationAssigned", env, thread_id=w.thread_id, customer_id=w.customer_id,
                 channel=w.channel, agent_id=agent.agent_id, queue=w.queue)
        view = evolve(view, e)
        out.append(e)
        if desk.entry(w.thread_id) is not None:  # not taken off the line (never expected): move on
            unfit.add(first[1])
        now = desk.agents[agent.agent_id]
        if now.available:
            free[agent.agent_id] = now
        else:
            del free[agent.agent_id]
    return _rewake(view, rules, at), out


def _rewake(view: View, rules: TenantRules, at: int) -> View:
    opens = [n for _, n in _open_queues(view.desk, rules, at).values() if n is not None]
    view.desk.set_wake(min(opens, default=None))
    return view


def _open_queues(desk: Desk, rules: TenantRules, at: int) -> dict[str, tuple[bool, int | None]]:
    """(open, next opening) of every queue with waiting contacts."""
    return {name: open_at(rules, _queue(rules, name), at) for name in desk.waiting_queues()}


def _queue(rules: TenantRules, name: str) -> Queue:
    """The queue's rules; a queue removed from the file since: no skills, always open."""
    return next((q for q in rules.queues if q.name == name), Queue(name=name))


# --- evolve ----------------------------------------------------------------------------------

def evolve(view: View, e: Mapping[str, Any]) -> View:
    """Apply one event (an input or a decision) to the view."""
    kind = e["envelope"]["event_type"]
    if kind == "AgentStatusChanged":
        _agent_status(view.desk, e)
        return view
    if kind == "CustomerContextUpdated":
        return replace(view, customer=_context(view.customer, e))
    if kind not in THREAD_EVENTS or _already(view, e):
        return view
    view = _ensure(view, e)
    handler = _EVOLVE.get(kind)
    if handler is not None:
        view = handler(view, e)
    t = view.thread
    if t is not None and t.thread_id == e.get("thread_id"):
        view = replace(view, thread=replace(t, handled=(*t.handled, e["envelope"]["event_id"])[-MAX_HANDLED:]))
    return view


def _thread(view: View) -> ThreadRoute:
    """The view's thread, for the steps that only run on one (``_ensure`` made it)."""
    if view.thread is None:
        raise ValueError("a thread step on a view without its thread")
    return view.thread


def _ensure(view: View, e: Mapping[str, Any]) -> View:
    """The thread route of ``e``'s own thread, created when first seen."""
    tid = e.get("thread_id")
    if view.thread is None and tid and e.get("customer_id") and e["envelope"]["event_type"] != "ConversationAssigned":
        view = replace(view, thread=ThreadRoute(tid, e["customer_id"]))
        if e["envelope"]["event_type"] == "MessageReceived":
            view = _new_contact(view, e)  # routing joined mid-stream: count the contact now
    if view.customer is None and e.get("customer_id") and view.thread and view.thread.customer_id == e["customer_id"]:
        view = replace(view, customer=CustomerRoute(e["customer_id"]))
    return view


def _started(view: View, e: Mapping[str, Any]) -> View:
    t = _thread(view)
    if e["envelope"]["event_type"] == "ConversationStarted" and t.stage != "new":
        return view  # arrived after its thread was already routed (two producers): keep the route
    view = replace(view, thread=replace(t, stage="new", queue=None, priority=0, bot_turns=0,
                                        channel=e.get("channel") or t.channel))
    return _new_contact(view, e)


def _new_contact(view: View, e: Mapping[str, Any]) -> View:
    c = view.customer or CustomerRoute(e["customer_id"])
    contact = Contact(e["thread_id"], e["envelope"]["occurred_at"])
    contacts = tuple(sorted((*c.contacts, contact), key=lambda x: -x.started_at))[:MAX_CONTACTS]
    return replace(view, customer=replace(c, contacts=contacts))


def _received(view: View, e: Mapping[str, Any]) -> View:
    t = _thread(view)
    address = (e["envelope"]["event_id"], e["channel"], e["channel_account_id"], dict(e["sender"]))
    return replace(view, thread=replace(t, channel=e["channel"], account=e["channel_account_id"],
                                        recipient=dict(e["sender"]),
                                        addresses=(*t.addresses, address)[-MAX_ADDRESSES:]))


def _enriched(view: View, e: Mapping[str, Any]) -> View:
    t = _thread(view)
    t = replace(t, language=e.get("language") or t.language,
                intents=tuple((i["name"], i["confidence"]) for i in e["intents"]),
                sentiment=(e["sentiment_score"], e["sentiment_label"]),
                bot_turns=t.bot_turns + (t.stage == "bot"))
    view = replace(view, thread=t)
    c = view.customer
    if e["sentiment_label"] == "negative" and c is not None:
        contacts = list(c.contacts)
        i = next((i for i, x in enumerate(contacts) if x.thread_id == t.thread_id), None)
        if i is not None:
            contacts[i] = replace(contacts[i], negative=True)
            view = replace(view, customer=replace(c, contacts=tuple(contacts)))
    return view


def _decided(view: View, cause: dict[str, Any], rules: TenantRules, version: str, kind: str, queue: str,
             priority: int, reasons: list[str], agent_id: str | None = None, bot_id: str | None = None,
             is_open: bool = True, next_open: int | None = None) -> dict[str, Any]:
    message_id = cause.get("message_event_id") or cause["envelope"]["event_id"]
    return _thread_event(cause, view, "RoutingDecided", named=f"{kind}|{queue}|{agent_id or bot_id or ''}",
                         message_event_id=message_id, target_kind=kind,
                         queue=queue, agent_id=agent_id, bot_id=bot_id, priority=priority, reasons=reasons,
                         business_hours_open=is_open, next_open_at=next_open, rules_version=version)


def _on_decided(view: View, e: Mapping[str, Any]) -> View:
    stage = "bot" if e["target_kind"] == "bot" else "human"
    t = _thread(view)
    return replace(view, thread=replace(t, stage=stage, queue=e["queue"], priority=e["priority"],
                                        bot_turns=0 if stage == "bot" else t.bot_turns))


def _queued(view: View, e: Mapping[str, Any]) -> View:
    t = view.thread if view.thread and view.thread.thread_id == e["thread_id"] else None
    existing = view.desk.entry(e["thread_id"])
    _unassign(view.desk, e["thread_id"])
    view.desk.enqueue(Waiting(e["thread_id"], e["customer_id"], e["queue"], e["priority"],
                              existing.enqueued_at if existing else e["envelope"]["occurred_at"],
                              e.get("channel") or (t.channel if t else None), t.language if t else None))
    return view


def _assigned(view: View, e: Mapping[str, Any]) -> View:
    desk = view.desk
    _unassign(desk, e["thread_id"])
    agent = desk.agents.get(e["agent_id"]) or Agent(e["agent_id"])
    desk.set_agent(replace(agent, assigned=tuple(sorted((*agent.assigned, e["thread_id"]))),
                           last_assigned_at=max(agent.last_assigned_at, e["envelope"]["occurred_at"])))
    return view


def _transferred(view: View, e: Mapping[str, Any]) -> View:
    """A transfer decided elsewhere (agent API), or routing's own bot hand-off."""
    if e.get("to_agent_id"):
        view = _assigned(view, {**e, "agent_id": e["to_agent_id"]})
    elif e.get("to_queue") and e["envelope"].get("producer") != PRODUCER:
        prio = view.thread.priority if view.thread else 0
        view = _queued(view, {**e, "queue": e["to_queue"], "priority": prio})
    if view.thread is not None and view.thread.thread_id == e["thread_id"]:
        view = replace(view, thread=replace(view.thread, stage="human", queue=e.get("to_queue") or view.thread.queue))
    return view


def _resolved(view: View, e: Mapping[str, Any]) -> View:
    _unassign(view.desk, e["thread_id"])
    if view.thread is not None:
        view = replace(view, thread=replace(view.thread, stage="resolved"))
    return view


def _unassign(desk: Desk, thread_id: str) -> None:
    """Take the thread out of its agent's hands and out of the waiting line."""
    holder = desk.holder(thread_id)
    if holder is not None:
        a = desk.agents[holder]
        desk.set_agent(replace(a, assigned=tuple(x for x in a.assigned if x != thread_id)))
    desk.dequeue(thread_id)


def _agent_status(desk: Desk, e: Mapping[str, Any]) -> None:
    version = (e["envelope"]["occurred_at"], e["envelope"]["event_id"])
    agent = desk.agents.get(e["agent_id"]) or Agent(e["agent_id"])
    if version <= agent.version:
        return  # an older or repeated status
    desk.set_agent(replace(agent, presence=e["presence"], capacity=e["capacity"], skills=tuple(e["skills"]),
                           languages=tuple(e["languages"]), channels=tuple(e["channels"]),
                           queues=tuple(e["queues"]), version=version))


def _context(c: CustomerRoute | None, e: Mapping[str, Any]) -> CustomerRoute:
    c = c or CustomerRoute(e["customer_id"])
    version = (e["envelope"]["occurred_at"], e["envelope"]["event_id"])
    if e.get("tier") is None or version <= c.tier_version:
        return c
    return replace(c, tier=e["tier"], tier_version=version)


_EVOLVE = {
    "ConversationStarted": _started, "ConversationReopened": _started, "MessageReceived": _received,
    "MessageEnriched": _enriched, "RoutingDecided": _on_decided, "ConversationQueued": _queued,
    "ConversationAssigned": _assigned, "ConversationTransferred": _transferred,
    "ConversationResolved": _resolved,
}


# --- events ----------------------------------------------------------------------------------

def _thread_event(cause: dict[str, Any], view: View, kind: str, *, named: str = "", **fields: Any) -> dict[str, Any]:
    """An event about the cause's thread; ``named``: what the decision was, part of its id (a
    different decision gets a different id)."""
    t = _thread(view)
    env = caused_by(cause, kind, id_suffix=f"{t.thread_id}|{named}" if named else t.thread_id, producer=PRODUCER,
                    partition_key=topics.ROUTING_DECISIONS.key(view.tenant, t.customer_id))
    fields.setdefault("channel", _address(view, cause)[0])
    return make(kind, env, thread_id=t.thread_id, customer_id=t.customer_id, **fields)


def _address(view: View, cause: Mapping[str, Any]) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """(channel, account, customer identity) of the message behind ``cause``, else the latest."""
    t = _thread(view)
    message_id = cause.get("message_event_id") or cause["envelope"]["event_id"]
    for mid, channel, account, recipient in reversed(t.addresses):
        if mid == message_id:
            return channel, account, recipient
    return t.channel, t.account, t.recipient


def _auto_reply(cause: dict[str, Any], view: View, rules: TenantRules, queue: Queue,
                next_open: int | None) -> dict[str, Any]:
    t = _thread(view)
    hours = rules.hours_of(queue)
    text = rules.auto_reply.for_language(t.language).format(
        hours=hours.summary() if hours else "", queue=queue.name, expected_response=queue.expected_response,
        next_open=describe(rules, queue, next_open) if next_open else "later")
    env = caused_by(cause, "MessageSent", id_suffix=f"{t.thread_id}|business_hours", producer=PRODUCER,
                    partition_key=topics.ROUTING_DECISIONS.key(view.tenant, t.customer_id))
    channel, account, recipient = _address(view, cause)
    return make("MessageSent", env, channel=channel, channel_account_id=account or "", recipient=recipient,
                message_id=env["event_id"], author_type="automation", author_id="routing/business_hours",
                text=text, customer_id=t.customer_id, thread_id=t.thread_id,
                in_reply_to_event_id=cause.get("message_event_id") or cause["envelope"]["event_id"])
