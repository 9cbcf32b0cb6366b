"""Enrichment events: the MessageEnriched of a threaded customer message.

The conversations stage (``streams.conversations.agents``) enriches each customer message once
it has its thread, with the enricher built here from the settings. Deterministic: the same
message gives the same MessageEnriched (id derived from the message's), replay-safe.
"""

from __future__ import annotations

from typing import Any

from schemas.events import caused_by, make
from streams.enrich.logic import BuiltinEnricher, Enricher, Enrichment, load_intent_config

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
