"""Per-tenant intent patterns and config validation (streams.enrich.intent)."""

import textwrap

import pytest

from streams.enrich.intent import (
    IntentClassifier,
    IntentConfigError,
    compile_pattern,
    load_intent_config,
)


@pytest.fixture(scope="module")
def default() -> IntentClassifier:
    return IntentClassifier(load_intent_config()["default"])


def top(classifier, text):
    intents = classifier.classify(text)
    return intents[0].name if intents else "other"


def write(tmp_path, body: str):
    path = tmp_path / "intents.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Je veux être remboursé", "refund"),
        ("I'd like my money back", "refund"),
        ("ou en est ma commande ?", "order_status"),
        ("has my order shipped?", "order_status"),
        ("Je souhaite RÉSILIER mon abonnement", "cancellation"),
        ("please cancel my subscription", "cancellation"),
        ("C'est inadmissible, je suis très déçue", "complaint"),
        ("I want to file a complaint", "complaint"),
        ("J'ai été débité deux fois", "billing"),
        ("I was charged twice", "billing"),
        ("Le colis est arrivé écrasé", "delivery_problem"),
        ("it says delivered but nothing here", "delivery_problem"),
        ("mot de passe oublié", "account_access"),
        ("I can't log in", "account_access"),
        ("Ce chargeur est-il compatible avec mon téléphone ?", "product_question"),
        ("is it back in stock?", "product_question"),
        ("Bonjour", "greeting"),
        ("hello", "greeting"),
        ("je veux parler à un conseiller", "human_request"),
        ("get me a real person", "human_request"),
        ("merci beaucoup !", "thanks"),
        ("thanks a lot", "thanks"),
        ("Quel temps fait-il ?", "other"),
    ],
)
def test_default_intents(default, text, intent):
    assert top(default, text) == intent


def test_request_outranks_greeting_and_thanks(default):
    names = [i.name for i in default.classify("Bonjour, je voudrais annuler ma commande, merci")]
    assert names[0] == "cancellation"
    assert {"greeting", "thanks"} & set(names[1:])


def test_negative_weight_cancels_false_friend(default):
    # "merci de ..." is a polite imperative, not a thank-you.
    assert "thanks" not in [i.name for i in default.classify("Merci de me rappeler")]


def test_confidences_are_sorted_probabilities(default):
    intents = default.classify("Bonjour, je veux un remboursement, le colis est arrivé cassé")
    assert [i.confidence for i in intents] == sorted((i.confidence for i in intents), reverse=True)
    assert all(0.0 < i.confidence < 1.0 for i in intents)
    assert len(intents) <= 3


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("rembours*", "remboursement", True),
        ("rembours*", "rembourser", True),
        ("rembours*", "nonremboursable", False),        # whole words only
        ("mot de passe", "MOT-DE-PASSE", True),          # folded punctuation
        ("deja recu", "déjà reçu", True),                # accent-insensitive
        ("quand .. recevoir", "quand est ce que je vais recevoir", False),  # > 3 words apart
        ("quand .. recevoir", "quand vais je recevoir", True),
        ("re:\\bn[o°]? ?\\d{5}\\b", "commande n 48213", True),
    ],
)
def test_pattern_syntax(pattern, text, matches):
    from streams.enrich.language import fold

    assert compile_pattern(pattern).matches(fold(text)) is matches


TENANTS = """
    version = 1

    [tenants.default]
    min_confidence = 0.3
    [[tenants.default.intents]]
    name = "refund"
    patterns.fr = ["rembours*"]
    [[tenants.default.intents]]
    name = "greeting"
    patterns.any = [{p = "bonjour", w = 0.5}]

    [tenants.bank]
    extends = "default"
    min_confidence = 0.5
    [[tenants.bank.intents]]
    name = "card_lost"
    patterns.fr = ["carte .. perdu*", "opposition"]
    [[tenants.bank.intents]]
    name = "greeting"
    patterns.any = [{p = "bonjour", w = 0.2}]
"""


def test_tenant_extends_and_overrides(tmp_path):
    configs = load_intent_config(write(tmp_path, TENANTS))
    bank, default = IntentClassifier(configs["bank"]), IntentClassifier(configs["default"])
    assert configs["bank"].min_confidence == 0.5
    assert [i.name for i in configs["bank"].intents] == ["refund", "greeting", "card_lost"]
    assert top(bank, "j'ai perdu ma carte, opposition svp") == "card_lost"
    assert top(default, "j'ai perdu ma carte, opposition svp") == "other"
    assert top(bank, "remboursement") == "refund"
    assert top(default, "bonjour") == "greeting"
    assert top(bank, "bonjour") == "other"  # overridden weight 0.2 is under 0.5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("version = 2\n[tenants.default]\n", "version"),
        ("version = 1\n[tenants]\n", "tenants"),
        ("version = 1\n[tenants.default]\n", "has no intents"),
        ("version = 1\n[tenants.default]\nextends = 'nope'\n", "unknown tenant 'nope'"),
        ("version = 1\n[tenants.a]\nextends = 'b'\n[tenants.b]\nextends = 'a'\n", "cycle"),
        ("version = 1\n[tenants.default]\nmin_confidence = 0\n", "min_confidence"),
        ("version = 1\n[tenants.default]\ncolour = 'red'\n", "colour"),
        ("version = 1\n[[tenants.default.intents]]\nname = 'Bad Name'\npatterns.fr = ['x']\n", "name"),
        ("version = 1\n[[tenants.default.intents]]\nname = 'x'\npatterns.fr = []\n", "at least one pattern"),
        ("version = 1\n[[tenants.default.intents]]\nname = 'x'\npatterns.french = ['a']\n", "ISO 639-1"),
        ("version = 1\n[[tenants.default.intents]]\nname = 'x'\npatterns.fr = ['re:(']\n", "invalid regex"),
        ("version = 1\n[[tenants.default.intents]]\nname = 'x'\npatterns.fr = ['.. a']\n", "start and end"),
        ("version = 1\n[[tenants.default.intents]]\nname = 'x'\nsentiment_bias = 3\npatterns.fr = ['a']\n",
         "sentiment_bias"),
        ("version = 1\n[[tenants.default.intents]]\nname = 'x'\npatterns.fr = ['a']\n"
         "[[tenants.default.intents]]\nname = 'x'\npatterns.fr = ['b']\n", "duplicate intent names: x"),
        ("version = 1\n[tenants.default\n", "cannot read"),
    ],
)
def test_invalid_configs_are_rejected_clearly(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(IntentConfigError, match=message) as info:
        load_intent_config(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(IntentConfigError, match="cannot read"):
        load_intent_config(tmp_path / "absent.toml")


def test_shipped_default_config_has_the_required_intents():
    names = {i.name for i in load_intent_config()["default"].intents}
    assert names >= {
        "refund", "order_status", "cancellation", "complaint", "billing", "delivery_problem",
        "account_access", "product_question", "greeting", "human_request", "thanks",
    }
