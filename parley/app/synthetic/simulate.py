"""A deterministic synthetic day of customer-service traffic, at the conversation level.

``simulate_day(seed, scale)`` runs a small discrete-event simulation in event time and returns the
events the stream processors would have written to ``parley.conversations`` and
``parley.agents.status`` (built with ``schemas.events``; ids derive from the seed, so the same
arguments give the same list, sorted by ``occurred_at``). What happens in it:

* customers on eight channels, arrivals following an hourly profile with bursts at opening
  (08:00 UTC), lunch and late afternoon; returning customers; VIPs; some switch channel mid-thread;
* routine intents go to a bot first: it answers, resolves most of them, hands the rest to a human;
* human routing to queues by intent (``RoutingDecided`` target ``agent`` when an agent is free,
  else ``queue`` + ``ConversationQueued``), least-loaded assignment within capacity, outside
  business hours (08:00-20:00) an automated notice and a wait until agents come online;
* agents on two shifts with breaks (away) and log-off (offline, open conversations transferred
  back to their queue), replies after a think time, several rounds, resolutions, transfers;
* customers who give up while queued (some within 30 s: short abandons), reopens after
  resolution, and conversations still open at the end of the day.

``shuffled_with_duplicates(events, seed)`` turns the clean log into a delivery order: local jitter,
some events hours late, and redelivered copies (same event id).
"""

from __future__ import annotations

import copy
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from schemas import topics
from schemas.events import caused_by, derive_id, envelope, make

S = 1000  # ms per second
MIN = 60 * S
HOUR = 60 * MIN
OPEN_H, CLOSE_H = 8, 20

CHANNELS = (("whatsapp", 34), ("webchat", 20), ("messenger", 10), ("instagram", 7), ("sms", 8),
            ("email", 12), ("telegram", 5), ("line", 4))
ROUTINE = ("order_status", "delivery")
INTENTS = (("order_status", 30), ("delivery", 15), ("refund", 15), ("billing", 12),
           ("complaint", 10), ("cancellation", 10), ("other", 8))
QUEUE_OF = {"refund": "orders", "cancellation": "orders", "billing": "billing",
            "complaint": "care", "other": "general", "order_status": "general",
            "delivery": "general"}
HOURLY = (1, 1, 1, 1, 1, 1, 2, 4, 14, 11, 9, 8, 10, 9, 8, 8, 9, 10, 8, 6, 4, 3, 2, 1)
SENTIMENT = {"complaint": (60, 35, 5), "refund": (30, 55, 15), "cancellation": (30, 60, 10)}


def simulate_day(seed: int = 7, scale: float = 1.0, tenant: str = "acme",
                 day: date | str = date(2025, 3, 3)) -> list[dict[str, Any]]:
    """The events of one simulated day, sorted by event time (ties in emission order).

    ``scale`` 1.0 is about 900 conversations and 10 agents; it scales both.
    """
    d = date.fromisoformat(day) if isinstance(day, str) else day
    sim = _Sim(seed, scale, tenant, d)
    sim.run()
    return [e for _, _, e in sorted(sim.out, key=lambda x: (x[0], x[1]))]


def shuffled_with_duplicates(
    events: list[dict[str, Any]], seed: int, duplicate_rate: float = 0.05,
    late_rate: float = 0.03, jitter_ms: int = 20 * S, late_ms: int = 3 * HOUR,
    full_shuffle: bool = False,
) -> list[dict[str, Any]]:
    """A delivery order: each event arrives after a jitter, some hours late, some twice.

    ``full_shuffle`` ignores time entirely (a random permutation). Copies are deep, so a
    redelivered event is equal to, not the same object as, the first delivery.
    """
    rng = random.Random(f"delivery:{seed}")
    arrivals: list[tuple[float, int, dict]] = []
    for i, e in enumerate(events):
        t = e["envelope"]["occurred_at"]
        at = rng.random() if full_shuffle else t + rng.uniform(0, jitter_ms)
        if not full_shuffle and rng.random() < late_rate:
            at += rng.uniform(0, late_ms)
        arrivals.append((at, i, e))
        if rng.random() < duplicate_rate:
            again = rng.random() if full_shuffle else at + rng.expovariate(1 / (2 * MIN))
            arrivals.append((again, len(events) + i, copy.deepcopy(e)))
    arrivals.sort(key=lambda x: (x[0], x[1]))
    return [e for _, _, e in arrivals]


