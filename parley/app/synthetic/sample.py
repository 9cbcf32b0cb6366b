"""A deterministic synthetic event log for the projections' tests and the rebuild benchmark.

``generate(customers, seed=...)`` returns ``[(topic, key, event), ...]`` in production order:
identities, customer context, threads with messages on several channels (some customers switch
channel mid-thread), enrichment, routing, agent replies with delivery statuses (some out of
order), KPI events with several versions per key, agent presence; plus redelivered duplicates
(same event id, later offset). Events are valid against the Avro schemas (built with
``schemas.events.make``). Not a model of traffic: the demo's generator is; this one only has to
touch every projection column cheaply and repeatably.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from schemas import topics
from schemas.events import derive_id, envelope, make
from schemas.topics import Topic
from streams.kpi.arithmetic import INTERVAL_MS

DAY0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CHANNELS = ("whatsapp", "sms", "email", "webchat", "messenger")
AGENTS = ("ana", "bruno", "chloe", "dev")
QUEUES = ("general", "billing", "vip")
SENTIMENTS = (("negative", -0.6), ("neutral", 0.0), ("positive", 0.7))


@dataclass
class Log:
    """Records with the time they are produced at (event time, unless a test wants them late)."""

    records: list[tuple[int, Topic, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, topic: Topic, key: str, event: dict[str, Any], emit_at: int | None = None) -> dict:
        self.records.append((emit_at or event["envelope"]["occurred_at"], topic, key, event))
        return event


def _env(t: str, eid: str, at: int, tenant: str, key: str, cause: dict | None = None) -> dict:
    return envelope(t, event_id=eid, occurred_at=at, tenant_id=tenant, partition_key=key,
                    causation_id=cause["envelope"]["event_id"] if cause else None,
                    correlation_id=cause["envelope"]["correlation_id"] if cause else None,
                    producer="sample")


def _identity(channel: str, i: int) -> dict[str, Any]:
    ident = f"{channel[:2]}{100000 + i}"
    return {"channel": channel, "id": ident, "display_name": f"Customer {i}",
            "phone_e164": None, "email": None, "login_id": None}


def generate(customers: int = 50, *, seed: int = 7, tenant: str = "acme",
             duplicates: float = 0.05, start_ms: int = DAY0) -> list[tuple[Topic, str, dict]]:
    """A deterministic log touching every projection (see the module docstring)."""
    rnd = random.Random(seed)
    per_customer = [_customer(rnd, tenant, i, start_ms) for i in range(customers)]
    emitted = sorted((r for log in per_customer for r in log.records), key=lambda r: r[0])
    merged = [r[1:] for r in emitted]  # stable sort: each customer's own order is kept
    contacts = [r[2] for r in merged if r[2]["envelope"]["event_type"] == "ContactMeasured"]
    merged += _interval_stats(tenant, contacts) + _agent_stats(rnd, tenant, start_ms)
    return _with_duplicates(rnd, merged, duplicates)


def _customer(rnd: random.Random, tenant: str, i: int, start_ms: int) -> Log:
    log, cust = Log(), f"cust-{i:05d}"
    ckey = topics.IDENTITY.key(tenant, cust)  # also parley.customers.context's
    t = start_ms + rnd.randrange(6 * 3600_000, 20 * 3600_000)
    channel = rnd.choice(CHANNELS)
    ident = _identity(channel, i)
    log.add(topics.IDENTITY, ckey, make(
        "IdentityLinked", _env("IdentityLinked", derive_id(cust, "link", 0), t, tenant, ckey),
        customer_id=cust, identity_key=f"channel:{channel}:{ident['id']}", signal="first_contact"))
    if rnd.random() < 0.5:
        log.add(topics.CUSTOMER_CONTEXT, ckey, make(
            "CustomerContextUpdated", _env("CustomerContextUpdated", derive_id(cust, "ctx"), t - 1000,
                                           tenant, ckey),
            customer_id=cust, source="crm", name=f"Client {i}", tier=rnd.choice(("standard", "gold", "vip")),
            lifecycle_stage="customer", attributes={"orders": str(rnd.randrange(1, 30))}))
    for n in range(rnd.choice((1, 1, 2))):
        t = _thread(rnd, log, tenant, cust, ident, i, n, t) + rnd.randrange(600_000, 3600_000)
    return log


def _thread(rnd: random.Random, log: Log, tenant: str, cust: str, ident: dict, i: int, n: int,
            t: int) -> int:
    ckey, thread = topics.CONVERSATIONS.key(tenant, cust), derive_id(cust, "thread", n)
    agent, queue = rnd.choice(AGENTS), rnd.choice(QUEUES)
    first = _inbound(rnd, log, tenant, cust, ident, thread, f"{i}-{n}-0", t, subject=f"order {i}-{n}")
    start = log.add(topics.CONVERSATIONS, ckey, make(
        "ConversationStarted", _env("ConversationStarted", derive_id(thread, "start"), t, tenant, ckey, first),
        thread_id=thread, customer_id=cust, channel=ident["channel"], subject=f"order {i}-{n}",
        first_message_event_id=first["envelope"]["event_id"]))
    log.add(topics.CONVERSATIONS, ckey, make(
        "RoutingDecided", _env("RoutingDecided", derive_id(thread, "route"), t, tenant, ckey, first),
        thread_id=thread, customer_id=cust, channel=ident["channel"],
        message_event_id=first["envelope"]["event_id"], target_kind="queue", queue=queue,
        priority=1 if queue == "vip" else 0, reasons=["intent:order_status"]))
    log.add(topics.CONVERSATIONS, ckey, make(
        "ConversationQueued", _env("ConversationQueued", derive_id(thread, "queued"), t, tenant, ckey, start),
        thread_id=thread, customer_id=cust, channel=ident["channel"], queue=queue))
    t_assign = t + rnd.randrange(2_000, 60_000)
    log.add(topics.CONVERSATIONS, ckey, make(
        "ConversationAssigned", _env("ConversationAssigned", derive_id(thread, "assigned"), t_assign,
                                     tenant, ckey, start),
        thread_id=thread, customer_id=cust, channel=ident["channel"], agent_id=agent, queue=queue))
    slow = rnd.random() < 0.12  # most answers come within the 300 s target, some do not
    t_reply = t_assign + (rnd.randrange(240_000, 900_000) if slow else rnd.randrange(3_000, 200_000))
    _reply(rnd, log, tenant, cust, ident, thread, agent, f"{i}-{n}-r0", t_reply, first)
    t_end = t_reply
    if rnd.random() < 0.4:  # a follow-up, sometimes from another channel
        other = dict(ident, channel=rnd.choice(CHANNELS)) if rnd.random() < 0.5 else ident
        t_end = t_reply + rnd.randrange(30_000, 900_000)
        _inbound(rnd, log, tenant, cust, other, thread, f"{i}-{n}-1", t_end)
    resolved = rnd.random() < 0.7
    if resolved:
        t_end += rnd.randrange(60_000, 600_000)
        log.add(topics.CONVERSATIONS, ckey, make(
            "ConversationResolved", _env("ConversationResolved", derive_id(thread, "resolved"), t_end,
                                         tenant, ckey, start),
            thread_id=thread, customer_id=cust, channel=ident["channel"], resolved_by="agent",
            agent_id=agent))
    _contact(log, tenant, cust, thread, ident["channel"], queue, agent, t, t_reply,
             t_end if resolved else None, first)
    return t_end


def _inbound(rnd: random.Random, log: Log, tenant: str, cust: str, ident: dict, thread: str,
             mid: str, t: int, subject: str | None = None) -> dict:
    ckey = topics.CONVERSATIONS.key(tenant, cust)
    msg = log.add(topics.CONVERSATIONS, ckey, make(
        "MessageReceived", _env("MessageReceived", derive_id(tenant, ident["channel"], mid), t, tenant, ckey),
        channel=ident["channel"], channel_account_id="acct-1", sender=ident,
        channel_message_id=f"wamid.{mid}", text=f"Bonjour, où est ma commande {mid} ?",
        subject=subject, raw_event_id=derive_id("raw", mid), customer_id=cust, thread_id=thread))
    label, score = rnd.choice(SENTIMENTS)
    log.add(topics.CONVERSATIONS, ckey, make(
        "MessageEnriched", _env("MessageEnriched", derive_id(mid, "enriched"), t, tenant, ckey, msg),
        message_event_id=msg["envelope"]["event_id"], thread_id=thread, customer_id=cust,
        channel=ident["channel"], language=rnd.choice(("fr", "en")), language_confidence=0.9,
        sentiment_score=score, sentiment_label=label,
        intents=[{"name": "order_status", "confidence": 0.8}]))
    return msg


def _reply(rnd: random.Random, log: Log, tenant: str, cust: str, ident: dict, thread: str,
           agent: str, mid: str, t: int, cause: dict) -> None:
    ckey, cmid = topics.CONVERSATIONS.key(tenant, cust), f"out.{mid}"  # also parley.outbound's
    sent = log.add(topics.CONVERSATIONS, ckey, make(
        "MessageSent", _env("MessageSent", derive_id(tenant, "sent", mid), t, tenant, ckey, cause),
        channel=ident["channel"], channel_account_id="acct-1", recipient=ident, message_id=mid,
        channel_message_id=cmid, author_type="agent", author_id=agent, text="Elle arrive demain.",
        customer_id=cust, thread_id=thread, in_reply_to_event_id=cause["envelope"]["event_id"]))
    _egress(rnd, log, tenant, ckey, sent, cmid, t)
    mkey = topics.MESSAGES.key(tenant, ident["channel"], ident["id"])
    statuses = [("delivered", t + 2000, t + 2000), ("read", t + 30_000, t + 30_000)]
    if rnd.random() < 0.3:  # receipts are not ordered by any channel: "read" comes first
        statuses = [("read", t + 30_000, t + 30_000), ("delivered", t + 2000, t + 30_001)]
    for status, at, emit_at in statuses:
        log.add(topics.MESSAGES, mkey, make(
            "DeliveryStatusChanged", _env("DeliveryStatusChanged", derive_id(cmid, status), at, tenant, mkey),
            channel=ident["channel"], channel_account_id="acct-1", recipient=ident,
            channel_message_id=cmid, status=status, raw_event_id=derive_id("raw", cmid, status)),
            emit_at)


def _egress(rnd: random.Random, log: Log, tenant: str, ckey: str, sent: dict, cmid: str, t: int) -> None:
    """The egress's delivery events of a reply: attempted, then sent (or, now and then, failed)."""
    ids = dict(message_event_id=sent["envelope"]["event_id"], message_id=sent["message_id"], channel=sent["channel"],
               channel_account_id="acct-1", recipient_id=sent["recipient"]["id"], customer_id=sent["customer_id"],
               thread_id=sent["thread_id"], attempt=1)
    rendering = {"asked": ["text"], "sent": ["text"], "reasons": [], "parts": 1, "mode": "response"}
    log.add(topics.OUTBOUND, ckey, make("OutboundAttempted", _env("OutboundAttempted", derive_id(cmid, "attempted"),
                                                                  t + 50, tenant, ckey, sent),
                                        **ids, rendering=rendering))
    if rnd.random() < 0.1:
        log.add(topics.OUTBOUND, ckey, make("OutboundFailed", _env("OutboundFailed", derive_id(cmid, "failed"), t + 90,
                                                                   tenant, ckey, sent), **ids, code="131047",
                                            reason="outside the window", permanent=True, final=True))
    else:
        log.add(topics.OUTBOUND, ckey, make("OutboundSent", _env("OutboundSent", derive_id(cmid, "sent"), t + 90,
                                                                 tenant, ckey, sent), **ids, channel_message_id=cmid,
                                            channel_message_ids=[cmid], rendering=rendering))


