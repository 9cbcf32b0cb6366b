"""Enrichment by an external NLP service, with a builtin enricher as fallback.

Consumes: a message text and tenant id; awaits ``call(text, tenant_id)``, which
    returns the service's JSON as a dict (the HTTP client lives with the caller).
Produces: an :class:`~streams.enrich.logic.Enrichment` named ``name`` when the
    service answers in time with a valid body; otherwise the fallback's
    enrichment with ``fallback_used=True`` (timeout, exception, invalid body).
State: none. Idempotency / replay: the service may change its answers, so this
    path is not replay-deterministic; replays should reuse the recorded
    ``MessageEnriched`` events, whose ``enricher``/``fallback_used`` tell
    which path produced them. Cancellation of the caller is never swallowed.

Expected response body (extra keys are ignored)::

    {"language": "fr", "language_confidence": 0.93, "sentiment_score": -0.6,
     "sentiment_label": "negative",            # optional: derived from the score
     "intents": [{"name": "refund", "confidence": 0.8}]}
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from streams.enrich.logic import Enricher, Enrichment, Intent
from streams.enrich.sentiment import label_for

ServiceCall = Callable[[str, str], Awaitable[dict]]
FallbackHook = Callable[[str, BaseException], None]


class ExternalIntent(BaseModel):
    """One intent in the service's answer."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str = Field(min_length=1)
    confidence: float = Field(ge=0.0, le=1.0)


class ExternalResponse(BaseModel):
    """The service's answer, validated before use."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    language_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    sentiment_score: float = Field(ge=-1.0, le=1.0)
    sentiment_label: Literal["negative", "neutral", "positive"] | None = None
    intents: tuple[ExternalIntent, ...] = ()


class ExternalEnricher:
    """Ask an external service within ``timeout_s``; fall back on any failure.

    ``on_fallback(reason, exc)`` (optional) is told why the fallback answered:
    ``"timeout"``, ``"error"`` or ``"invalid_response"``; use it to log or count.
    """

    def __init__(self, call: ServiceCall, timeout_s: float, fallback: Enricher, *,
                 name: str = "external/1", on_fallback: FallbackHook | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._call = call
        self._timeout_s = timeout_s
        self._fallback = fallback
        self._on_fallback = on_fallback
        self.name = name

    async def aenrich(self, text: str | None, tenant_id: str) -> Enrichment:
        """Enrich via the service, or via the fallback (``fallback_used=True``)."""
        if not text or not text.strip():
            return self._fallback.enrich(text, tenant_id)  # nothing worth a call
        try:
            body = await asyncio.wait_for(self._call(text, tenant_id), self._timeout_s)
        except TimeoutError as exc:
            return self._fall_back(text, tenant_id, "timeout", exc)
        except Exception as exc:  # noqa: BLE001 - any service failure means fallback
            return self._fall_back(text, tenant_id, "error", exc)
        try:
            return self._to_enrichment(ExternalResponse.model_validate(body))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            return self._fall_back(text, tenant_id, "invalid_response", exc)

    def _fall_back(self, text: str, tenant_id: str, reason: str, exc: BaseException) -> Enrichment:
        if self._on_fallback is not None:
            self._on_fallback(reason, exc)
        return replace(self._fallback.enrich(text, tenant_id), fallback_used=True)

    def _to_enrichment(self, body: ExternalResponse) -> Enrichment:
        # Best first; ties by name so equal answers always serialise the same.
        intents = sorted(body.intents, key=lambda i: (-i.confidence, i.name))
        return Enrichment(
            language=body.language,
            language_confidence=body.language_confidence,
            sentiment_score=body.sentiment_score,
            sentiment_label=body.sentiment_label or label_for(body.sentiment_score),
            intents=tuple(Intent(i.name, i.confidence) for i in intents),
            enricher=self.name,
            fallback_used=False,
        )
