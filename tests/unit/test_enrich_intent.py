"""Per-tenant intent patterns and config validation (streams.enrich.intent)."""

import json
import math
import random
import textwrap
from pathlib import Path

import pytest

from parley.app.synthetic.events import TEXTS
from streams.enrich.intent import (
    IntentClassifier,
    IntentConfig,
    IntentConfigError,
    PatternSpec,
    compile_pattern,
    load_intent_config,
)
from streams.enrich.language import fold
from streams.enrich.patterns import PatternIndex

LABELLED = Path(__file__).parents[1] / "data" / "labelled_messages.jsonl"


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


# --- the pattern index gives what trying every pattern one by one gives -------------------


def reference_classifier(config: IntentConfig):
    """The classifier as first written: every pattern of every intent tried on the text."""
    intents = []
    for spec in config.intents:
        weights: dict[str, float] = {}
        for patterns in spec.patterns.values():
            for p in patterns:
                weights.setdefault(*((p.p, p.w) if isinstance(p, PatternSpec) else (p, 1.0)))
        intents.append((spec.name, [compile_pattern(p, w) for p, w in weights.items()]))

    def classify(text: str) -> list[tuple[str, float]]:
        folded, scored = fold(text), []
        for order, (name, patterns) in enumerate(intents):
            score = sum(p.weight for p in patterns if p.matches(folded))
            confidence = round(1.0 - math.exp(-score / config.saturation), 4) if score > 0 else 0.0
            if confidence >= config.min_confidence:
                scored.append((-confidence, order, name))
        return [(name, -neg) for neg, _, name in sorted(scored)[: config.max_intents]]

    return classify


def pattern_words(config: IntentConfig) -> list[str]:
    words = {w.strip("*") for spec in config.intents for patterns in spec.patterns.values()
             for p in patterns for w in (p.p if isinstance(p, PatternSpec) else p).split()}
    return sorted(words - {"..", ""})


def generated_texts(config: IntentConfig, n: int, seed: int = 11) -> list[str]:
    """Texts made of the config's own words, some stems extended, with filler and punctuation."""
    rnd = random.Random(seed)
    words = pattern_words(config) + ["le", "the", "a", "xyz", "d'un", "ÉTÉ"]
    endings = ["", "", "", "s", "ment", "ed", "!", ",", "'", "é"]
    return [" ".join(rnd.choice(words) + rnd.choice(endings) for _ in range(rnd.randint(1, 14)))
            for _ in range(n)]


def as_pairs(intents) -> list[tuple[str, float]]:
    return [(i.name, i.confidence) for i in intents]


TRICKY = r"""
    version = 1
    [tenants.default]
    min_confidence = 0.1
    max_intents = 5
    saturation = 2.0
    [[tenants.default.intents]]
    name = "stems"
    patterns.fr = ["prelev*", "preleve*", {p = "prel*", w = 0.3}, "l'arriv*", "c'est .. pas*"]
    patterns.en = ['re:\bn[o°]? ?\d{5}\b', {p = 're:(?<= )ab+c', w = 0.7}, "a .. a", "x-ray"]
    [[tenants.default.intents]]
    name = "negatives"
    patterns.any = ["merci", {p = "merci de", w = -0.8}, {p = "merci .. merci", w = 0.4}, "d un"]
    [[tenants.default.intents]]
    name = "same_words"
    patterns.any = ["preleve", "a", "un", {p = "merci", w = 0.2}, "pas de .. pas"]
"""


@pytest.fixture(scope="module")
def labelled_texts() -> list[str]:
    lines = LABELLED.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def test_index_matches_reference_on_labelled_and_traffic_texts(default, labelled_texts):
    reference = reference_classifier(load_intent_config()["default"])
    for text in labelled_texts + [t.format(ref="123456") for t in TEXTS]:
        assert as_pairs(default.classify(text)) == reference(text), text


def test_index_matches_reference_on_generated_texts(default):
    config = load_intent_config()["default"]
    reference, texts = reference_classifier(config), generated_texts(config, 3000)
    assert sum(bool(reference(t)) for t in texts) > 2000  # mostly non-empty
    for text in texts:
        assert as_pairs(default.classify(text)) == reference(text), text


def test_index_matches_reference_on_tricky_patterns(tmp_path):
    config = load_intent_config(write(tmp_path, TRICKY))["default"]
    classifier, reference = IntentClassifier(config), reference_classifier(config)
    texts = generated_texts(config, 3000, seed=12) + [
        "commande n°12345", "abbbc", "prelevement preleve prel", "l'arrivée", "c'est vraiment pas",
        "merci de merci", "a b c d a", "pas de souci pas", "x ray", "XRAY", "",
    ]
    for text in texts:
        assert as_pairs(classifier.classify(text)) == reference(text), text


def test_index_reports_each_matching_pattern_in_order():
    patterns = [compile_pattern(p) for p in ("rembours*", "mot de passe", "quand .. arriv*", "re:\\d{5}")]
    index = PatternIndex([patterns[:2], patterns[2:]])
    folded = fold("Quand va arriver le remboursement ? mot de passe 12345")
    assert index.matches(folded) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert index.matches(fold("mot de la passe")) == []
