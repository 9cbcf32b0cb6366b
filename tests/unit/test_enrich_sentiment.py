"""Lexicon sentiment, French rules and English VADER (streams.enrich.sentiment)."""

import pytest

from streams.enrich.sentiment import SentimentAnalyzer, label_for


@pytest.fixture(scope="module")
def analyzer() -> SentimentAnalyzer:
    return SentimentAnalyzer()


def score(analyzer, text, lang="fr"):
    return analyzer.analyse(text, lang).score


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Je suis très content du service", "positive"),
        ("Je ne suis pas content", "negative"),            # ne ... pas
        ("je suis pas content", "negative"),               # colloquial, no "ne"
        ("j'aime pas du tout", "negative"),                # negation after the verb
        ("Je n'ai jamais été aussi déçu", "negative"),
        ("Ce n'est pas mauvais", "positive"),              # negated negative
        ("Aucun problème, merci !", "positive"),
        ("Ça ne fonctionne pas", "negative"),
        ("C'est pas normal", "negative"),
        ("Marqué livré mais je n'ai rien reçu", "negative"),  # phrase holds its negation
        ("Ce n'est toujours pas réglé", "negative"),
        ("Service nul, je déconseille 😡", "negative"),
        ("Merci beaucoup, au top 👍", "positive"),
        ("Bonjour, où en est ma commande ?", "neutral"),
        ("Je souhaite annuler mon abonnement.", "neutral"),
        ("LIVRAISON EN RETARD, INADMISSIBLE", "negative"),  # capitals fold like the rest
    ],
)
def test_french_labels(analyzer, text, label):
    assert analyzer.analyse(text, "fr").label == label


@pytest.mark.parametrize(
    ("plain", "stronger"),
    [
        ("je suis déçu", "je suis très déçu"),
        ("je suis content", "je suis vraiment content"),
        ("c'est nul", "c'est nul !!!"),
    ],
)
def test_french_intensifiers_and_exclamations_strengthen(analyzer, plain, stronger):
    assert abs(score(analyzer, stronger)) > abs(score(analyzer, plain))


def test_french_dampener_weakens(analyzer):
    assert abs(score(analyzer, "je suis un peu déçu")) < abs(score(analyzer, "je suis déçu"))


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Le produit est bien mais la livraison était catastrophique", "negative"),
        ("La livraison a été longue mais le produit est magnifique", "positive"),
    ],
)
def test_french_mais_weights_the_second_clause(analyzer, text, label):
    assert analyzer.analyse(text, "fr").label == label


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Thank you so much, great service!", "positive"),
        ("This is the worst experience ever 😡", "negative"),
        ("I'm not happy with the quality", "negative"),
        ("still waiting on my refund", "negative"),       # domain phrase
        ("It says delivered but I never got it", "negative"),
        ("Please cancel my order", "neutral"),            # politeness is not sentiment
        ("Good morning, I have a question about store credit", "neutral"),
        ("The product is fine but the manual is useless", "negative"),
    ],
)
def test_english_labels(analyzer, text, label):
    assert analyzer.analyse(text, "en").label == label


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_text_is_neutral(analyzer, text):
    result = analyzer.analyse(text, "fr")
    assert (result.score, result.label) == (0.0, "neutral")


def test_other_languages_still_read_emoji(analyzer):
    assert analyzer.analyse("pedido 😡😡", "es").label == "negative"


@pytest.mark.parametrize(
    ("value", "label"),
    [(-1.0, "negative"), (-0.2, "negative"), (-0.19, "neutral"), (0.0, "neutral"),
     (0.19, "neutral"), (0.2, "positive"), (1.0, "positive")],
)
def test_label_thresholds(value, label):
    assert label_for(value) == label


def test_scores_stay_in_range(analyzer):
    text = "nul nul nul inadmissible scandaleux 😡😡😡 !!!!!!"
    assert -1.0 <= score(analyzer, text) <= -0.9
