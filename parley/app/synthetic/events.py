"""Event factories for the stream processors' tests and benchmark (no I/O, no clock).

Every factory builds a complete event with ``schemas.events.make``, shaped as ingress or the
agent API would write it, with deterministic ids derived from its arguments.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from schemas import topics
from schemas.events import derive_id, envelope, make

T0 = 1_736_150_400_000  # 2025-01-06 08:00 UTC, a Monday (09:00 in Paris)
MIN = 60_000
HOUR = 60 * MIN


def identity(channel: str, ident: str, *, phone: str | None = None, email: str | None = None,
             login: str | None = None, name: str | None = None) -> dict[str, Any]:
    return {"channel": channel, "id": ident, "display_name": name, "phone_e164": phone, "email": email,
            "login_id": login}


def received(tenant: str, sender: dict[str, Any], text: str | None, at: int, *, n: int | str = 0,
             subject: str | None = None, references: Sequence[str] = (), customer_id: str | None = None,
             thread_id: str | None = None, account: str = "acct-1", reply_to: str | None = None,
             recorded_at: int | None = None) -> dict[str, Any]:
    """A MessageReceived as ingress writes it (key tenant|channel|sender id)."""
    channel = sender["channel"]
    cmid = f"{channel}-{sender['id']}-{n}"
    key = topics.MESSAGES.key(tenant, channel, sender["id"])
    env = envelope("MessageReceived", event_id=derive_id(tenant, channel, cmid), occurred_at=at,
                   tenant_id=tenant, partition_key=key, producer=f"ingress/{channel}", recorded_at=recorded_at)
    return make("MessageReceived", env, channel=channel, channel_account_id=account, sender=sender,
                channel_message_id=cmid, text=text, subject=subject, raw_event_id=derive_id("raw", cmid),
                references=list(references), customer_id=customer_id, thread_id=thread_id,
                reply_to_channel_message_id=reply_to)


def sent(tenant: str, recipient: dict[str, Any], text: str, at: int, *, n: int | str = 0,
         author_type: str = "agent", author_id: str | None = "a1", customer_id: str | None = None,
         thread_id: str | None = None, template_name: str | None = None,
         channel_message_id: str | None = None) -> dict[str, Any]:
    """A MessageSent as the agent API writes it (to parley.messages, key tenant|channel|recipient)."""
    channel = recipient["channel"]
    mid = derive_id(tenant, "out", channel, recipient["id"], n)
    env = envelope("MessageSent", event_id=mid, occurred_at=at, tenant_id=tenant,
                   partition_key=topics.MESSAGES.key(tenant, channel, recipient["id"]), producer="agent-api")
    return make("MessageSent", env, channel=channel, channel_account_id="acct-1", recipient=recipient,
                message_id=mid, author_type=author_type, author_id=author_id, text=text,
                customer_id=customer_id, thread_id=thread_id, template_name=template_name,
                channel_message_id=channel_message_id)


def delivery(tenant: str, recipient: dict[str, Any], at: int, *, n: int | str = 0,
             status: str = "delivered") -> dict[str, Any]:
    channel = recipient["channel"]
    env = envelope("DeliveryStatusChanged", event_id=derive_id(tenant, "dsc", channel, recipient["id"], n),
                   occurred_at=at, tenant_id=tenant,
                   partition_key=topics.MESSAGES.key(tenant, channel, recipient["id"]),
                   producer=f"ingress/{channel}")
    return make("DeliveryStatusChanged", env, channel=channel, channel_account_id="acct-1",
                recipient=recipient, channel_message_id=f"out-{n}", status=status, raw_event_id="raw")


def command(kind: str, tenant: str, at: int, *, n: int | str = 0, **fields: Any) -> dict[str, Any]:
    """An identity command from the agent API (to parley.identity.commands, key tenant)."""
    env = envelope(kind, event_id=derive_id(tenant, "cmd", kind, n), occurred_at=at, tenant_id=tenant,
                   partition_key=topics.IDENTITY_COMMANDS.key(tenant), producer="agent-api")
    return make(kind, env, **fields)


def agent_status(tenant: str, agent_id: str, at: int, *, presence: str = "online", capacity: int = 3,
                 skills: Sequence[str] = (), languages: Sequence[str] = (), channels: Sequence[str] = (),
                 queues: Sequence[str] = (), n: int | str = 0) -> dict[str, Any]:
    env = envelope("AgentStatusChanged", event_id=derive_id(tenant, "agent", agent_id, at, n), occurred_at=at,
                   tenant_id=tenant, partition_key=topics.AGENT_STATUS.key(tenant), producer="agent-api")
    return make("AgentStatusChanged", env, agent_id=agent_id, presence=presence, capacity=capacity,
                skills=list(skills), languages=list(languages), channels=list(channels), queues=list(queues))


def context(tenant: str, customer_id: str, at: int, *, tier: str | None = None, n: int | str = 0) -> dict[str, Any]:
    env = envelope("CustomerContextUpdated", event_id=derive_id(tenant, "ctx", customer_id, at, n), occurred_at=at,
                   tenant_id=tenant, partition_key=topics.CUSTOMER_CONTEXT.key(tenant, customer_id),
                   producer="crm")
    return make("CustomerContextUpdated", env, customer_id=customer_id, source="crm", tier=tier)


def thread_command(kind: str, tenant: str, customer_id: str, thread_id: str, at: int, *, n: int | str = 0,
                   **fields: Any) -> dict[str, Any]:
    """ConversationResolved / ConversationTransferred from the agent API (key tenant|customer)."""
    env = envelope(kind, event_id=derive_id(tenant, kind, thread_id, at, n), occurred_at=at, tenant_id=tenant,
                   partition_key=topics.CONVERSATION_MESSAGES.key(tenant, customer_id), producer="agent-api")
    return make(kind, env, thread_id=thread_id, customer_id=customer_id, **fields)


def enriched(msg: dict[str, Any], *, language: str | None = "en", score: float = 0.0, label: str = "neutral",
             intents: Sequence[tuple[str, float]] = ()) -> dict[str, Any]:
    """The MessageEnriched the enrich agent would emit for a threaded MessageReceived."""
    from schemas.events import caused_by

    env = caused_by(msg, "MessageEnriched", id_suffix="enrich", producer="streams/enrich")
    return make("MessageEnriched", env, message_event_id=msg["envelope"]["event_id"], thread_id=msg["thread_id"],
                customer_id=msg["customer_id"], channel=msg["channel"], language=language,
                sentiment_score=score, sentiment_label=label,
                intents=[{"name": n, "confidence": c} for n, c in intents])


# --- synthetic traffic -----------------------------------------------------------------------

TEXTS = (
    "Where is my order {ref}? It should have arrived yesterday.",
    "Bonjour, ma commande {ref} n'est toujours pas arrivée, c'est inadmissible !",
    "I would like a refund for order {ref}, the item is broken.",
    "Pouvez-vous m'aider avec ma facture {ref} ?",
    "Thanks, that solved it!",
    "I want to talk to a human please",
    "Je voudrais annuler ma commande {ref}",
    "Hello, what are your opening hours?",
)
CHANNELS = ("whatsapp", "sms", "messenger", "email", "webchat", "telegram")


def traffic(n_messages: int, *, customers: int = 200, tenants: Sequence[str] = ("acme",), seed: int = 7,
            start: int = T0, spacing_ms: float = 1000, new_subject: float = 0.1) -> Iterator[dict[str, Any]]:
    """A deterministic stream of MessageReceived from ``customers`` people on several channels.

    Some customers use two channels with the same phone (WhatsApp and SMS), e-mails carry
    subjects, and texts mention order numbers, so identity, threads and routing all have work.
    A customer writes about one order for a while: each message moves to a new order (a new
    thread, a new contact for routing) with probability ``new_subject``.
    """
    rnd = random.Random(seed)
    people = []
    for i in range(customers):
        phone = f"+3361{i:07d}"
        people.append((rnd.choice(tenants), i, phone, rnd.random() < 0.3))
    subject = [0] * customers
    for n in range(n_messages):
        tenant, i, phone, two_channels = people[rnd.randrange(len(people))]
        if rnd.random() < new_subject:
            subject[i] += 1
        channel = rnd.choice(("whatsapp", "sms") if two_channels else CHANNELS)
        ref = f"{100000 + (i * 7919 + subject[i] * 104729) % 900000}"
        text = rnd.choice(TEXTS).format(ref=ref)
        email_subject = f"Order {ref}" if channel == "email" else None
        sender = _sender(channel, i, phone)
        yield received(tenant, sender, text, int(start + n * spacing_ms), n=n, subject=email_subject)


def _sender(channel: str, i: int, phone: str) -> dict[str, Any]:
    if channel in ("whatsapp", "sms"):
        return identity(channel, phone.lstrip("+") if channel == "whatsapp" else phone, phone=phone)
    if channel == "email":
        return identity("email", f"c{i}@example.com", email=f"c{i}@example.com")
    if channel == "webchat":
        return identity("webchat", f"web-{i}", login=f"user-{i}")
    return identity(channel, f"{channel}-{i}")
