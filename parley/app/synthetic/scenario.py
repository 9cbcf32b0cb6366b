"""A synthetic working day of customer-service traffic for one tenant: pure and seeded.

``build_day(seed, scale, day)`` returns a ``Scenario``: who is there and what they mean to do.
Nothing here does I/O or reads a clock: the same arguments give the same day.

- **The cast**: customers (an id on every channel, French or English, some VIP, a few recurring
  unhappy ones) and the agent roster of ``cast.py`` (queues, skills, languages, capacity 2-4,
  shifts and breaks), about 300 conversations and ten agents at scale 1.0.
- **The agenda**: steps at fixed times: webhook handshakes, agents' presence (online at the
  start of a shift, away for a break and for the last ten minutes, offline at the end), each
  conversation's opening message(s) along an arrival curve with bursts at 9:00 and 14:00 and a
  trickle before opening and after closing, a few redelivered webhooks, a few bad requests.
- **The conversations**: what each customer will say *in reaction* to what the business
  answers (``Conversation.to_bot``, ``to_agent``), if kept waiting (``nudge``) and after a
  resolution (``reopens``). Nobody's answer is scripted here: the bot, the agents and the CRM
  act on what the pipeline decides (``actors.py``), and so do the customers' reactions.

Stories the day always tells (at any scale): a recurring unhappy customer who comes back about
the same order until routing escalates them; a VIP who writes twice; a customer who switches
from Messenger to WhatsApp (the agent links the identities) and one from LINE to e-mail (the
agent merges the profiles); a question for billing in an orders conversation (the agent
transfers it); bot conversations contained or handed off; messages out of business hours.

Event times are whole seconds (several channels carry seconds only), UTC epoch ms. Twilio SMS
is left out: its webhook has no timestamp, so its event time would be the receipt time of the
compressed replay, not the simulated time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Any, ClassVar, TypeVar
from zoneinfo import ZoneInfo

from parley.app.synthetic import texts
from parley.app.synthetic.cast import Agent, Customer, agents_for, make_customer

TENANT = "acme"
TIMEZONE = "Europe/Paris"
CONVERSATIONS_AT_SCALE_1 = 300
BOT_ID = "faq-bot"  # routing.example.toml: [tenants.acme.bot] bot_id

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
VIP_RATE = 0.08
# Stories per 300 conversations (at least one each at any scale).
STORIES = {"transfer": 6, "link": 3, "merge": 3, "same_phone": 6, "auto_merge": 4}
DAY_START_MIN, DAY_END_MIN = 6 * 60, 22 * 60  # what the driver runs through, local time
LAST_REOPEN_MIN = 20 * 60 + 30


# --- the steps ------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Step:
    """One request to the ingress at ``at_ms`` (event time, UTC epoch ms). ``seq`` orders the
    steps of one time (the driver numbers them as it sends)."""

    kind: ClassVar[str] = "step"
    at_ms: int
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
    label: str = "opening"  # what the customer means: see ``Say.label``
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
    """A bot's or an agent's message to the customer of a thread, posted to the agent API."""

    kind: ClassVar[str] = "reply"
    number: int
    thread_id: str
    customer_id: str
    channel: str
    recipient: Mapping[str, Any]  # the customer's channel identity, as the pipeline saw it
    author_type: str  # agent | bot
    author_id: str
    text: str
    in_reply_to: str | None = None  # event id of the customer message it answers
    template: str | None = None  # template name (the bot's hand-off request)


@dataclass(frozen=True, kw_only=True)
class Receipt(Step):
    """A delivery/read callback from the channel for a reply."""

    kind: ClassVar[str] = "receipt"
    reply: Reply
    status: str


@dataclass(frozen=True, kw_only=True)
class Resolve(Step):
    kind: ClassVar[str] = "resolve"
    thread_id: str
    customer_id: str
    channel: str | None
    resolved_by: str  # agent | bot
    agent_id: str


@dataclass(frozen=True, kw_only=True)
class Transfer(Step):
    """An agent hands a thread over to a queue."""

    kind: ClassVar[str] = "transfer"
    thread_id: str
    customer_id: str
    agent_id: str
    to_queue: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Link(Step):
    """An agent attaches a channel identity to a customer (``/identities/link``)."""

    kind: ClassVar[str] = "link"
    agent_id: str
    channel: str
    identity: str  # the id on that channel
    customer_id: str


@dataclass(frozen=True, kw_only=True)
class Merge(Step):
    """An agent merges two profiles of one person (``/customers/merge``)."""

    kind: ClassVar[str] = "merge"
    agent_id: str
    customer_id: str  # survives
    merged_customer_id: str


@dataclass(frozen=True, kw_only=True)
class Context(Step):
    """What the CRM knows of a customer: the tier, the lifecycle stage."""

    kind: ClassVar[str] = "context"
    customer_id: str
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


# --- what customers mean to say -------------------------------------------------------------------

@dataclass(frozen=True)
class Say:
    """One thing a customer will write. ``label``: opening, details, greeting, request (the
    actual question after a greeting), thanks, human (asks the bot for a person), follow_up,
    transfer_ask (a question for billing), switch (written from another channel, naming the
    first), nudge, reopen. ``channel`` None: where the customer last wrote."""

    text: str
    label: str
    intent: str
    channel: str | None = None
    image: bool = False


@dataclass(frozen=True)
class Conversation:
    """One customer request and how the customer will behave along it."""

    key: str
    customer: Customer
    intent: str
    order: str | None
    channel: str
    start_ms: int
    opening: tuple[tuple[int, Say], ...]  # said at fixed times
    to_bot: tuple[Say | None, ...] = ()  # answers to the bot's successive messages (None: silence)
    to_agent: tuple[Say | None, ...] = ()  # answers to the agents' successive messages
    nudge: Say | None = None  # said once when kept waiting ``patience_s`` with no answer
    patience_s: int = 1200
    reopens: tuple[tuple[int, Say], ...] = ()  # (not before, what): after each resolution
    story: str | None = None  # transfer | link | merge | same_phone | auto_merge | unhappy | vip


@dataclass(frozen=True)
class Scenario:
    seed: int
    scale: float
    day: date
    tenant: str
    timezone: str
    customers: tuple[Customer, ...]
    agents: tuple[Agent, ...]
    conversations: tuple[Conversation, ...]
    agenda: tuple[Step, ...]  # the fixed-time steps, in time order

    def at(self, minute: float) -> int:
        """Epoch ms of local ``minute`` after midnight of the day."""
        return local_ms(self.day, minute, self.timezone)

    @property
    def start_ms(self) -> int:
        return self.at(DAY_START_MIN)

    @property
    def end_ms(self) -> int:
        return self.at(DAY_END_MIN)

    def of_kind(self, kind: str) -> list[Step]:
        return [s for s in self.agenda if s.kind == kind]

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {"conversations": len(self.conversations),
                               "customers": len(self.customers), "agents": len(self.agents)}
        for c in self.conversations:
            if c.story:
                out[f"story:{c.story}"] = out.get(f"story:{c.story}", 0) + 1
        for s in self.agenda:
            out[s.kind] = out.get(s.kind, 0) + 1
        return out


def local_ms(day: date, minute: float, tz: str) -> int:
    """Epoch ms (UTC) of local ``minute`` after midnight of ``day``, whole seconds."""
    midnight = datetime.combine(day, time(0), ZoneInfo(tz))
    return (int(midnight.timestamp()) + int(minute * 60)) * 1000


# --- building the day -----------------------------------------------------------------------------

def build_day(seed: int, scale: float, day: date, *, tenant: str = TENANT,
              timezone: str = TIMEZONE) -> Scenario:
    """The day for ``tenant``: about ``300 * scale`` conversations, seeded by ``seed``."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    b = _Builder(random.Random(seed), day, timezone, scale)
    b.cast()
    b.conversations()
    b.stories()
    b.unhappy()
    b.vip()
    convs = sorted(b.convs, key=lambda c: (c.start_ms, c.key))
    agenda = [*b.handshakes(), *b.presence(), *b.openings(convs)]
    agenda += b.bad_requests([s for s in agenda if isinstance(s, Inbound)])
    return Scenario(seed=seed, scale=scale, day=day, tenant=tenant, timezone=timezone,
                    customers=tuple(b.customers), agents=tuple(b.agents),
                    conversations=tuple(convs), agenda=ordered(agenda))