def _contact(log: Log, tenant: str, cust: str, thread: str, channel: str, queue: str, agent: str,
             t: int, t_reply: int, t_resolved: int | None, cause: dict) -> None:
    contact = derive_id(thread, "contact", 0)
    key = topics.KPI_CONTACTS.key(tenant, contact)
    base = dict(contact_id=contact, thread_id=thread, customer_id=cust, channel=channel, queue=queue,
                interval_start=t - t % INTERVAL_MS, started_at=t)
    versions = [dict(base, status="waiting"),
                dict(base, status="answered", agent_id=agent, first_human_reply_at=t_reply,
                     first_reply_at=t_reply, frt_ms=t_reply - t, reply_gap_count=1,
                     reply_gap_total_ms=t_reply - t, reply_gap_max_ms=t_reply - t,
                     last_customer_sentiment="neutral")]
    times = [t, t_reply]
    if t_resolved:
        versions.append(dict(versions[1], status="resolved", resolved_at=t_resolved))
        times.append(t_resolved)
    for n, (v, at) in enumerate(zip(versions, times, strict=True)):
        log.add(topics.KPI_CONTACTS, key, make(
            "ContactMeasured", _env("ContactMeasured", derive_id(contact, "v", n), at, tenant, key, cause), **v))


def _interval_stats(tenant: str, contacts: list[dict]) -> list[tuple[Topic, str, dict]]:
    """Per interval and channel (and overall): offered, answered within 300 s/20 s, SL."""
    latest = {c["contact_id"]: c for c in contacts}
    groups: dict[tuple[int, str, str], list[dict]] = {}
    for c in latest.values():
        for dim, val in (("overall", "all"), ("channel", c["channel"]), ("queue", c["queue"])):
            groups.setdefault((c["interval_start"], dim, val), []).append(c)
    out = []
    for (start, dim, val), cs in sorted(groups.items()):
        key = topics.KPI_INTERVALS.key(tenant, start, dim, val)
        answered = [c for c in cs if c["frt_ms"] is not None]
        w300 = sum(1 for c in answered if c["frt_ms"] <= 300_000)
        w20 = sum(1 for c in answered if c["frt_ms"] <= 20_000)
        metrics = {"offered": float(len(cs)), "answered": float(len(answered)),
                   "answered_within_300": float(w300), "answered_within_20": float(w20),
                   "sl_300": w300 / len(answered) if answered else 0.0,
                   "sl_20": w20 / len(answered) if answered else 0.0,
                   "frt_mean_ms": sum(c["frt_ms"] for c in answered) / len(answered) if answered else 0.0}
        for n, m in enumerate(({"offered": metrics["offered"]}, metrics)):  # an early, then the final
            at = start + INTERVAL_MS - 1 + n
            out.append((topics.KPI_INTERVALS, key, make(
                "IntervalStat", _env("IntervalStat", derive_id(key, n), at, tenant, key),
                interval_start=start, dimension=dim, dimension_value=val, metrics=m)))
    return out


