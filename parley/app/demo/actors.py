"""The demo's actors: customers, the bot, the agents and the CRM, acting on the pipeline's decisions.

Pure: ``Actors.plan(view, start, end)`` returns what everyone does in the slice of event time
``[start, end)``, given the pipeline's decisions up to ``start`` (the ``View``) and what was sent
before (``Memory``). Every time and every choice derives from the scenario's seed and the ids
involved, never from a clock or the order things were planned in: the same view gives the same
plan. Nobody acts on a decision before it is in the view, so an action can come up to one slice
after what caused it (an agent picks up a conversation assigned a few minutes ago).

- **Customers** say their opening at a fixed time (the agenda), then react: to the bot's
  message (``Conversation.to_bot``: thanks, or ask for a person), to an agent's message
  (``to_agent``: a follow-up, a question for billing, a move to another channel, thanks, or
  silence), nudge once when kept waiting, and come back after a resolution (``reopens``).
- **The bot** answers the threads routing gave it (``RoutingDecided`` target bot), resolves
  those where the customer thanked it, and tells the customer when routing hands a thread off.
- **Agents** work the threads assigned to them (``ConversationAssigned``, or transferred to
  them): a first reply, then a reply to each new customer message, one action at a time, while
  on shift and not on a break; they resolve after a thanks or a long silence, transfer a billing
  question to the billing queue, link or merge a customer's profiles when the customer says they
  wrote from another channel, and hand their open threads back to the queue before going offline.
- **The CRM** sends the tier and lifecycle stage of the VIP and at-risk customers it knows,
  once the pipeline has shown their customer id.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from parley.app.demo.view import ORDER_REF, Message, Thread, View
from parley.app.synthetic import texts
from parley.app.synthetic.cast import Agent
from parley.app.synthetic.scenario import (
    BOT_ID,
    LAST_REOPEN_MIN,
    RECEIPTS,
    REDELIVERY_RATE,
    Context,
    Conversation,
    Inbound,
    Link,
    Merge,
    Receipt,
    Redelivery,
    Reply,
    Resolve,
    Say,
    Scenario,
    Step,
    Transfer,
    make_inbound,
)

S = 1000
MIN = 60 * S
WIND_DOWN_MS = 10 * MIN  # agents go "away" this long before the end of a shift
# An agent resolves after the customer stayed silent this long: longer than a customer takes to
# answer (at most 5 min after seeing the message, seen up to a slice later)
WRAP_MS = (14 * MIN, 20 * MIN)
TRANSFER_QUEUE = "billing"
HANDOFF = "handoff"  # routing.example.toml: [tenants.acme.bot] handoff_template


@dataclass
class Memory:
    """What the actors did so far (all of it sent)."""

    numbers: int = 0  # last inbound message number used
    replies: int = 0  # last reply number used
    times: set[tuple[str, int]] = field(default_factory=set)  # (channel, at) of inbound messages
    sent: dict[str, list[Inbound]] = field(default_factory=dict)  # conversation -> its messages
    by_time: dict[tuple[str, int], Inbound] = field(default_factory=dict)
    said: dict[str, set[str]] = field(default_factory=dict)  # conversation -> labels said
    cursor: dict[tuple[str, str], int] = field(default_factory=dict)  # (conversation, bot|agent)
    reacted: dict[str, int] = field(default_factory=dict)  # conversation -> business message time
    nudged: set[str] = field(default_factory=set)
    reopened: dict[str, int] = field(default_factory=dict)
    crm: set[str] = field(default_factory=set)  # customer ids the CRM sent context for
    linked: set[str] = field(default_factory=set)  # threads whose identity step is done
    noted: set[str] = field(default_factory=set)  # threads whose hand-off notice is sent

    def record(self, step: Step) -> None:
        """Remember a customer message that is sent (agenda or reaction)."""
        if isinstance(step, Inbound):
            self.sent.setdefault(step.conversation, []).append(step)
            self.by_time[(step.channel, step.at_ms)] = step
            self.times.add((step.channel, step.at_ms))
            self.said.setdefault(step.conversation, set()).add(step.label)
            self.numbers = max(self.numbers, step.number)


class Actors:
    """Plans each slice of the day for everyone (see the module docstring)."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self.conversations = {c.key: c for c in scenario.conversations}
        self.memory = Memory()
        for s in scenario.agenda:  # numbers and times the agenda already holds
            if isinstance(s, Inbound):
                self.memory.numbers = max(self.memory.numbers, s.number)
                self.memory.times.add((s.channel, s.at_ms))
        self.shifts = {a.id: [(scenario.at(b), scenario.at(e)) for b, e in a.shifts] for a in scenario.agents}
        self.breaks = {a.id: [(scenario.at(b), scenario.at(e)) for b, e in a.breaks] for a in scenario.agents}

    def rng(self, *parts: object) -> random.Random:
        """A generator for one decision, from the seed and what the decision is about."""
        return random.Random("\x1f".join(map(str, (self.sc.seed, *parts))))

    def plan(self, view: View, start: int, end: int) -> tuple[list[Step], list[Step]]:
        """(steps in ``[start, end)``, consequences later than ``end``: receipts)."""
        now: list[Step] = []
        for c in sorted(self.conversations.values(), key=lambda c: c.key):
            now += self.customer(c, view, start, end)
        now += self.bot(view, start, end)
        for a in self.sc.agents:
            now += self.agent(a, view, start, end)
        now += self.crm(view, start, end)
        out: list[Step] = []
        for s in now:
            out.append(s)
            out += self.consequences(s)
        return [s for s in out if s.at_ms < end], [s for s in out if s.at_ms >= end]

    # --- customers ---------------------------------------------------------------------------------

    def customer(self, c: Conversation, view: View, start: int, end: int) -> list[Step]:
        mem = self.memory
        sent = mem.sent.get(c.key, [])
        if len(sent) < len(c.opening):
            return []  # still saying the opening (the agenda sends it)
        last = sent[-1]
        thread = view.thread_of(last.channel, last.at_ms)
        if thread is None:
            return []
        if thread.status == "resolved":
            return self._reopen(c, thread, start, end)
        business = [m for m in thread.after(max(last.at_ms, mem.reacted.get(c.key, 0)), "agent", "bot")
                    if m.author_type == "agent" or thread.holder == "bot"]
        if business:
            return self._react(c, business[-1], start, end)
        return self._nudge(c, thread, last, start, end)

    def _react(self, c: Conversation, m: Message, start: int, end: int) -> list[Step]:
        mem = self.memory
        to_bot = m.author_type == "bot" and mem.cursor.get((c.key, "agent"), 0) == 0
        who = "bot" if to_bot else "agent"
        lines = c.to_bot if to_bot else c.to_agent
        i = mem.cursor.get((c.key, who), 0)
        said = mem.said.get(c.key, set())
        while i < len(lines) and (line := lines[i]) is not None and line.label == "request" and "request" in said:
            i += 1  # the question was already asked (to the bot)
        r = self.rng("react", c.key, who, i)
        delay = r.randint(15, 90) if to_bot else r.randint(30, 300)
        at = max(m.at + delay * S, start + r.randint(5, 50) * S)
        if at >= end:
            return []  # later: the same reckoning next slice
        mem.reacted[c.key] = m.at
        mem.cursor[(c.key, who)] = i + 1
        line = lines[i] if i < len(lines) else None
        if line is None:
            return []  # nothing (more) to say
        return self.say(c, line, at)

    def _nudge(self, c: Conversation, thread: Thread, last: Inbound, start: int, end: int) -> list[Step]:
        mem = self.memory
        if c.nudge is None or c.key in mem.nudged or last.label in ("thanks", "nudge"):
            return []
        if thread.after(last.at_ms, "automation"):
            return []  # told when the office opens: waits
        r = self.rng("nudge", c.key)
        at = max(last.at_ms + c.patience_s * S, start + r.randint(5, 50) * S)
        if at >= end:
            return []
        mem.nudged.add(c.key)
        return self.say(c, c.nudge, at)

    def _reopen(self, c: Conversation, thread: Thread, start: int, end: int) -> list[Step]:
        mem = self.memory
        i = mem.reopened.get(c.key, 0)
        if i >= len(c.reopens) or thread.resolved_at is None:
            return []
        not_before, say = c.reopens[i]
        r = self.rng("reopen", c.key, i)
        gap = r.randint(20, 60) if c.story == "unhappy" else r.randint(30, 180)
        at = max(thread.resolved_at + gap * MIN, not_before, start + r.randint(5, 50) * S)
        if at > self.sc.at(LAST_REOPEN_MIN):
            mem.reopened[c.key] = len(c.reopens)  # too late today
            return []
        if at >= end:
            return []
        mem.reopened[c.key] = i + 1
        return self.say(c, say, at)

    def say(self, c: Conversation, say: Say, at: int) -> list[Step]:
        """The inbound message (and maybe its redelivery) of ``say`` at ``at``."""
        mem = self.memory
        previous = mem.sent[c.key][-1]
        channel = say.channel or previous.channel
        while (channel, at) in mem.times:
            at += S  # one message per channel and second: the pipeline's message is found by them
        mem.numbers += 1
        msg = make_inbound(c, say, channel, at, mem.numbers, previous)
        mem.record(msg)
        out: list[Step] = [msg]
        if self.rng("redeliver", msg.number).random() < REDELIVERY_RATE:
            out.append(Redelivery(at_ms=at, original=msg))
        return out

    # --- the bot ----------------------------------------------------------------------------------

    def bot(self, view: View, start: int, end: int) -> list[Step]:
        out: list[Step] = []
        for t in view.held_by("bot"):
            mine = t.last("bot")
            pending = t.after(mine.at if mine else t.contact_at - 1, "customer")
            if not pending:
                continue
            m = pending[-1]
            r = self.rng("bot", t.thread_id, m.event_id)
            at = max(m.at + r.randint(2, 6) * S, start + r.randint(1, 8) * S)
            if at >= end:
                continue
            intents = view.intents.get(m.event_id, ())
            topic = next((i for i in ("order_status", "greeting") if i in intents), None)
            if "thanks" in intents:
                out.append(Resolve(at_ms=at, thread_id=t.thread_id, customer_id=t.customer_id,
                                   channel=m.channel, resolved_by="bot", agent_id=BOT_ID))
            elif topic is not None:
                out.append(self.reply(t, "bot", BOT_ID, texts.BOT[topic], at))
            else:  # not a question for the bot: it asks routing for a person (handoff template)
                out.append(self.reply(t, "bot", BOT_ID, texts.BOT["handoff"], at, template=HANDOFF))
        for t in sorted(view.threads.values(), key=lambda t: t.thread_id):
            out += self._handoff_notice(t, start, end)
        return out

    def _handoff_notice(self, t: Thread, start: int, end: int) -> list[Step]:
        """Once routing handed a thread from the bot to a person, the bot says so."""
        if t.thread_id in self.memory.noted or t.status != "open":
            return []
        handoff = next((x for x in reversed(t.transfers) if x.by_routing), None)
        if handoff is None:
            return []
        if t.after(handoff.at - 1, "bot", "agent"):  # the bot asked for it, or someone answered
            self.memory.noted.add(t.thread_id)
            return []
        at = max(handoff.at + 2 * S, start + self.rng("notice", t.thread_id).randint(1, 8) * S)
        if at >= end:
            return []
        self.memory.noted.add(t.thread_id)
        return [self.reply(t, "bot", BOT_ID, texts.BOT["handoff"], at)]

    # --- agents -----------------------------------------------------------------------------------

    def agent(self, a: Agent, view: View, start: int, end: int) -> list[Step]:
        held = view.held_by(a.id)
        off = next((e for _, e in self.shifts[a.id] if start < e <= end), None)  # goes offline at the end
        wanted = sorted((w for t in held if (w := self._next_action(a, t, view)) is not None),
                        key=lambda w: (w[0], w[2].thread_id))
        out: list[Step] = []
        free_at = start
        for desired, kind, t in wanted:
            r = self.rng("agent", a.id, t.thread_id, kind, desired)
            at = self._working(a, max(desired, free_at + r.randint(15, 40) * S,
                                      start + r.randint(3, 30) * S))
            if at is None or at >= end or (off is not None and at >= off - 30 * S):
                continue
            steps = self._act(a, kind, t, view, at)
            out += steps
            free_at = max(free_at, *(s.at_ms for s in steps))
        if off is not None:  # hand the rest back to the queue before going offline
            closed = {s.thread_id for s in out if isinstance(s, Resolve | Transfer)}
            out += [Transfer(at_ms=min(max(off - 30 * S, free_at + S, start), end - S), thread_id=t.thread_id,
                             customer_id=t.customer_id, agent_id=a.id, to_queue=t.queue or "general",
                             reason="end_of_shift")
                    for t in held if t.thread_id not in closed]
        return out

    def _next_action(self, a: Agent, t: Thread, view: View) -> tuple[int, str, Thread] | None:
        """(when the agent would like to act, what: first, next, transfer, identity, thanks,
        wrap) for a thread it holds, or None."""
        since = t.assigned_at if t.assigned_at is not None else t.contact_at
        mine = [m for m in t.messages if m.author_type == "agent" and m.author_id == a.id and m.at >= since]
        r = self.rng("think", a.id, t.thread_id, len(mine))
        if not mine:
            slow = r.random() < 0.08
            think = r.randint(300, 720) if slow else r.randint(15, 110)
            return since + think * S, self._special(t, view) or "first", t
        pending = t.after(mine[-1].at, "customer")
        if not pending:
            wrap = r.randint(WRAP_MS[0] // S, WRAP_MS[1] // S)
            return mine[-1].at + wrap * S, "wrap", t
        labels = [self._label(m) for m in pending]
        if labels[-1] == "thanks":
            return pending[-1].at + r.randint(20, 90) * S, "thanks", t
        return pending[0].at + r.randint(20, 150) * S, self._special(t, view) or "next", t

    def _special(self, t: Thread, view: View) -> str | None:
        last_agent = t.last("agent")
        pending = t.after(last_agent.at if last_agent else t.contact_at - 1, "customer")
        labels = {self._label(m) for m in pending}
        if "transfer_ask" in labels and t.queue != TRANSFER_QUEUE:
            return "transfer"
        if ("switch" in labels and t.thread_id not in self.memory.linked
                and self._story(t) in ("link", "merge") and self._other(t, view)):
            return "identity"
        return None

    def _label(self, m: Message) -> str | None:
        said = self.memory.by_time.get((m.channel, m.at))
        return said.label if said else None

    def _story(self, t: Thread) -> str | None:
        said = next((self.memory.by_time.get((m.channel, m.at)) for m in t.messages if m.inbound), None)
        return self.conversations[said.conversation].story if said else None

    def _other(self, t: Thread, view: View) -> Thread | None:
        """Another customer's thread about the same order (the customer wrote from elsewhere)."""
        last = t.last_inbound
        refs = set(ORDER_REF.findall(last.text)) if last else set()
        others = [o for o in view.threads.values()
                  if o.customer_id != t.customer_id and o.started_at < t.started_at and refs & o.orders()]
        return min(others, key=lambda o: (o.started_at, o.thread_id), default=None)

    def _act(self, a: Agent, kind: str, t: Thread, view: View, at: int) -> list[Step]:
        order = next(iter(sorted(t.orders())), "")
        lang = self._language(t)
        if kind in ("wrap", "thanks"):
            return [Resolve(at_ms=at, thread_id=t.thread_id, customer_id=t.customer_id,
                            channel=t.last_inbound.channel if t.last_inbound else None,
                            resolved_by="agent", agent_id=a.id)]
        if kind == "transfer":
            say = self.reply(t, "agent", a.id, texts.AGENT_TRANSFER, at, lang=lang)
            return [say, Transfer(at_ms=at + 20 * S, thread_id=t.thread_id, customer_id=t.customer_id,
                                  agent_id=a.id, to_queue=TRANSFER_QUEUE, reason="billing_question")]
        if kind == "identity":
            return self._identity(a, t, view, at, order, lang)
        phrases = texts.AGENT_FIRST if kind == "first" else texts.AGENT_NEXT
        return [self.reply(t, "agent", a.id, phrases, at, lang=lang, agent=a.first_name, order=order,
                           amount=f"{self.rng('amount', t.thread_id).randint(15, 240)},00")]

    def _identity(self, a: Agent, t: Thread, view: View, at: int, order: str, lang: str) -> list[Step]:
        """The customer wrote from another channel about an earlier conversation: link that
        identity to this customer, or merge the two profiles; then answer."""
        other = self._other(t, view)
        self.memory.linked.add(t.thread_id)
        first = next((m for m in other.messages if m.inbound), None) if other else None
        out: list[Step] = []
        if other is not None and first is not None:
            if self._story(t) == "merge":
                out.append(Merge(at_ms=at, agent_id=a.id, customer_id=other.customer_id,
                                 merged_customer_id=t.customer_id))
            else:
                out.append(Link(at_ms=at, agent_id=a.id, channel=first.channel,
                                identity=first.identity["id"], customer_id=t.customer_id))
        out.append(self.reply(t, "agent", a.id, texts.AGENT_LINKED, at + 15 * S, lang=lang, order=order))
        return out

    def _working(self, a: Agent, at: int) -> int | None:
        """``at``, or the end of the break it falls in; None when off shift."""
        for b0, b1 in self.breaks[a.id]:
            if b0 <= at < b1:
                at = b1
        return at if any(b <= at < e for b, e in self.shifts[a.id]) else None

    # --- the CRM ----------------------------------------------------------------------------------

    def crm(self, view: View, start: int, end: int) -> list[Step]:
        out: list[Step] = []
        for (channel, at), eid in sorted(view.inbound_at.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            said = self.memory.by_time.get((channel, at))
            cid = view.messages[eid].customer_id
            if said is None or cid in self.memory.crm:
                continue
            c = said.customer
            if not (c.vip or c.unhappy):
                continue
            self.memory.crm.add(cid)
            out.append(Context(at_ms=start + self.rng("crm", cid).randint(1, 30) * S, customer_id=cid,
                               customer=c, source="crm", tier=c.tier,
                               lifecycle_stage="at_risk" if c.unhappy else "loyal"))
        return out

    # --- replies and their receipts ------------------------------------------------------------

    def reply(self, t: Thread, author_type: str, author_id: str, phrases: Mapping[str, tuple[str, ...]],
              at: int, *, lang: str | None = None, template: str | None = None, **slots: object) -> Reply:
        last = t.last_inbound
        if last is None:
            raise ValueError(f"a reply in thread {t.thread_id}, which has no customer message")
        self.memory.replies += 1
        n = self.memory.replies
        lang = lang or self._language(t)
        slots.setdefault("order", next(iter(sorted(t.orders())), ""))
        text = texts.pick(self.rng("text", t.thread_id, n), phrases[lang], **slots)
        return Reply(at_ms=at, number=n, thread_id=t.thread_id, customer_id=t.customer_id,
                     channel=last.channel, recipient=dict(last.identity), author_type=author_type,
                     author_id=author_id, text=text, in_reply_to=last.event_id, template=template)

    def _language(self, t: Thread) -> str:
        said = next((self.memory.by_time.get((m.channel, m.at)) for m in reversed(t.messages) if m.inbound), None)
        return said.language if said else "fr"

    def consequences(self, s: Step) -> list[Step]:
        """The channel's delivery and read callbacks of a reply."""
        if not isinstance(s, Reply):
            return []
        r = self.rng("receipt", s.number)
        at = s.at_ms
        out: list[Step] = []
        for status in RECEIPTS.get(s.channel, ()):
            at += (r.randint(1, 4) if not out else r.randint(5, 90)) * S
            out.append(Receipt(at_ms=at, reply=s, status=status))
        return out
