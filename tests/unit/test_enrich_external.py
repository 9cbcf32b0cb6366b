"""ExternalEnricher: timeouts, errors and bad answers fall back (streams.enrich.external)."""

import asyncio

import pytest

from streams.enrich.external import ExternalEnricher
from streams.enrich.logic import BuiltinEnricher, Enrichment, Intent
from tests.waiting import async_wait_until

GOOD = {
    "language": "fr", "language_confidence": 0.9, "sentiment_score": -0.7,
    "intents": [{"name": "refund", "confidence": 0.6}, {"name": "complaint", "confidence": 0.8}],
    "model": "nlp-v3",
}
TEXT = "Je veux être remboursé, c'est inadmissible"


@pytest.fixture(scope="module")
def builtin() -> BuiltinEnricher:
    return BuiltinEnricher()


def answering(body=GOOD, delay=0.0):
    calls = []

    async def call(text, tenant_id):
        calls.append((text, tenant_id))
        await asyncio.sleep(delay)  # the service's latency: what the timeouts are tested against
        return body

    call.calls = calls
    return call


async def failing(text, tenant_id):
    raise ConnectionError("service down")


def make(call, builtin, reasons=None, timeout_s=0.2):
    hook = None if reasons is None else (lambda reason, exc: reasons.append((reason, type(exc).__name__)))
    return ExternalEnricher(call, timeout_s, builtin, name="nlp/3", on_fallback=hook)


async def test_uses_the_service_answer(builtin):
    call = answering()
    result = await make(call, builtin).aenrich(TEXT, "t1")
    assert result == Enrichment(
        "fr", 0.9, -0.7, "negative", (Intent("complaint", 0.8), Intent("refund", 0.6)), "nlp/3", False,
    )
    assert call.calls == [(TEXT, "t1")]


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (answering(delay=5.0), "timeout"),
        (failing, "error"),
        (answering(body={"sentiment_score": 7}), "invalid_response"),
        (answering(body={"language": "french", "sentiment_score": 0.1}), "invalid_response"),
        (answering(body=None), "invalid_response"),
        (answering(body=["not", "a", "dict"]), "invalid_response"),
    ],
)
async def test_falls_back_to_builtin(builtin, call, reason):
    reasons = []
    result = await make(call, builtin, reasons, timeout_s=0.05).aenrich(TEXT, "t1")
    expected = builtin.enrich(TEXT, "t1")
    assert result.fallback_used is True
    assert result.enricher == expected.enricher
    assert (result.language, result.intents, result.sentiment_score) == (
        expected.language, expected.intents, expected.sentiment_score)
    assert [r for r, _ in reasons] == [reason]


async def test_timeout_is_bounded(builtin):
    loop = asyncio.get_running_loop()
    start = loop.time()
    await make(answering(delay=5.0), builtin, timeout_s=0.05).aenrich(TEXT, "t1")
    assert loop.time() - start < 1.0


async def test_empty_text_skips_the_service(builtin):
    call = answering()
    result = await make(call, builtin).aenrich("  ", "t1")
    assert call.calls == []
    assert result.language is None and result.fallback_used is False


async def test_missing_label_is_derived_from_the_score(builtin):
    result = await make(answering(body={"sentiment_score": 0.9}), builtin).aenrich(TEXT, "t1")
    assert (result.sentiment_label, result.language, result.intents) == ("positive", None, ())


async def test_cancellation_is_not_swallowed(builtin):
    service = answering(delay=5.0)
    task = asyncio.create_task(make(service, builtin, timeout_s=10).aenrich(TEXT, "t1"))
    assert await async_wait_until(lambda: service.calls, 5, every=0.001)  # the call is under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_rejects_non_positive_timeout(builtin):
    with pytest.raises(ValueError):
        ExternalEnricher(answering(), 0, builtin)
