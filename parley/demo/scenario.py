"""A synthetic day of customer-service traffic for one tenant: pure and seeded.

``build_day(seed, scale, day)`` returns a ``Scenario``: the customers, the agents and every step
of the day (customer messages on ten channels, redelivered webhooks, delivery receipts, agents'
presence, bot and agent replies, resolutions, a few bad requests), ordered by event time. Nothing
here does I/O or reads a clock: the same arguments give the same day, step for step.

How the day is made:
- Conversations start along an arrival curve over the local day (Europe/Paris) with bursts at
  9:00 and 14:00, a trickle before opening and after closing. ``scale`` 1.0 is about 300.
- Routine intents (order status, greetings) get a bot answer first; some customers thank the bot
  (contained, resolved by the bot), others ask for a human (hand-off).
- Human work is a small queue simulation: agents with shifts, capacity, languages and skills
  (VIP, escalation); each request takes the earliest free slot of a qualified online agent, so
  replies come within 300 s when the floor is calm and later in the bursts. The agent resolves
  the conversation after a few exchanges; a few customers write again later (a reopen).
- Some customers switch channel mid-thread (same order number; WhatsApp then e-mail or RBM with
  the same phone, web chat then e-mail with the same address). A recurring unhappy customer
  complains several times a day on several channels.
- Event times are whole seconds (several channels carry seconds only), UTC epoch ms.

Twilio SMS is left out of the day: its webhook has no timestamp, so its event time would be the
receipt time of the compressed replay, not the simulated time.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import ClassVar, TypeVar
from zoneinfo import ZoneInfo

from parley.demo import texts
from parley.demo.cast import Agent, Customer, agents_for, make_customer

TENANT = "acme"
TIMEZONE = "Europe/Paris"
CONVERSATIONS_AT_SCALE_1 = 300
BOT_ID = "bot-acme"

CHANNELS = ("whatsapp", "messenger", "instagram", "telegram", "line", "viber", "wechat", "rbm",
            "email", "webchat")
# Which channels each language's customers use (WeChat, LINE and Viber users write in English).
CHANNEL_MIX = {
    "fr": {"whatsapp": 30, "messenger": 13, "instagram": 8, "email": 15, "webchat": 18, "rbm": 8,
           "telegram": 5, "viber": 3},
    "en": {"whatsapp": 20, "messenger": 10, "instagram": 8, "email": 12, "webchat": 12,
           "telegram": 8, "line": 10, "viber": 8, "wechat": 10, "rbm": 2},
}
# Channels that send delivery/read callbacks for the business's messages (rendered by webhooks).
RECEIPTS = {"whatsapp": ("delivered", "read"), "messenger": ("delivered", "read"),
            "viber": ("delivered", "seen"), "rbm": ("delivered", "read"),
            "webchat": ("delivered", "read")}
# Where a customer goes when switching channel mid-thread, and why it stays the same thread.
SWITCH_TO = {"whatsapp": ("email", "rbm"), "rbm": ("whatsapp",), "webchat": ("email",),
             "messenger": ("whatsapp", "email"), "instagram": ("messenger", "email"),
             "email": ("webchat", "whatsapp"), "telegram": ("email",), "line": ("email",),
             "viber": ("email", "whatsapp"), "wechat": ("email",)}
INTENT_MIX = {"order_status": 26, "greeting": 9, "refund": 13, "cancellation": 8, "complaint": 9,
              "billing": 10, "delivery_problem": 17, "human_request": 8}
# Arrivals per local half hour (weight), bursts at the 9:00 and 14:00 openings.
ARRIVALS = {7.0: 0.4, 7.5: 0.6, 8.0: 1.2, 8.5: 1.5, 9.0: 7.0, 9.5: 2.6, 10.0: 1.8, 10.5: 1.6,
            11.0: 1.5, 11.5: 1.4, 12.0: 1.0, 12.5: 0.9, 13.0: 1.0, 13.5: 1.3, 14.0: 6.0,
            14.5: 2.3, 15.0: 1.6, 15.5: 1.5, 16.0: 1.5, 16.5: 1.4, 17.0: 1.3, 17.5: 1.1,
            18.0: 0.9, 18.5: 0.7, 19.0: 0.6, 19.5: 0.5, 20.0: 0.4, 20.5: 0.3, 21.0: 0.2}
BAD_AT_SCALE_1 = {"bad_signature": 4, "missing_signature": 2, "malformed_json": 3,
                  "oversize": 2, "unknown_account": 3}
# Where each flaw is tried. Malformed JSON: JSON channels whose signature is over the raw bytes
# (RBM signs the decoded message.data, so a broken body fails verification first: 401). Oversize:
# channels with small limits (64 KiB to 1 MiB), so the refused body stays small.
BAD_CHANNELS = {"malformed_json": ("whatsapp", "messenger", "instagram", "telegram", "line",
                                   "viber", "webchat"),
                "oversize": ("webchat", "viber", "wechat", "telegram", "line")}
PHOTO_CHANNELS = ("whatsapp", "messenger", "telegram", "line", "webchat")
REDELIVERY_RATE = 0.04  # share of customer messages whose webhook arrives twice
SWITCH_PER_FOLLOW_UP = 0.24  # a follow-up moves to another channel (about 1 thread in 5)
REOPEN_RATE = 0.06  # share of human-resolved threads the customer reopens later
VIP_RATE = 0.08


# --- the steps ------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Step:
    """One thing that happens at ``at_ms`` (event time, UTC epoch ms).

    ``lane``: steps of one lane are sent in order, one after the other (a customer's
    conversations, an agent's presence); lanes run concurrently. ``seq`` orders the whole day.
    """

    kind: ClassVar[str] = "step"
    at_ms: int
    lane: str
    seq: int = 0


@dataclass(frozen=True, kw_only=True)
class Handshake(Step):
    """A provider's webhook verification (Meta hub.challenge, WeChat echostr, RBM secret)."""

    kind: ClassVar[str] = "handshake"
    channel: str
    challenge: str


@dataclass(frozen=True, kw_only=True)
class Inbound(Step):
    """A customer message, as the channel's webhook delivers it."""

    kind: ClassVar[str] = "inbound"
    number: int  # the day's message number: channel ids derive from it
    conversation: str
    customer: Customer
    channel: str
    text: str
    language: str
    intent: str
    order: str | None = None
    subject: str | None = None  # e-mail subject
    image: bool = False  # a photo (media reference) with the text as its caption
    reply_to: int | None = None  # e-mail: the number of the message it answers (threading)


@dataclass(frozen=True, kw_only=True)
class Redelivery(Step):
    """The same webhook again (provider retry): same bytes, same idempotency key."""

    kind: ClassVar[str] = "redelivery"
    original: Inbound


@dataclass(frozen=True, kw_only=True)
class Presence(Step):
    kind: ClassVar[str] = "presence"
    agent: Agent
    presence: str  # online | away | offline
    capacity: int


@dataclass(frozen=True, kw_only=True)
class Reply(Step):
    """A bot's or an agent's message to the customer, posted to the agent API."""

    kind: ClassVar[str] = "reply"
    number: int
    conversation: str
    customer: Customer
    channel: str
    author_type: str  # agent | bot
    author_id: str
    text: str
    in_reply_to: int  # the Inbound number it answers


@dataclass(frozen=True, kw_only=True)
class Receipt(Step):
    """A delivery/read callback from the channel for a reply."""

    kind: ClassVar[str] = "receipt"
    reply: Reply
    status: str


@dataclass(frozen=True, kw_only=True)
class Resolve(Step):
    kind: ClassVar[str] = "resolve"
    conversation: str
    customer: Customer
    channel: str
    resolved_by: str  # agent | bot
    agent_id: str | None


@dataclass(frozen=True, kw_only=True)
class Context(Step):
    """What another system (the CRM) knows of a customer: the tier, a churn risk."""

    kind: ClassVar[str] = "context"
    customer: Customer
    source: str
    tier: str
    lifecycle_stage: str | None = None


@dataclass(frozen=True, kw_only=True)
class BadRequest(Step):
    """A request the ingress must refuse with a 4xx."""

    kind: ClassVar[str] = "bad"
    channel: str
    flaw: str  # bad_signature | missing_signature | malformed_json | oversize | unknown_account
    template: Inbound  # a plausible message the flawed request is built from


@dataclass(frozen=True)
class Scenario:
    seed: int
    scale: float
    day: date
    tenant: str
    timezone: str
    customers: tuple[Customer, ...]
    agents: tuple[Agent, ...]
    steps: tuple[Step, ...]
    conversations: int

    @property
    def start_ms(self) -> int:
        return _local_ms(self.day, 0, self.timezone)

    @property
    def end_ms(self) -> int:
        return _local_ms(self.day + timedelta(days=1), 0, self.timezone)

    def of_kind(self, kind: str) -> list[Step]:
        return [s for s in self.steps if s.kind == kind]

    def expected_received(self) -> int:
        """Distinct MessageReceived events the day must produce (redeliveries add none)."""
        return len({s.number for s in self.steps if isinstance(s, Inbound)})

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {"conversations": self.conversations,
                               "customers": len(self.customers), "agents": len(self.agents)}
        for s in self.steps:
            out[s.kind] = out.get(s.kind, 0) + 1
        return out


# --- building the day -----------------------------------------------------------------------------

def build_day(seed: int, scale: float, day: date, *, tenant: str = TENANT,
              timezone: str = TIMEZONE) -> Scenario:
    """The day's traffic for ``tenant``: about ``300 * scale`` conversations, seeded by ``seed``."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    rng = random.Random(seed)
    b = _Builder(rng, day, timezone, scale)
    b.cast()
    b.handshakes()
    b.crm_context()
    b.conversations()
    b.serve_humans()
    b.presence()
    b.bad_requests()
    steps = _ordered(b.steps)
    return Scenario(seed=seed, scale=scale, day=day, tenant=tenant, timezone=timezone,
                    customers=tuple(b.customers), agents=tuple(b.agents), steps=steps,
                    conversations=b.n_conversations)


def _ordered(steps: Iterable[Step]) -> tuple[Step, ...]:
    """Sorted by event time (creation order breaks ties), ``seq`` renumbered."""
    ranked = sorted(enumerate(steps), key=lambda p: (p[1].at_ms, p[0]))
    return tuple(replace(s, seq=i) for i, (_, s) in enumerate(ranked))


def _local_ms(day: date, minute: float, tz: str) -> int:
    """Epoch ms (UTC) of local ``minute`` after midnight of ``day``, whole seconds."""
    midnight = datetime.combine(day, time(0), ZoneInfo(tz))
    return (int(midnight.timestamp()) + int(minute * 60)) * 1000


@dataclass(order=True)
class _Need:
    """A conversation waiting for a human from ``at_ms`` (heap item)."""

    at_ms: int
    tiebreak: int
    conv: _Conv = field(compare=False)


@dataclass
class _Conv:
    key: str
    customer: Customer
    intent: str
    order: str | None
    channel: str
    last_in: Inbound | None = None
    reopened: bool = False
    switched: bool = False


@dataclass
class _Slot:
    agent: Agent
    free_ms: int


class _Builder:
    def __init__(self, rng: random.Random, day: date, tz: str, scale: float) -> None:
        self.rng, self.day, self.tz, self.scale = rng, day, tz, scale
        self.steps: list[Step] = []
        self.customers: list[Customer] = []
        self.agents: list[Agent] = []
        self.needs: list[_Need] = []
        self.n_conversations = 0
        self._numbers = 0
        self._orders: set[str] = set()
        self._busy_until: dict[str, int] = {}  # agent id -> last activity (presence off after it)

    # -- helpers --

    def at(self, minute: float) -> int:
        return _local_ms(self.day, minute, self.tz)

    def number(self) -> int:
        self._numbers += 1
        return self._numbers

    def order_no(self) -> str:
        while True:
            o = f"CMD-{self.rng.randint(10000, 99999)}"
            if o not in self._orders:
                self._orders.add(o)
                return o

    def secs(self, lo: float, hi: float) -> int:
        return int(self.rng.uniform(lo, hi)) * 1000

    # -- cast --

    def cast(self) -> None:
        n = max(5, round(CONVERSATIONS_AT_SCALE_1 * self.scale))
        self.n_target = n
        self.agents = agents_for(self.scale)
        n_customers = max(4, round(n * 0.88))  # the rest are second conversations
        n_unhappy = max(1, round(3 * self.scale))
        for i in range(n_customers):
            c = make_customer(self.rng, i, CHANNEL_MIX, vip_rate=VIP_RATE)
            self.customers.append(replace(c, unhappy=True) if i < n_unhappy else c)

    def handshakes(self) -> None:
        for i, channel in enumerate(("whatsapp", "messenger", "instagram", "wechat", "rbm")):
            self.steps.append(Handshake(at_ms=self.at(6 * 60 + i), lane=f"setup:{channel}",
                                        channel=channel, challenge=f"{self.rng.getrandbits(48):x}"))

    def crm_context(self) -> None:
        """Early in the morning the CRM publishes what it knows of VIP and at-risk customers."""
        for c in self.customers:
            if c.tier == "vip" or c.unhappy:
                self.steps.append(Context(
                    at_ms=self.at(6 * 60 + 30), lane=f"customer:{c.key}", customer=c,
                    source="crm", tier=c.tier, lifecycle_stage="at_risk" if c.unhappy else "loyal"))

    # -- conversations --

    def conversations(self) -> None:
        unhappy = [c for c in self.customers if c.unhappy]
        every = max(1, self.n_target // (3 * len(unhappy)))  # about 3 complaints each a day
        starts = sorted(self.arrival() for _ in range(self.n_target))
        plan: list[tuple[int, Customer, str]] = []
        for i, start in enumerate(starts):
            if i % every == 0:
                plan.append((start, unhappy[(i // every) % len(unhappy)], "complaint"))
            else:
                cust = self.customers[i % len(self.customers)]
                plan.append((start, cust, _weighted(self.rng, INTENT_MIX)))
        for i, (start, cust, intent) in enumerate(plan):
            self.conversation(f"conv-{i + 1:04d}", cust, intent, start)
        self.n_conversations = len(plan)

    def arrival(self) -> int:
        half = _weighted(self.rng, ARRIVALS)
        return self.at(half * 60 + self.rng.uniform(0, 30))

    def conversation(self, key: str, cust: Customer, intent: str, start: int) -> None:
        channel = cust.channel
        if cust.unhappy:  # a recurring unhappy customer tries whatever channel is at hand
            channel = self.rng.choice(tuple(CHANNEL_MIX[cust.language]))
        order = None if intent == "greeting" else self.order_no()
        conv = _Conv(key, cust, intent, order, channel)
        t = start
        if intent == "greeting":
            lang = cust.language
            self.inbound(conv, t, texts.pick(self.rng, texts.GREETING[lang]), "greeting")
            t += self.secs(2, 6)
            self.reply(conv, t, "bot", BOT_ID, texts.pick(self.rng, texts.BOT["greeting"][lang]))
            conv.intent = _weighted(self.rng, {k: v for k, v in INTENT_MIX.items()
                                               if k != "greeting"})
            conv.order = self.order_no()
            t += self.secs(15, 90)
        photo = conv.intent == "delivery_problem" and self.rng.random() < 0.5
        self.inbound(conv, t, self.opening(conv), conv.intent, image=photo)
        if conv.intent in texts.ROUTINE:
            self.bot_first(conv, t)
            return
        if self.rng.random() < 0.35:  # a second message before anyone answers
            self.inbound(conv, t + self.secs(20, 120), self.details(conv), conv.intent)
        self.need_human(conv, t)

    def opening(self, conv: _Conv) -> str:
        lang = conv.customer.language
        return texts.pick(self.rng, texts.OPENING[conv.intent][lang], order=conv.order,
                          amount=f"{self.rng.randint(15, 240)},{self.rng.randint(0, 99):02d}")

    def details(self, conv: _Conv) -> str:
        return texts.pick(self.rng, texts.DETAILS[conv.customer.language],
                          phone=conv.customer.phone)

    def bot_first(self, conv: _Conv, t: int) -> None:
        lang = conv.customer.language
        t += self.secs(2, 6)
        self.reply(conv, t, "bot", BOT_ID, texts.pick(self.rng, texts.BOT["order_status"][lang],
                                                      order=conv.order))
        if self.rng.random() < 0.6:  # contained: thanks, and the bot closes the conversation
            t += self.secs(30, 240)
            self.inbound(conv, t, texts.pick(self.rng, texts.THANKS[lang]), "thanks")
            self.resolve(conv, t + self.secs(3, 10), "bot", None)
            return
        t += self.secs(20, 180)
        self.inbound(conv, t, texts.pick(self.rng, texts.HANDOFF[lang]), "human_request")
        t += self.secs(2, 5)
        self.reply(conv, t, "bot", BOT_ID, texts.pick(self.rng, texts.BOT["handoff"][lang]))
        self.need_human(conv, t)

    def need_human(self, conv: _Conv, at_ms: int) -> None:
        heapq.heappush(self.needs, _Need(at_ms, len(self.steps), conv))

    # -- the human floor: a queue simulation over agents' slots --

    def serve_humans(self) -> None:
        slots = [_Slot(a, 0) for a in self.agents for _ in range(a.capacity)]
        while self.needs:
            need = heapq.heappop(self.needs)
            pick = self.allocate(slots, need)
            if pick is None:
                continue  # after closing: the message waits for tomorrow's team
            slot, start = pick
            slot.free_ms = self.dialogue(need.conv, slot.agent, start)

    def allocate(self, slots: list[_Slot], need: _Need) -> tuple[_Slot, int] | None:
        cust = need.conv.customer
        wanted = ("vip",) if cust.tier == "vip" else ("escalation",) if cust.unhappy else ()
        for must in (wanted, ()):
            best: tuple[int, int, str, _Slot] | None = None
            for slot in slots:
                a = slot.agent
                if cust.language not in a.languages or any(s not in a.skills for s in must):
                    continue
                for begin, end in a.shifts:
                    start = max(need.at_ms, slot.free_ms, self.at(begin))
                    if start <= self.at(end - 15):
                        load = sum(1 for s in slots if s.agent is a and s.free_ms > start)
                        cand = (start, load, a.id, slot)
                        if best is None or cand[:3] < best[:3]:
                            best = cand
                        break
            if best is not None:
                return best[3], best[0]
        return None

    def dialogue(self, conv: _Conv, agent: Agent, start: int) -> int:
        """The agent's side of the conversation from ``start``; returns when the slot frees."""
        rng, lang = self.rng, conv.customer.language
        slow = rng.random() < 0.1
        t = start + (self.secs(300, 900) if slow else self.secs(15, 150))
        t = max(t, (conv.last_in.at_ms if conv.last_in else 0) + 5000)
        self.reply(conv, t, "agent", agent.id, texts.pick(
            rng, texts.AGENT_FIRST[lang], agent=agent.name.split()[0], order=conv.order or ""))
        for _ in range(rng.choice((0, 1, 1, 2))):
            t += self.secs(30, 600)
            self.follow_up(conv, t)
            t += self.secs(20, 400) if rng.random() < 0.15 else self.secs(15, 200)
            self.reply(conv, t, "agent", agent.id, texts.pick(
                rng, texts.AGENT_NEXT[lang], order=conv.order or "",
                amount=f"{rng.randint(15, 240)},00"))
        if rng.random() < 0.5:
            t += self.secs(30, 300)
            self.inbound(conv, t, texts.pick(rng, texts.THANKS[lang]), "thanks")
        t += self.secs(30, 240)
        self.resolve(conv, t, "agent", agent.id)
        self._busy_until[agent.id] = max(self._busy_until.get(agent.id, 0), t)
        if not conv.reopened and (rng.random() < REOPEN_RATE or conv.customer.unhappy
                                  and rng.random() < 0.5):
            self.reopen(conv, t)
        return t

    def follow_up(self, conv: _Conv, t: int) -> None:
        cust = conv.customer
        body = texts.pick(self.rng, texts.FOLLOW_UP[cust.language], order=conv.order or "")
        if not conv.switched and self.rng.random() < SWITCH_PER_FOLLOW_UP:
            previous, conv.channel = conv.channel, self.rng.choice(SWITCH_TO[conv.channel])
            conv.switched = True
            note = texts.fill(texts.SWITCH_NOTE[cust.language], previous=previous,
                              order=conv.order or "")
            body = note + body
        self.inbound(conv, t, body, conv.intent)

    def reopen(self, conv: _Conv, resolved_ms: int) -> None:
        t = resolved_ms + self.secs(30 * 60, 180 * 60)
        if t > self.at(21 * 60 + 30):
            return
        conv.reopened = True
        lang = conv.customer.language
        self.inbound(conv, t, texts.pick(self.rng, texts.REOPEN[lang], order=conv.order or ""),
                     conv.intent)
        self.need_human(conv, t)

    # -- step makers --

    def inbound(self, conv: _Conv, t: int, body: str, intent: str, *,
                image: bool = False) -> None:
        cust = conv.customer
        subject = None
        if conv.channel == "email":
            subjects = texts.SUBJECT.get(conv.intent, texts.SUBJECT["greeting"])
            subject = texts.fill(subjects[cust.language], order=conv.order or "")
            body += texts.fill(texts.SIGNATURE[cust.language], name=cust.name, phone=cust.phone)
            if conv.last_in is not None and conv.last_in.channel == "email":
                subject = "Re: " + subject
        reply_to = conv.last_in.number if conv.last_in is not None else None
        msg = Inbound(at_ms=t, lane=f"customer:{cust.key}", number=self.number(),
                      conversation=conv.key, customer=cust, channel=conv.channel, text=body,
                      language=cust.language, intent=intent, order=conv.order, subject=subject,
                      image=image and conv.channel in PHOTO_CHANNELS,
                      reply_to=reply_to)
        conv.last_in = msg
        self.steps.append(msg)
        if self.rng.random() < REDELIVERY_RATE:
            self.steps.append(Redelivery(at_ms=t + self.secs(1, 45), lane=msg.lane, original=msg))

    def reply(self, conv: _Conv, t: int, author_type: str, author_id: str, body: str) -> None:
        cust = conv.customer
        last = conv.last_in
        r = Reply(at_ms=t, lane=f"customer:{cust.key}", number=self.number(),
                  conversation=conv.key, customer=cust, channel=conv.channel,
                  author_type=author_type, author_id=author_id, text=body,
                  in_reply_to=last.number if last else 0)
        self.steps.append(r)
        for i, status in enumerate(RECEIPTS.get(conv.channel, ())):
            self.steps.append(Receipt(at_ms=t + self.secs(1, 4) + i * self.secs(5, 90),
                                      lane=r.lane, reply=r, status=status))

    def resolve(self, conv: _Conv, t: int, by: str, agent_id: str | None) -> None:
        self.steps.append(Resolve(at_ms=t, lane=f"customer:{conv.customer.key}",
                                  conversation=conv.key, customer=conv.customer,
                                  channel=conv.channel, resolved_by=by, agent_id=agent_id))

    # -- agents' presence --

    def presence(self) -> None:
        for a in self.agents:
            lane = f"agent:{a.id}"
            shifts = list(a.shifts)
            for i, (begin, end) in enumerate(shifts):
                self.steps.append(Presence(at_ms=self.at(begin) - 60_000, lane=lane, agent=a,
                                           presence="online", capacity=a.capacity))
                off = self.at(end)
                if i == len(shifts) - 1:  # stays until the last conversation is closed
                    off = max(off, self._busy_until.get(a.id, 0) + 60_000)
                    state = "offline"
                else:
                    state = "away" if shifts[i + 1][0] - end <= 120 else "offline"
                self.steps.append(Presence(at_ms=off, lane=lane, agent=a, presence=state,
                                           capacity=a.capacity))

    # -- bad requests --

    def bad_requests(self) -> None:
        pool = [s for s in self.steps if isinstance(s, Inbound)]
        for flaw, n in BAD_AT_SCALE_1.items():
            for j in range(max(1, round(n * self.scale))):
                template = self.rng.choice(pool)
                channel = template.channel
                allowed = BAD_CHANNELS.get(flaw)
                if allowed and channel not in allowed:
                    channel = self.rng.choice(allowed)
                    template = replace(template, channel=channel)
                t = self.at(self.rng.uniform(8 * 60, 19 * 60))
                self.steps.append(BadRequest(at_ms=t, lane=f"bad:{flaw}:{j}", channel=channel,
                                             flaw=flaw, template=template))


K = TypeVar("K")


def _weighted(rng: random.Random, weights: Mapping[K, float]) -> K:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]