@dataclass
class _Agent:
    id: str
    capacity: int
    queues: tuple[str, ...]
    online: bool = False
    away: bool = False
    threads: list[str] = field(default_factory=list)
    back_at: int = 0


@dataclass
class _Thread:
    id: str
    customer: str
    channel: str
    intent: str
    vip: bool
    queue: str = "general"
    agent: str | None = None
    waiting: bool = False
    resolved: bool = False
    rounds: int = 1
    reopened: bool = False
    last_msg: dict | None = None
    epoch: int = 0  # bumps on every assignment change: stale callbacks check it

    @property
    def cause(self) -> dict:
        """The latest customer message, which the thread's decisions are caused by."""
        if self.last_msg is None:
            raise ValueError(f"thread {self.id} has no customer message yet")
        return self.last_msg


class _Sim:
    def __init__(self, seed: int, scale: float, tenant: str, day: date) -> None:
        self.rng = random.Random(f"sim:{seed}:{scale}:{tenant}:{day.isoformat()}")
        self.tenant, self.scale = tenant, scale
        self.idbase = ("sim", seed, scale, tenant, day.isoformat())
        self.t0 = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * S)
        self.out: list[tuple[int, int, dict]] = []
        self.heap: list[tuple[int, int, Callable, tuple]] = []
        self.seq = 0
        self.threads: dict[str, _Thread] = {}
        self.customers: list[str] = []
        self.queues: dict[str, list[str]] = {q: [] for q in ("vip", "orders", "billing", "care",
                                                              "general")}
        self.agents = self._make_agents(max(2, round(10 * scale)))

    # --- the event loop ---------------------------------------------------------------------

    def at(self, t: int, fn: Callable, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (int(t), self.seq, fn, args))

    def run(self) -> None:
        self._schedule_arrivals()
        self._schedule_shifts()
        end = self.t0 + 24 * HOUR
        while self.heap:
            t, _, fn, args = heapq.heappop(self.heap)
            if t >= end:
                break
            fn(t, *args)

    def emit(self, t: int, event: dict) -> dict:
        self.seq += 1
        self.out.append((int(t), self.seq, event))
        return event

    def new_id(self, *parts: Any) -> str:
        self.seq += 1
        return derive_id(*self.idbase, self.seq, *parts)

    def pick(self, weighted: tuple) -> Any:
        return self.rng.choices([x for x, _ in weighted], [w for _, w in weighted])[0]

    def delay(self, lo_s: float, hi_s: float) -> int:
        return int(self.rng.uniform(lo_s, hi_s) * S)

    # --- agents -------------------------------------------------------------------------------

    def _make_agents(self, n: int) -> dict[str, _Agent]:
        all_q = ("orders", "billing", "care", "general")
        agents = {}
        for i in range(n):
            qs = tuple(sorted({all_q[i % 4], all_q[(i + 1) % 4], "general"}))
            if i % 3 == 0:
                qs = tuple(sorted(set(qs) | {"vip"}))
            agents[f"agent-{i:02d}"] = _Agent(f"agent-{i:02d}", 2 + i % 3, qs)
        return agents

    def _schedule_shifts(self) -> None:
        for i, a in enumerate(self.agents.values()):
            early = i % 2 == 0
            start = self.t0 + (7 * HOUR + 45 * MIN if early else 11 * HOUR + 45 * MIN)
            start += self.delay(-300, 600)
            end = start + 8 * HOUR + 30 * MIN + self.delay(-600, 600)
            brk = start + self.delay(2.5 * 3600, 4.5 * 3600)
            self.at(start, self.presence, a.id, "online")
            self.at(brk, self.presence, a.id, "away")
            self.at(brk + self.delay(10 * 60, 35 * 60), self.presence, a.id, "online")
            self.at(end, self.presence, a.id, "offline")

    def presence(self, t: int, agent_id: str, state: str) -> None:
        a = self.agents[agent_id]
        a.online, a.away = state == "online", state == "away"
        env = envelope("AgentStatusChanged", event_id=self.new_id("presence", agent_id),
                       occurred_at=t, tenant_id=self.tenant, partition_key=topics.AGENT_STATUS.key(self.tenant),
                       producer="agent-api")
        self.emit(t, make("AgentStatusChanged", env, agent_id=a.id, presence=state,
                          capacity=a.capacity, skills=list(a.queues), languages=["en", "fr"],
                          queues=list(a.queues), display_name=f"Agent {a.id[-2:]}"))
        if state == "offline":
            for tid in list(a.threads):
                self.transfer(t + 1 + self.delay(0, 5), tid, reason="agent_offline")
        if state == "online":
            a.back_at = t
            self.dispatch(t + 1)

    def free_agent(self, queue: str) -> _Agent | None:
        ok = [a for a in self.agents.values()
              if a.online and queue in a.queues and len(a.threads) < a.capacity]
        return min(ok, key=lambda a: (len(a.threads), a.id)) if ok else None

    # --- customers ----------------------------------------------------------------------------

    def _schedule_arrivals(self) -> None:
        per_day = 900 * self.scale
        total = sum(HOURLY)
        for h, w in enumerate(HOURLY):
            rate = per_day * w / total / HOUR  # arrivals per ms
            t = self.t0 + h * HOUR
            if h == OPEN_H:  # the opening burst: the night's backlog writes in at once
                for _ in range(int(per_day * 0.03)):
                    self.at(t + self.delay(0, 600), self.arrive)
            while rate > 0:
                t += max(1, int(self.rng.expovariate(rate)))
                if t >= self.t0 + (h + 1) * HOUR:
                    break
                self.at(t, self.arrive)

    def arrive(self, t: int) -> None:
        if self.customers and self.rng.random() < 0.15:
            customer = self.rng.choice(self.customers)
        else:
            customer = f"cust-{len(self.customers):05d}"
            self.customers.append(customer)
        intent = self.pick(INTENTS)
        th = _Thread(self.new_id("thread")[:18], customer, self.pick(CHANNELS), intent,
                     vip=self.rng.random() < 0.08, rounds=self.rng.choice((1, 1, 2, 2, 3, 4)))
        self.threads[th.id] = th
        m = self.customer_message(t, th)
        self.emit(t, make("ConversationStarted", self.caused(m, "ConversationStarted", t),
                          thread_id=th.id, customer_id=th.customer, channel=th.channel,
                          subject=intent, first_message_event_id=m["envelope"]["event_id"]))
        if intent in ROUTINE and self.rng.random() < 0.8:
            self.to_bot(t + self.delay(0.05, 0.4), th)
        else:
            self.route_human(t + self.delay(0.05, 0.4), th)

    def customer_message(self, t: int, th: _Thread, channel: str | None = None) -> dict:
        ch = channel or th.channel
        eid = self.new_id("in", th.id)
        ident = {"channel": ch, "id": f"{ch}:{th.customer}", "display_name": None,
                 "phone_e164": None, "email": None, "login_id": None}
        env = envelope("MessageReceived", event_id=eid, occurred_at=t, tenant_id=self.tenant,
                       partition_key=topics.CONVERSATIONS.key(self.tenant, th.customer), producer="streams/threads")
        m = self.emit(t, make("MessageReceived", env, channel=ch, channel_account_id=f"{ch}-main",
                              sender=ident, channel_message_id=f"{ch}-{eid[:13]}",
                              text=f"({th.intent})", raw_event_id=derive_id("raw", eid),
                              customer_id=th.customer, thread_id=th.id))
        weights = SENTIMENT.get(th.intent, (12, 60, 28))
        label = self.rng.choices(("negative", "neutral", "positive"), weights)[0]
        score = {"negative": -0.6, "neutral": 0.0, "positive": 0.6}[label]
        self.emit(t, make("MessageEnriched", self.caused(m, "MessageEnriched", t),
                          message_event_id=eid, thread_id=th.id, customer_id=th.customer,
                          channel=ch, language="en", language_confidence=0.9,
                          sentiment_score=score, sentiment_label=label))
        th.last_msg = m
        return m

    def caused(self, cause: dict, etype: str, t: int, producer: str = "streams/threads") -> dict:
        return caused_by(cause, etype, id_suffix=str(self.new_id(etype)), producer=producer,
                         occurred_at=t)

    def business_message(self, t: int, th: _Thread, author_type: str,
                         author_id: str | None) -> None:
        eid = self.new_id("out", th.id)
        ident = {"channel": th.channel, "id": f"{th.channel}:{th.customer}", "display_name": None,
                 "phone_e164": None, "email": None, "login_id": None}
        env = envelope("MessageSent", event_id=eid, occurred_at=t, tenant_id=self.tenant,
                       partition_key=topics.CONVERSATIONS.key(self.tenant, th.customer),
                       correlation_id=th.last_msg["envelope"]["correlation_id"] if th.last_msg
                       else None, producer="agent-api")
        self.emit(t, make("MessageSent", env, channel=th.channel,
                          channel_account_id=f"{th.channel}-main",
                          recipient=ident, message_id=eid, author_type=author_type,
                          author_id=author_id, text="...", customer_id=th.customer,
                          thread_id=th.id))

    # --- bot ----------------------------------------------------------------------------------

    def to_bot(self, t: int, th: _Thread) -> None:
        self.routing(t, th, "bot", "bot", reasons=["routine_intent"])
        self.business_message(t + self.delay(1, 4), th, "bot", "faq-bot")
        if self.rng.random() < 0.65:
            if self.rng.random() < 0.5:
                self.at(t + self.delay(10, 60), self.customer_message, th)
            self.at(t + self.delay(60, 180), self.resolve, th.id, "bot", th.epoch)
        else:
            self.at(t + self.delay(20, 90), self.handoff, th.id)

    def handoff(self, t: int, tid: str) -> None:
        th = self.threads[tid]
        self.customer_message(t, th)
        self.route_human(t + self.delay(0.05, 0.4), th, reason="bot_handoff")

    # --- humans -------------------------------------------------------------------------------

    def routing(self, t: int, th: _Thread, kind: str, queue: str, agent: str | None = None,
                reasons: list[str] | None = None) -> None:
        hour = (t - self.t0) // HOUR
        is_open = OPEN_H <= hour < CLOSE_H
        self.emit(t, make("RoutingDecided", self.caused(th.cause, "RoutingDecided", t,
                                                        "streams/routing"),
                          thread_id=th.id, customer_id=th.customer, channel=th.channel,
                          message_event_id=th.cause["envelope"]["event_id"], target_kind=kind,
                          queue=queue, agent_id=agent, bot_id="faq-bot" if kind == "bot" else None,
                          priority=10 if th.vip else 0, reasons=reasons or [],
                          business_hours_open=is_open or kind == "bot",
                          next_open_at=None if is_open else self.t0 + OPEN_H * HOUR,
                          rules_version="sim"))

    def route_human(self, t: int, th: _Thread, reason: str = "intent") -> None:
        th.queue = "vip" if th.vip else QUEUE_OF[th.intent]
        a = self.free_agent(th.queue)
        if a is not None:
            self.routing(t, th, "agent", th.queue, a.id, [reason, "least_loaded"])
            self.assign(t, th, a)
            return
        self.routing(t, th, "queue", th.queue, None, [reason])
        hour = (t - self.t0) // HOUR
        if not OPEN_H <= hour < CLOSE_H:
            self.business_message(t + self.delay(0.5, 2), th, "automation", "hours-notice")
        self.enqueue(t, th)

    def enqueue(self, t: int, th: _Thread) -> None:
        th.waiting, th.agent = True, None
        th.epoch += 1
        self.emit(t, make("ConversationQueued", self.caused(th.cause, "ConversationQueued", t,
                                                            "streams/routing"),
                          thread_id=th.id, customer_id=th.customer, channel=th.channel,
                          queue=th.queue, priority=10 if th.vip else 0))
        self.queues[th.queue].append(th.id)
        hour = (t - self.t0) // HOUR
        if not OPEN_H <= hour < CLOSE_H and self.rng.random() < 0.5:
            patience = 12 * HOUR  # told the hours, they wait for the morning
        elif self.rng.random() < 0.08:
            patience = self.delay(5, 28)
        else:
            patience = int(self.rng.expovariate(1 / (25 * MIN)))
        self.at(t + patience, self.give_up, th.id, th.epoch)

    def give_up(self, t: int, tid: str, epoch: int) -> None:
        th = self.threads[tid]
        if th.waiting and th.epoch == epoch and not th.resolved:
            self.queues[th.queue].remove(tid)
            th.waiting = False
            self.resolve(t, tid, "customer", epoch)

    def dispatch(self, t: int) -> None:
        for queue in ("vip", "care", "orders", "billing", "general"):
            waiting = self.queues[queue]
            while waiting:
                a = self.free_agent(queue)
                if a is None:
                    break
                th = self.threads[waiting.pop(0)]
                th.waiting = False
                self.assign(t, th, a)

    def assign(self, t: int, th: _Thread, a: _Agent) -> None:
        th.agent = a.id
        th.epoch += 1
        a.threads.append(th.id)
        self.emit(t, make("ConversationAssigned", self.caused(th.cause, "ConversationAssigned",
                                                              t, "streams/routing"),
                          thread_id=th.id, customer_id=th.customer, channel=th.channel,
                          agent_id=a.id, queue=th.queue))
        slow = self.rng.random() < 0.15
        think = self.delay(240, 900) if slow else self.delay(8, 200)
        self.at(t + think, self.agent_reply, th.id, th.epoch)

    def agent_reply(self, t: int, tid: str, epoch: int) -> None:
        th = self.threads[tid]
        if th.epoch != epoch or th.resolved or th.agent is None:
            return
        a = self.agents[th.agent]
        if not a.online:  # away: answer when back
            self.at(max(t, a.back_at) + self.delay(60, 300), self.agent_reply, tid, epoch)
            return
        self.business_message(t, th, "agent", a.id)
        th.rounds -= 1
        if self.rng.random() < 0.04:
            self.transfer(t + self.delay(5, 30), tid, reason="skills")
        elif th.rounds > 0:
            self.at(t + self.delay(15, 400), self.customer_turn, tid, epoch)
        else:
            self.at(t + self.delay(20, 240), self.resolve, tid, "agent", epoch)

    def customer_turn(self, t: int, tid: str, epoch: int) -> None:
        th = self.threads[tid]
        if th.epoch != epoch or th.resolved:
            return
        switch = self.rng.random() < 0.08
        self.customer_message(t, th, self.pick(CHANNELS) if switch else None)
        if self.rng.random() < 0.25:  # a run of two customer messages
            self.at(t + self.delay(3, 40), self.follow_up, tid, epoch)
        slow = self.rng.random() < 0.1
        self.at(t + (self.delay(300, 1200) if slow else self.delay(10, 180)), self.agent_reply,
                tid, epoch)

    def follow_up(self, t: int, tid: str, epoch: int) -> None:
        th = self.threads[tid]
        if th.epoch == epoch and not th.resolved:
            self.customer_message(t, th)

    def transfer(self, t: int, tid: str, reason: str) -> None:
        th = self.threads[tid]
        if th.resolved or th.agent is None:
            return
        a = self.agents[th.agent]
        a.threads.remove(tid)
        self.emit(t, make("ConversationTransferred", self.caused(th.cause,
                                                                 "ConversationTransferred", t,
                                                                 "streams/routing"),
                          thread_id=th.id, customer_id=th.customer, channel=th.channel,
                          from_agent_id=a.id, from_queue=th.queue, to_queue=th.queue,
                          reason=reason))
        self.enqueue(t, th)
        self.dispatch(t + 1)

    def resolve(self, t: int, tid: str, by: str, epoch: int) -> None:
        th = self.threads[tid]
        if th.resolved or th.epoch != epoch:
            return
        agent = th.agent if by == "agent" else None
        if th.agent is not None:
            self.agents[th.agent].threads.remove(tid)
        th.resolved, th.agent, th.waiting = True, None, False
        th.epoch += 1
        self.emit(t, make("ConversationResolved", self.caused(th.cause, "ConversationResolved",
                                                              t),
                          thread_id=th.id, customer_id=th.customer, channel=th.channel,
                          resolved_by=by, agent_id=agent))
        if agent is not None:
            self.dispatch(t + 1)
            if not th.reopened and self.rng.random() < 0.1:
                self.at(t + self.delay(600, 2 * 3600), self.reopen, tid)

    def reopen(self, t: int, tid: str) -> None:
        th = self.threads[tid]
        th.resolved, th.reopened, th.rounds = False, True, self.rng.choice((1, 2))
        m = self.customer_message(t, th)
        self.emit(t, make("ConversationReopened", self.caused(m, "ConversationReopened", t),
                          thread_id=th.id, customer_id=th.customer, channel=th.channel,
                          message_event_id=m["envelope"]["event_id"]))
        self.route_human(t + self.delay(0.05, 0.4), th, reason="reopened")
