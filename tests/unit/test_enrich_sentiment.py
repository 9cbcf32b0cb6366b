"""Lexicon sentiment, French rules and English VADER (streams.enrich.sentiment, streams.enrich.vader)."""

import json
import random
import tomllib
from pathlib import Path

import pytest
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE

from streams.enrich.language import fold
from streams.enrich.sentiment import DEFAULT_LEXICON, SentimentAnalyzer, label_for
from streams.enrich.vader import VaderCompound

LABELLED = Path(__file__).parents[1] / "data" / "labelled_messages.jsonl"


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


# --- the fast paths give exactly what the plain algorithms give -----------------------------


@pytest.fixture(scope="module")
def labelled_texts() -> list[str]:
    lines = LABELLED.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


# Every word VADER gives a rule to: negations, boosters, "no", "least", "kind of", idioms, "but".
VADER_RULE_WORDS = sorted(BOOSTER_DICT) + NEGATE + [
    "no", "nor", "or", "least", "at", "very", "kind", "of", "sort", "but", "never", "so", "this",
    "without", "doubt", "the", "shit", "bomb", "bad", "ass", "yeah", "right", "kiss", "death", "to",
    "die", "for", "just", "enough", "beating", "heart", "bus", "stop",
]


def vader_texts(analyzer: SentimentAnalyzer, n: int, seed: int = 4) -> list[str]:
    """Texts of lexicon and rule words, some in capitals, with punctuation and emoji."""
    rnd = random.Random(seed)
    vader = analyzer._vader
    vocab = rnd.sample(sorted(vader.lexicon), 300) + VADER_RULE_WORDS * 3 + ["order", "xyz"]
    emoji = sorted(vader.emojis)[:100] + ["😡", "👍"]

    def word() -> str:
        w = rnd.choice(vocab)
        w = w.upper() if rnd.random() < 0.15 else w
        w += rnd.choice(["", "", "", "", "!", "?", "...", "!!", "??"])
        return rnd.choice(emoji) + w if rnd.random() < 0.05 else w

    return [" ".join(word() for _ in range(rnd.randint(0, 16))) for _ in range(n)]


def test_vader_compound_equals_polarity_scores(analyzer, labelled_texts):
    vader = analyzer._vader
    compound = VaderCompound(vader)
    texts = labelled_texts + vader_texts(analyzer, 6000)
    assert sum(vader.polarity_scores(t)["compound"] != 0 for t in texts) > 4000
    for text in texts:
        assert compound.compound(text) == vader.polarity_scores(text)["compound"], text


def lexicon_texts(n: int, seed: int = 6) -> list[str]:
    """Texts of the lexicon's own words and phrases, stems extended, with negations and emoji."""
    lexicon = tomllib.loads(DEFAULT_LEXICON.read_text(encoding="utf-8"))
    vocab = [w.rstrip("*") for lang in ("fr", "en") for kind in ("words", "phrases", "boosters")
             for w in lexicon[lang].get(kind, {})]
    vocab += list(lexicon["emoji"]) + ["ne", "pas", "n'", "jamais", "mais", "aussi", "très", "but", "not"]
    rnd = random.Random(seed)
    endings = ["", "", "", "s", "ment", "!", "?", ",", "'"]
    return [" ".join(rnd.choice(vocab) + rnd.choice(endings) for _ in range(rnd.randint(0, 14)))
            for _ in range(n)]


def test_phrase_shortcuts_equal_the_phrase_regex(analyzer, labelled_texts):
    fr, en = analyzer._fr_phrases, analyzer._en_phrases
    for text in labelled_texts + lexicon_texts(4000):
        folded = fold(text)
        assert fr.replace_words(folded.split()) == fr._regex.sub(lambda m: m.lastgroup, folded).split()
        assert en.replace(text) == en._regex.sub(lambda m: m.lastgroup, text)


def test_stem_lookup_takes_the_longest_stem(analyzer):
    valences = analyzer._fr
    for word in ["remboursement", "decu", "decue", "xyz", "a", ""] + [s + "ab" for s in valences.stems]:
        stems = [s for s in valences.stems if word.startswith(s)]
        expected = valences.words.get(word, valences.stems[max(stems, key=len)] if stems else 0.0)
        assert valences.get(word) == expected, word


def test_passing_the_folded_text_changes_nothing(analyzer, labelled_texts):
    for text in labelled_texts:
        assert analyzer.analyse(text, "fr", fold(text)) == analyzer.analyse(text, "fr")


@pytest.mark.parametrize(
    "text",
    [
        "still waiting", "STILL Waiting!!", "ſtill waiting",  # ſ matches s case-insensitively
        "still waiting, never arrived and not working", "stillwaiting", "still_waiting", "still-waiting",
        "I still haven't received it", "I still havent received it", "never got it, fed up, rip off",
        "Still waiting… café", "Kind regards", "kind regards", "no one answers", "nobody answers",
    ],
)
def test_english_phrases_skip_or_narrow_the_regex_only_when_equal(analyzer, text):
    phrases = analyzer._en_phrases
    assert phrases.replace(text) == phrases._regex.sub(lambda m: m.lastgroup, text)
