"""Language detection and text folding (streams.enrich.language)."""

import json
import random
import re
import unicodedata
from pathlib import Path

import pytest

from streams.enrich.language import DEFAULT_LANGUAGES, FunctionWords, LanguageDetector, fold, get_detector

LABELLED = Path(__file__).parents[1] / "data" / "labelled_messages.jsonl"


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
    anything = ["".join(chr(rnd.randint(0, 0x2FFFF)) for _ in range(rnd.randint(0, 12))) for _ in range(n)]
    return texts + anything


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


# --- first pass: words that point to one language --------------------------------------------

OTHER_LANGUAGES = {
    "es": [
        'Hola, quiero cancelar mi pedido, por favor.',
        '¿Dónde está mi paquete? Lo pedí hace una semana.',
        'No puedo entrar en mi cuenta desde ayer',
        'Gracias por la ayuda, todo bien',
        'Buenos días, tengo una pregunta sobre la factura',
        'mi pedido no ha llegado todavía',
    ],
    "de": [
        'Guten Tag, ich möchte meine Bestellung stornieren.',
        'Wo ist mein Paket? Ich warte seit einer Woche.',
        'Ich kann mich nicht in mein Konto einloggen',
        'Das Produkt ist kaputt angekommen, ich will mein Geld zurück',
        'Meine Bestellung ist immer noch nicht da',
        'Danke für die schnelle Hilfe',
    ],
    "it": [
        'Buongiorno, vorrei annullare il mio ordine.',
        "Dov'è il mio pacco? L'ho ordinato una settimana fa.",
        'Non riesco ad accedere al mio account da ieri',
        "Grazie per l'aiuto, tutto risolto",
        'il mio ordine non è ancora arrivato',
        'Ciao, ho una domanda sulla fattura',
    ],
    "pt": [
        'Olá, quero cancelar a minha encomenda.',
        'Onde está o meu pacote? Encomendei há uma semana.',
        'Não consigo entrar na minha conta desde ontem',
        'Obrigado pela ajuda, tudo certo',
        'a minha encomenda ainda não chegou',
        'Bom dia, tenho uma pergunta sobre a fatura',
    ],
    "nl": [
        'Hallo, ik wil mijn bestelling annuleren alstublieft.',
        'Waar is mijn pakket? Ik heb een week geleden besteld.',
        'Ik kan sinds gisteren niet inloggen op mijn account',
        'Het product kwam kapot aan en ik wil mijn geld terug',
        'mijn bestelling is nog steeds niet aangekomen',
        'Goedemorgen, ik heb een vraag over de factuur',
    ],
}


def first_pass(detector, text):
    return detector._first_pass.decide(text, fold(text).split())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Where is my order 123456? It should have arrived yesterday.", "en"),
        ("I want to talk to a human please", "en"),
        ("Thanks, that solved it!", "en"),
        ("Bonjour, ma commande 123456 n'est toujours pas arrivée, c'est inadmissible !", "fr"),
        ("Pouvez-vous m'aider avec ma facture 123456 ?", "fr"),
        ("Je voudrais annuler ma commande 123456", "fr"),
        ("Quelqu'un a modifié l'adresse email de mon compte", "fr"),  # "email": one English word among many
    ],
)
def test_first_pass_decides_clear_english_and_french(detector, text, expected):
    decided = first_pass(detector, text)
    assert decided is not None and decided.code == expected
    assert 0.5 < decided.confidence < 1.0
    assert detector.detect(text) == decided


@pytest.mark.parametrize(
    ("text", "expected"),
    [("merci", "fr"), ("bjr", "fr"), ("Salut !", "fr"), ("thx", "en"), ("Hello!", "en"), ("hi 👋", "en")],
)
def test_first_pass_decides_short_texts_on_one_word(detector, text, expected):
    decided = first_pass(detector, text)
    assert (decided.code, decided.confidence) == (expected, 0.5)


@pytest.mark.parametrize(
    "text",
    [
        "merci Julie, 4821 6000 xyz",                     # five words: one is not enough
        "ok gracias", "Vielen Dank", "Grazie mille", "Bom dia", "Hallo",  # short, other languages
        "Hello, je voudrais savoir where is my order",    # mixed
        "Where is my order? Gracias por la ayuda",        # Spanish words against
        "Thank you, the jalapeño sauce was great",        # a letter English does not use
        "Où est ma commande ? Danke schön",               # German words against
        "¿Dónde está mi paquete? My order is late",
    ],
)
def test_first_pass_leaves_mixed_or_doubtful_texts_to_lingua(detector, text):
    assert first_pass(detector, text) is None


@pytest.mark.parametrize(
    ("language", "text"), [(lang, t) for lang, texts in OTHER_LANGUAGES.items() for t in texts]
)
def test_first_pass_never_decides_other_languages(detector, language, text):
    assert first_pass(detector, text) is None
    assert detector.detect(text).code == language


def test_first_pass_agrees_with_every_labelled_message(detector):
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    decided = [(row, first_pass(detector, row["text"])) for row in rows]
    decided = [(row, d) for row, d in decided if d is not None]
    assert len(decided) > 0.8 * len(rows)
    assert [row["text"] for row, d in decided if d.code != row["language"]] == []


def test_first_pass_only_decides_the_detector_languages():
    detector = get_detector(("es", "de"))
    assert detector.detect("Where is my order? It should have arrived.").code in {"es", "de"}


def test_a_word_listed_for_two_languages_points_to_neither(tmp_path):
    path = tmp_path / "words.toml"
    path.write_text('version = 1\n[languages.en]\nsettle = true\nletters = ""\nwords = "the my is"\n'
                    '[languages.nl]\nwords = "is het"\n', encoding="utf-8")
    words = FunctionWords(("en", "nl"), path)
    assert words.decide("the my", ["the", "my"]).code == "en"
    long_words = ["x", "y", "z"]  # five words: one language word is not enough
    assert words.decide("the is x y z", ["the", "is", *long_words]) is None  # "is" is Dutch too
    assert words.decide("het is", ["het", "is"]) is None  # Dutch is not decided here