def _agent_stats(rnd: random.Random, tenant: str, start_ms: int) -> list[tuple[Topic, str, dict]]:
    out = []
    for a, agent in enumerate(AGENTS):
        akey = topics.AGENT_STATUS.key(tenant)
        out.append((topics.AGENT_STATUS, akey, make(
            "AgentStatusChanged", _env("AgentStatusChanged", derive_id(agent, "online"), start_ms + 8 * 3600_000,
                                       tenant, akey),
            agent_id=agent, presence="online", capacity=3, skills=["order_status"], languages=["fr", "en"],
            display_name=agent.title())))
        for k in range(8 * 4, 18 * 4):
            start = start_ms + k * INTERVAL_MS
            online = INTERVAL_MS if (k + a) % 7 else INTERVAL_MS // 2
            open_ms = rnd.randrange(0, 3 * online)
            ikey = topics.KPI_INTERVALS.key(tenant, start, "agent", agent)
            out.append((topics.KPI_INTERVALS, ikey, make(
                "AgentIntervalStat", _env("AgentIntervalStat", derive_id(ikey), start + INTERVAL_MS, tenant, ikey),
                agent_id=agent, interval_start=start, online_ms=online, open_conversation_ms=open_ms,
                idle_ms=max(0, online - open_ms), peak_concurrency=min(3, 1 + open_ms // online),
                time_at_level_ms={"0": max(0, online - open_ms), "1": min(online, open_ms)})))
    return out


_LATEST_WINS = (topics.KPI_CONTACTS, topics.KPI_INTERVALS)


def _with_duplicates(rnd: random.Random, records: list, share: float) -> list:
    """Redeliveries: some records again, later (same event id, a later offset).

    On the KPI topics (latest measure wins) a duplicate follows its original at once, as a
    producer retry does; an old measure redelivered after a newer one is not a case they have.
    """
    order = [(i, 0, r) for i, r in enumerate(records)]
    for i, r in enumerate(records):
        if rnd.random() < share:
            order.append((i if r[0] in _LATEST_WINS else i + rnd.randrange(1, 50), 1, r))
    return [r for _, _, r in sorted(order, key=lambda x: (x[0], x[1]))]


async def produce(kafka: Any, records: list[tuple[Topic, str, dict]], *, codec: Any = None) -> int:
    """Produce ``records`` under ``kafka.topic_prefix`` (acks=all, idempotent); return the count."""
    from aiokafka import AIOKafkaProducer

    from schemas.codec import codec_for

    codec = codec or codec_for(kafka)
    await codec.aprepare({t for t, _, _ in records})
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topics.named(kafka.topic_prefix, t), codec.encode(e, t.name), key=k.encode())
                   for t, k, e in records]
        await producer.flush()
        for f in futures:
            await f
    finally:
        await producer.stop()
    return len(records)
