"""Language detection and text folding (streams.enrich.language)."""

import random
import re
import unicodedata

import pytest

from streams.enrich.language import DEFAULT_LANGUAGES, LanguageDetector, fold, get_detector


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return get_detector(DEFAULT_LANGUAGES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Déçue... À BIENTÔT !", " decue a bientot "),
        ("J'ai reçu l'article", " j ai recu l article "),
        ("  Œuf   ÇA  ", " oeuf ca "),
        ("😡😡", "  "),
        ("", "  "),
    ],
)
def test_fold_lowers_strips_accents_and_punctuation(text, expected):
    assert fold(text) == expected


def reference_fold(text: str) -> str:
    """fold() as first written, letter by letter: the definition the fast paths must match."""
    ligatures = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ı": "i"})
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(ligatures))
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " " + re.sub(r"[^a-z0-9]+", " ", ascii_only).strip() + " "


def random_texts(n: int, seed: int = 3) -> list[str]:
    rnd = random.Random(seed)
    latin = "aàâäéèêëîïôöùûüçœæøłđıßñãõAÉÇŒ ,.'’-!?0123456789😡👍\u0301\u0327\u034fﬁ①²ℌΣİ\t\n"
    texts = ["".join(rnd.choice(latin) for _ in range(rnd.randint(0, 30))) for _ in range(n)]
    return texts + ["".join(chr(rnd.randint(0, 0x2FFFF)) for _ in range(rnd.randint(0, 12))) for _ in range(n)]


def test_fold_equals_its_letter_by_letter_definition():
    for text in random_texts(5000):
        assert fold(text) == reference_fold(text), repr(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bonjour, je n'ai toujours pas reçu ma commande.", "fr"),
        ("Hello, my parcel never arrived and I want a refund.", "en"),
        ("jai tjr pas recu mon colis", "fr"),
        ("where is my order??", "en"),
        ("Hola, quiero cancelar mi pedido, por favor.", "es"),
        ("Guten Tag, ich möchte meine Bestellung stornieren.", "de"),
        ("Buongiorno, vorrei annullare il mio ordine.", "it"),
        ("Olá, quero cancelar a minha encomenda.", "pt"),
        ("Hallo, ik wil mijn bestelling annuleren alstublieft.", "nl"),
        # very short chat messages: decided by the chat markers
        ("merci", "fr"),
        ("bjr", "fr"),
        ("thx", "en"),
        ("Hello!", "en"),
    ],
)
def test_detects_language(detector, text, expected):
    assert detector.detect(text).code == expected


@pytest.mark.parametrize("text", [None, "", "   ", "😡👍", "12345 !!", "#4821"])
def test_undetectable_text_has_no_language(detector, text):
    result = detector.detect(text)
    assert result.code is None
    assert result.confidence == 0.0


def test_confidence_is_a_probability(detector):
    result = detector.detect("Je voudrais annuler mon abonnement s'il vous plaît.")
    assert 0.5 < result.confidence <= 1.0


def test_detector_is_shared_per_language_set():
    assert get_detector(("en", "fr")) is get_detector(("en", "fr"))


def test_detector_only_answers_its_languages():
    assert get_detector(("en", "fr")).detect("Hola, quiero cancelar mi pedido").code in {"en", "fr"}


@pytest.mark.parametrize("languages", [("en",), ("en", "xx")])
def test_rejects_bad_language_sets(languages):
    with pytest.raises(ValueError):
        LanguageDetector(languages)