def ordered(steps: Iterable[Step]) -> tuple[Step, ...]:
    """Sorted by event time (creation order breaks ties), ``seq`` renumbered."""
    ranked = sorted(enumerate(steps), key=lambda p: (p[1].at_ms, p[0]))
    return tuple(replace(s, seq=i) for i, (_, s) in enumerate(ranked))


class _Builder:
    def __init__(self, rng: random.Random, day: date, tz: str, scale: float) -> None:
        self.rng, self.day, self.tz, self.scale = rng, day, tz, scale
        self.customers: list[Customer] = []
        self.agents: list[Agent] = []
        self.convs: list[Conversation] = []
        self._orders: set[str] = set()
        self._numbers = 0
        self._times: set[tuple[str, int]] = set()  # (channel, at): one inbound message each

    # -- helpers --

    def at(self, minute: float) -> int:
        return local_ms(self.day, minute, self.tz)

    def order_no(self) -> str:
        while True:
            o = f"CMD-{self.rng.randint(10000, 99999)}"
            if o not in self._orders:
                self._orders.add(o)
                return o

    def n(self, per_300: float) -> int:
        return max(1, round(per_300 * self.scale))

    # -- cast --

    def cast(self) -> None:
        n = max(5, round(CONVERSATIONS_AT_SCALE_1 * self.scale))
        self.n_target = n
        self.agents = agents_for(self.scale)
        n_customers = max(4, round(n * 0.88))  # the rest are second conversations
        n_unhappy = self.n(2)
        for i in range(n_customers):
            c = make_customer(self.rng, i, CHANNEL_MIX, vip_rate=VIP_RATE)
            if i < n_unhappy:  # complains on WhatsApp: one customer id for every contact
                c = replace(c, unhappy=True, tier="standard", channel="whatsapp")
            self.customers.append(c)
        if not any(c.vip for c in self.customers):
            i = n_unhappy
            self.customers[i] = replace(self.customers[i], tier="gold")

    # -- conversations --

    def conversations(self) -> None:
        regular = [c for c in self.customers if not c.unhappy]
        starts = sorted(self.arrival() for _ in range(self.n_target))
        for i, start in enumerate(starts):
            cust = regular[i % len(regular)]
            self.convs.append(self.conversation(f"conv-{i + 1:04d}", cust,
                                                _weighted(self.rng, INTENT_MIX), start))

    def arrival(self) -> int:
        half = _weighted(self.rng, ARRIVALS)
        return self.at(half * 60 + self.rng.uniform(0, 30))

    def conversation(self, key: str, cust: Customer, intent: str, start: int,
                     channel: str | None = None) -> Conversation:
        rng, lang = self.rng, cust.language
        channel = channel or cust.channel
        order = self.order_no()
        request = Say(self.opening_text(intent, lang, order), "request", intent,
                      image=intent == "delivery_problem" and rng.random() < 0.5)
        details = Say(_fill(rng, texts.DETAILS[lang], phone=cust.phone), "details", intent)
        opening: list[tuple[int, Say]]
        if intent == "greeting":
            opening = [(start, Say(rng.choice(texts.GREETING[lang]), "greeting", "greeting"))]
        else:
            opening = [(start, replace(request, label="opening"))]
            if intent not in texts.ROUTINE and rng.random() < 0.3:  # a second message before anyone answers
                opening.append((start + _secs(rng, 20, 120), details))
        follow = tuple(Say(_fill(rng, texts.FOLLOW_UP[lang], order=order), "follow_up", intent)
                       for _ in range(rng.choice((0, 1, 1, 2))))
        thanks = Say(rng.choice(texts.THANKS[lang]), "thanks", "thanks")
        to_agent: tuple[Say | None, ...] = (*follow, thanks if rng.random() < 0.65 else None)
        bot_end = rng.random()
        to_bot: tuple[Say | None, ...] = (
            Say(rng.choice(texts.BOT_THANKS[lang]), "thanks", "thanks") if bot_end < 0.55
            else Say(_fill(rng, texts.HANDOFF[lang]), "human", "human_request") if bot_end < 0.9
            else None,)
        if intent == "greeting":  # the actual question comes once someone answered
            to_bot = (request, *to_bot)
            to_agent = (request, *to_agent)
        nudge = Say(rng.choice(texts.NUDGE[lang]), "nudge", intent) if rng.random() < 0.6 else None
        reopens: tuple[tuple[int, Say], ...] = ()
        if rng.random() < 0.06:
            reopens = ((0, Say(_fill(rng, texts.REOPEN[lang], order=order), "reopen", intent)),)
        return Conversation(key, cust, intent, order, channel, start, tuple(opening), to_bot,
                            to_agent, nudge, rng.randint(15, 35) * 60, reopens)

    def opening_text(self, intent: str, lang: str, order: str) -> str:
        if intent == "greeting":
            intent = _weighted(self.rng, {k: v for k, v in INTENT_MIX.items() if k != "greeting"})
        return _fill(self.rng, texts.OPENING[intent][lang], order=order,
                     amount=f"{self.rng.randint(15, 240)},{self.rng.randint(0, 99):02d}")

    # -- stories --

    def stories(self) -> None:
        """Turn some regular conversations into the day's stories (see the module docstring)."""
        daytime = [i for i, c in enumerate(self.convs)
                   if self.at(9 * 60 + 30) <= c.start_ms <= self.at(16 * 60) and c.intent != "greeting"]
        self.rng.shuffle(daytime)
        taken: set[int] = set()
        for story, per_300 in STORIES.items():
            for _ in range(self.n(per_300)):
                i = next((i for i in daytime if i not in taken and self._fits(story, self.convs[i])), None)
                if i is None:
                    break
                taken.add(i)
                self.convs[i] = getattr(self, f"_{story}")(self.convs[i])

    def _fits(self, story: str, c: Conversation) -> bool:
        if story == "transfer":  # a question for billing in a conversation that is not billing's
            return c.intent not in ("billing", "refund")
        named = c.order is not None and c.order in c.opening[0][1].text  # found again by it
        if story == "auto_merge":
            return named and c.customer.logged_in
        return named

    def _transfer(self, c: Conversation) -> Conversation:
        lang = c.customer.language
        ask = Say(_fill(self.rng, texts.TRANSFER_ASK[lang], order=c.order), "transfer_ask", "refund")
        thanks = Say(self.rng.choice(texts.THANKS[lang]), "thanks", "thanks")
        return replace(c, to_agent=(ask, None, thanks), story="transfer")

    def _switch(self, c: Conversation, first: str, then: str, story: str) -> Conversation:
        lang = c.customer.language
        note = texts.fill(texts.SWITCH_NOTE[lang], previous=_CHANNEL_NAMES[first], order=c.order)
        body = _fill(self.rng, texts.FOLLOW_UP[lang], order=c.order)
        switch = Say(note + body, "switch", c.intent, channel=then)
        thanks = Say(self.rng.choice(texts.THANKS[lang]), "thanks", "thanks")
        opening = tuple((t, replace(s, image=s.image and first in PHOTO_CHANNELS))
                        for t, s in c.opening)
        return replace(c, channel=first, opening=opening, to_agent=(switch, thanks),
                       nudge=None, story=story)

    def _link(self, c: Conversation) -> Conversation:
        return self._switch(c, "messenger", "whatsapp", "link")

    def _merge(self, c: Conversation) -> Conversation:
        return self._switch(c, "line", "email", "merge")

    def _same_phone(self, c: Conversation) -> Conversation:
        first, then = ("whatsapp", "rbm") if self.rng.random() < 0.5 else ("rbm", "whatsapp")
        return self._switch(c, first, then, "same_phone")

    def _auto_merge(self, c: Conversation) -> Conversation:
        return self._switch(c, "webchat", "email", "auto_merge")

    def unhappy(self) -> None:
        """Each unhappy customer complains about one order before opening, again late in the
        morning and again in the afternoon: three contacts, all negative (an escalation)."""
        for j, cust in enumerate(c for c in self.customers if c.unhappy):
            lang, order = cust.language, self.order_no()
            start = self.at(8 * 60 + 15 + self.rng.uniform(0, 35))
            first = Say(_fill(self.rng, texts.OPENING["complaint"][lang], order=order), "opening",
                        "complaint")
            again = [Say(texts.fill(t, order=order), "reopen", "complaint")
                     for t in texts.UNHAPPY_AGAIN[lang]]
            follow = Say(_fill(self.rng, texts.FOLLOW_UP[lang], order=order), "follow_up", "complaint")
            thanks = Say(self.rng.choice(texts.THANKS[lang]), "thanks", "thanks")
            self.convs.append(Conversation(
                f"unhappy-{j + 1:02d}", cust, "complaint", order, "whatsapp", start,
                ((start, first),), (), (follow, None, None, thanks), None, 1800,
                ((self.at(11 * 60 + self.rng.uniform(0, 40)), again[0]),
                 (self.at(15 * 60 + self.rng.uniform(0, 40)), again[1])), "unhappy"))

    def vip(self) -> None:
        """The first VIP writes in the morning (the CRM then sends the tier) and again in the
        afternoon, when routing gives them the VIP queue and priority."""
        cust = next(c for c in self.customers if c.vip)
        for k, (lo, hi) in enumerate(((8 * 60 + 30, 10 * 60), (14 * 60, 15 * 60 + 30))):
            start = self.at(self.rng.uniform(lo, hi))
            intent = self.rng.choice(("refund", "delivery_problem", "billing"))
            c = self.conversation(f"vip-{k + 1:02d}", cust, intent, start)
            self.convs.append(replace(c, story="vip", to_bot=()))

    # -- the agenda --

    def handshakes(self) -> list[Step]:
        return [Handshake(at_ms=self.at(6 * 60 + i), channel=ch, challenge=f"{self.rng.getrandbits(48):x}")
                for i, ch in enumerate(("whatsapp", "messenger", "instagram", "wechat", "rbm"))]

    def presence(self) -> list[Step]:
        out: list[Step] = []
        for a in self.agents:
            def status(minute: int, presence: str, a: Agent = a) -> Presence:
                return Presence(at_ms=self.at(minute), agent=a, presence=presence, capacity=a.capacity)
            for begin, end in a.shifts:
                out.append(status(begin, "online"))
                for b0, b1 in a.breaks:
                    if begin < b0 < b1 < end:
                        out += [status(b0, "away"), status(b1, "online")]
                out += [status(end - 10, "away"), status(end, "offline")]
        return out

    def openings(self, convs: list[Conversation]) -> list[Step]:
        out: list[Step] = []
        for c in convs:
            previous: Inbound | None = None
            for at, say in c.opening:
                msg = self.inbound(c, say, at, previous)
                previous = msg
                out.append(msg)
                if self.rng.random() < REDELIVERY_RATE:
                    out.append(Redelivery(at_ms=msg.at_ms, original=msg))
        return out

    def inbound(self, c: Conversation, say: Say, at: int, previous: Inbound | None) -> Inbound:
        channel = say.channel or c.channel
        while (channel, at) in self._times:
            at += 1000
        self._times.add((channel, at))
        self._numbers += 1
        return make_inbound(c, say, channel, at, self._numbers, previous)

    def bad_requests(self, pool: list[Inbound]) -> list[Step]:
        out: list[Step] = []
        for flaw, n in BAD_AT_SCALE_1.items():
            for _ in range(max(1, round(n * self.scale))):
                template = self.rng.choice(pool)
                allowed = BAD_CHANNELS.get(flaw)
                if allowed and template.channel not in allowed:
                    template = replace(template, channel=self.rng.choice(allowed), image=False)
                t = self.at(self.rng.uniform(8 * 60, 19 * 60))
                out.append(BadRequest(at_ms=t, channel=template.channel, flaw=flaw, template=template))
        return out


