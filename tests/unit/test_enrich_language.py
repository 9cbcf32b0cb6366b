"""Language detection and text folding (streams.enrich.language)."""

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
