"""BuiltinEnricher: the pure enrichment entry point (streams.enrich.logic)."""

import json
from pathlib import Path

import pytest

from streams.enrich.intent import IntentConfig, IntentSpec, load_intent_config
from streams.enrich.logic import BUILTIN_NAME, BuiltinEnricher, Enrichment, Intent, IntentConfigError

LABELLED = Path(__file__).parents[1] / "data" / "labelled_messages.jsonl"


@pytest.fixture(scope="module")
def enricher() -> BuiltinEnricher:
    return BuiltinEnricher()


@pytest.mark.parametrize("text", [None, "", "  \n "])
def test_empty_text(enricher, text):
    assert enricher.enrich(text, "t1") == Enrichment(None, 0.0, 0.0, "neutral", (), BUILTIN_NAME, False)


def test_full_enrichment(enricher):
    result = enricher.enrich("Toujours pas reçu mon remboursement, c'est inadmissible !", "t1")
    assert result.language == "fr"
    assert result.language_confidence > 0.5
    assert result.sentiment_label == "negative"
    assert -1.0 <= result.sentiment_score < 0
    assert result.intents[0].name == "refund"
    assert isinstance(result.intents[0], Intent)
    assert (result.enricher, result.fallback_used) == (BUILTIN_NAME, False)


def test_emoji_only_message(enricher):
    result = enricher.enrich("👍", "t1")
    assert result.language is None
    assert result.sentiment_label == "positive"


def test_is_deterministic_across_instances():
    texts = [json.loads(line)["text"] for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    first, second = BuiltinEnricher(), BuiltinEnricher()
    assert [first.enrich(t, "t") for t in texts] == [second.enrich(t, "t") for t in texts]
    assert [first.enrich(t, "t") for t in texts] == [first.enrich(t, "t") for t in texts]


def test_tenants_use_their_own_config():
    shop = IntentConfig(intents=(IntentSpec(name="refund", patterns={"any": ("rembours*",)}),))
    bank = IntentConfig(intents=(IntentSpec(name="card_lost", patterns={"fr": ("perdu* .. carte",)}),))
    enricher = BuiltinEnricher({"default": shop, "bank": bank})
    text = "J'ai perdu ma carte, je veux être remboursé"
    assert [i.name for i in enricher.enrich(text, "bank").intents] == ["card_lost"]
    assert [i.name for i in enricher.enrich(text, "unknown-tenant").intents] == ["refund"]


def test_needs_a_default_tenant():
    with pytest.raises(IntentConfigError, match="default tenant"):
        BuiltinEnricher({"acme": load_intent_config()["default"]})


def test_intent_bias_nudges_sentiment():
    plain = IntentSpec(name="complaint", patterns={"fr": ("plainte",)})
    biased = plain.model_copy(update={"sentiment_bias": -0.5})
    text = "Je voudrais déposer une plainte"
    neutral = BuiltinEnricher({"default": IntentConfig(intents=(plain,))}).enrich(text, "t")
    negative = BuiltinEnricher({"default": IntentConfig(intents=(biased,))}).enrich(text, "t")
    assert negative.sentiment_score < neutral.sentiment_score
    assert negative.sentiment_label == "negative"


def test_long_text_is_bounded(enricher):
    result = enricher.enrich("Je veux un remboursement. " + "bla " * 100_000, "t")
    assert result.intents[0].name == "refund"


def test_enrich_many_equals_enrich_one_by_one(enricher):
    from parley.app.synthetic.events import TEXTS

    rows = [json.loads(line)["text"] for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    items = [(t, "default") for t in rows] + [(t.format(ref="123456"), "acme") for t in TEXTS] + [
        (None, "t"), ("", "t"), ("  ", "t"), ("👍", "t"), ("#4821", "t"), ("merci", "t"), ("thx", "t"),
        ("Hola, quiero cancelar mi pedido", "t"),
        ("Guten Tag, ich möchte meine Bestellung stornieren.", "t"),
        ("Je veux un remboursement. " + "bla " * 2_000, "t"),
    ]
    assert enricher.enrich_many(items) == [enricher.enrich(t, tenant) for t, tenant in items]
    assert enricher.enrich_many([]) == []


def test_enrich_many_uses_each_tenant_config():
    shop = IntentConfig(intents=(IntentSpec(name="refund", patterns={"any": ("rembours*",)}),))
    bank = IntentConfig(intents=(IntentSpec(name="card_lost", patterns={"fr": ("perdu* .. carte",)}),))
    enricher = BuiltinEnricher({"default": shop, "bank": bank})
    text = "J'ai perdu ma carte, je veux être remboursé"
    results = enricher.enrich_many([(text, "bank"), (text, "other")])
    assert [[i.name for i in r.intents] for r in results] == [["card_lost"], ["refund"]]