_CHANNEL_NAMES = {"whatsapp": "WhatsApp", "messenger": "Messenger", "instagram": "Instagram",
                  "telegram": "Telegram", "line": "LINE", "viber": "Viber", "wechat": "WeChat",
                  "rbm": "RCS", "email": "e-mail", "webchat": "le chat du site"}


def make_inbound(c: Conversation, say: Say, channel: str, at: int, number: int,
                 previous: Inbound | None) -> Inbound:
    """The message ``say`` of conversation ``c`` on ``channel`` at ``at`` (e-mail: a subject,
    a signature, and In-Reply-To the previous e-mail of the conversation)."""
    cust, body, subject = c.customer, say.text, None
    if channel == "email":
        subjects = texts.SUBJECT.get(c.intent, texts.SUBJECT["greeting"])
        subject = texts.fill(subjects[cust.language], order=c.order or "")
        body += texts.fill(texts.SIGNATURE[cust.language], name=cust.name, phone=cust.phone)
        if previous is not None and previous.channel == "email":
            subject = "Re: " + subject
    reply_to = previous.number if previous is not None and previous.channel == "email" else None
    return Inbound(at_ms=at, number=number, conversation=c.key, customer=cust, channel=channel,
                   text=body, language=cust.language, intent=say.intent, label=say.label,
                   order=c.order, subject=subject, image=say.image and channel in PHOTO_CHANNELS,
                   reply_to=reply_to if channel == "email" else None)


def _secs(rng: random.Random, lo: float, hi: float) -> int:
    return int(rng.uniform(lo, hi)) * 1000


def _fill(rng: random.Random, options: tuple[str, ...], **slots: object) -> str:
    return texts.pick(rng, options, **slots)


K = TypeVar("K")


def _weighted(rng: random.Random, weights: Mapping[K, float]) -> K:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]
