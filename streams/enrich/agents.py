"""Enrichment agent: language, sentiment and intents of each threaded customer message.

Consumes: ``parley.conversations`` (key tenant|customer), MessageReceived with a thread id.
Produces: MessageEnriched to ``parley.conversations``, same key, id derived from the message's;
    the same bytes to ``routing.by-tenant`` (key tenant), routing's trigger.
State: none. Idempotency: a repeated message gives the same MessageEnriched (same id), which
    consumers drop by id. Replay-safe with the builtin enricher (deterministic).
"""

from __future__ import annotations

from typing import Any

from schemas import topics
from schemas.events import caused_by, make
from streams.enrich.logic import BuiltinEnricher, Enricher, Enrichment, load_intent_config
from streams.wiring import Wiring

STAGE = "streams/enrich"


def enricher_from(settings: Any) -> Enricher:
    """The builtin offline enricher, with the tenants' intent file when one is configured."""
    if settings.intents_file:
        return BuiltinEnricher(load_intent_config(settings.intents_file))
    return BuiltinEnricher()


def enriched_event(msg: dict[str, Any], e: Enrichment) -> dict[str, Any]:
    """The MessageEnriched of a threaded MessageReceived."""
    env = caused_by(msg, "MessageEnriched", id_suffix="enrich", producer=STAGE)
    return make("MessageEnriched", env, message_event_id=msg["envelope"]["event_id"], thread_id=msg["thread_id"],
                customer_id=msg["customer_id"], channel=msg["channel"], language=e.language,
                language_confidence=float(e.language_confidence), sentiment_score=float(e.sentiment_score),
                sentiment_label=e.sentiment_label,
                intents=[{"name": i.name, "confidence": float(i.confidence)} for i in e.intents],
                enricher=e.enricher, fallback_used=e.fallback_used)


def wanted(event: Any) -> bool:
    return (isinstance(event, dict) and event["envelope"]["event_type"] == "MessageReceived"
            and bool(event.get("thread_id")))


def register(w: Wiring, enricher: Enricher | None = None) -> None:
    conversations = w.topic(topics.CONVERSATIONS)
    to_routing = w.internal(topics.ROUTING_BY_TENANT)
    enricher = enricher or enricher_from(w.settings)

    @w.app.agent(conversations, name="enrich")
    async def enrich(stream: Any) -> None:
        def apply(value: dict[str, Any]) -> dict[str, Any] | None:
            if not wanted(value):
                return None
            return enriched_event(value, enricher.enrich(value.get("text"), value["envelope"]["tenant_id"]))

        async for out in w.decisions(STAGE, stream, apply):
            if out is None:
                continue
            await w.fan_out(out, (conversations, out["envelope"]["partition_key"]),
                            (to_routing, out["envelope"]["tenant_id"]))
