"""Language detection and text folding for the enrichment processors.

Pure and deterministic: the same text always gives the same answer.

* ``fold(text)``: lower-case, accent-free, punctuation-free text padded with one
  space on each side (``" je n ai pas recu "``), the form every matcher of this
  package works on, so patterns and lexicons are accent- and case-insensitive.
* ``LanguageDetector``: first a cheap pass over words that point to one
  language (``data/function_words.toml``: "the", "my", "vous", "commande"...),
  which decides clear English and French messages on its own; lingua,
  restricted to a configurable set of languages, for the others
  (high-accuracy mode: on short chat messages the low-accuracy mode is ~3x
  faster but clearly worse, see ``parley/app/bench/enrich_accuracy.py``), plus a small
  table of chat words (``bjr``, ``thx``, ``merci``...) that settles the
  short or unaccented messages lingua is unsure about. Lingua costs 50 to
  500 µs a message, the first pass a few µs; on the labelled messages it
  decides over 90 % of them and never differs from the labels.
* ``get_detector(languages)``: one shared detector per language set (building
  one takes about a second and a few hundred MB, so it is built once).
"""

from __future__ import annotations

import re
import string
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lingua import ConfidenceValue, IsoCode639_1, Language, LanguageDetectorBuilder

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "fr", "es", "de", "it", "pt", "nl")
FUNCTION_WORDS = Path(__file__).parent / "data" / "function_words.toml"

# The first pass decides a language with at least FIRST_PASS_MIN_WORDS of its
# words and none of another's (one is enough in a text of at most
# SHORT_TEXT_MAX_WORDS words: "merci", "hi 👋", as the chat markers below), or
# at least FIRST_PASS_MIN_MIXED and FIRST_PASS_MIXED_RATIO times those of all
# others ("email", a name). Its confidence: each word beyond the others' halves
# the doubt (2 -> 0.75, 4 -> 0.94), close to lingua's own figures on the same
# messages.
FIRST_PASS_MIN_WORDS = 2
FIRST_PASS_MIN_MIXED = 3
FIRST_PASS_MIXED_RATIO = 4

# Lingua is unreliable on short or unaccented chat messages; below this
# confidence the chat markers below may overrule it: always for texts of at
# most SHORT_TEXT_MAX_WORDS words, for longer ones only if lingua rates the
# marker language at least CLOSE_RATIO times its own best.
SHORT_TEXT_MAX_WORDS = 4
UNSURE_CONFIDENCE = 0.5
CLOSE_RATIO = 0.5
MARKER_CONFIDENCE = 0.5

# Chat and function words that point to one language ("bjr", "thx", "merci").
# Words shared by several languages ("ok", "hallo", "ma", "is", "de") are left out.
CHAT_MARKERS: dict[str, frozenset[str]] = {
    "fr": frozenset(
        "bonjour bjr bonsoir slt salut coucou merci mrc svp stp bcp oui accord allo "
        "cordialement rebonjour vous je jai suis pas tjr toujours mon mes est rien recu "
        "commande colis pourquoi".split()
    ),
    "en": frozenset(
        "hi hey hello thanks thank thx ty pls plz please yes yep cheers my the you "
        "not where why order received".split()
    ),
    "es": frozenset("hola gracias buenos buenas vale favor pedido quiero".split()),
    "de": frozenset("danke bitte guten tschuss moin ich nicht bestellung".split()),
    "it": frozenset("ciao grazie buongiorno buonasera prego sono ordine".split()),
    "pt": frozenset("ola obrigado obrigada bom tudo nao encomenda".split()),
    "nl": frozenset("dank bedankt goedemorgen hoi alsjeblieft niet bestelling".split()),
}

# Letters NFKD does not decompose into a base letter plus accents.
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ı": "i"})
_LIGATURE = re.compile("[œæøłđı]")
# NFKD splits accents off Latin letters as U+0300..U+036F marks; a folded text
# with no other non-ASCII character only needs those marks dropped.
_ACCENTS = "".join(c for c in map(chr, range(0x300, 0x370)) if unicodedata.combining(c))
_NOT_ASCII_OR_ACCENT = re.compile(f"[^\\x00-\\x7f{_ACCENTS}]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# ASCII bytes -> themselves for a-z and 0-9, a space for everything else.
_WORD_BYTES = bytes(c if chr(c) in string.ascii_lowercase + string.digits else 0x20 for c in range(256))
_LETTER = re.compile(r"[^\W\d_]")


def fold(text: str) -> str:
    """Return ``text`` lower-cased, without accents or punctuation, space-padded.

    That is: casefold, ligatures spelt out, NFKD without its combining marks,
    then every run of characters other than ``a-z0-9`` as one space. The fast
    paths below give exactly that (a unit test checks them letter by letter).
    """
    if text.isascii():  # casefold, ligatures and NFKD change nothing but the case
        return _words(text.lower().encode("ascii"))
    text = text.casefold()
    if _LIGATURE.search(text):
        text = text.translate(_LIGATURES)
    text = unicodedata.normalize("NFKD", text)
    if _NOT_ASCII_OR_ACCENT.search(text):  # emoji, other scripts, rarer marks
        text = _NON_ASCII.sub(_drop_mark, text)
    return _words(text.encode("ascii", "ignore"))  # what is left to drop: accents


def _words(ascii_text: bytes) -> str:
    """`` a-z0-9 words ``: other bytes of ``ascii_text`` separate words."""
    return " " + b" ".join(ascii_text.translate(_WORD_BYTES).split()).decode("ascii") + " "


def _drop_mark(match: re.Match[str]) -> str:
    return "" if unicodedata.combining(match.group()) else " "


@dataclass(frozen=True)
class DetectedLanguage:
    """An ISO 639-1 code (or None when undetectable) and a confidence in 0..1."""

    code: str | None
    confidence: float


UNDETECTED = DetectedLanguage(None, 0.0)


class FunctionWords:
    """The detector's first pass: words that point to one language, counted on folded text."""

    def __init__(self, languages: tuple[str, ...], path: Path = FUNCTION_WORDS) -> None:
        table = tomllib.loads(path.read_text(encoding="utf-8"))["languages"]
        words = {lang: set(spec["words"].split()) for lang, spec in table.items()}
        listed = Counter(w for ws in words.values() for w in ws)
        self._language_of = {w: lang for lang, ws in words.items() for w in ws if listed[w] == 1}
        # Per language it may decide: a non-ASCII letter it does not use.
        self._foreign = {
            lang: re.compile(f"[^\\x00-\\x7f{re.escape(spec['letters'] + spec['letters'].upper())}]")
            for lang, spec in table.items() if spec.get("settle") and lang in languages
        }

    def decide(self, text: str, words: list[str]) -> DetectedLanguage | None:
        """The language ``words`` (of folded ``text``) clearly point to, or None."""
        counts: dict[str, int] = {}
        for word in words:
            lang = self._language_of.get(word)
            if lang is not None:
                counts[lang] = counts.get(lang, 0) + 1
        if not counts:
            return None
        lang = max(counts, key=counts.__getitem__)
        own, others = counts[lang], sum(counts.values()) - counts[lang]
        if lang not in self._foreign or own < self._min_words(len(words), others):
            return None
        if own < FIRST_PASS_MIXED_RATIO * others or self._has_foreign_letter(lang, text):
            return None
        return DetectedLanguage(lang, 1.0 - 0.5 ** (own - others))

    @staticmethod
    def _min_words(length: int, others: int) -> int:
        if others:
            return FIRST_PASS_MIN_MIXED
        return 1 if length <= SHORT_TEXT_MAX_WORDS else FIRST_PASS_MIN_WORDS

    def _has_foreign_letter(self, lang: str, text: str) -> bool:
        if text.isascii() or not self._foreign[lang].search(text):  # none, or emoji and the like
            return False
        return any(m.group().isalpha() for m in self._foreign[lang].finditer(text))


class LanguageDetector:
    """The function-word first pass, then lingua restricted to ``languages`` (ISO 639-1
    codes) with the chat markers for what lingua is unsure about."""

    def __init__(self, languages: tuple[str, ...] = DEFAULT_LANGUAGES) -> None:
        if len(languages) < 2:
            raise ValueError("a language detector needs at least two languages")
        codes = [_iso(code) for code in languages]
        self.languages = tuple(languages)
        self._lingua = (
            LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
            .with_preloaded_language_models()
            .build()
        )
        self._codes = {Language.from_iso_code_639_1(iso): code for iso, code in zip(codes, languages, strict=True)}
        self._markers = {k: v for k, v in CHAT_MARKERS.items() if k in languages}
        self._first_pass = FunctionWords(self.languages)

    def detect(self, text: str | None, folded: str | None = None) -> DetectedLanguage:
        """Detect the language of ``text``; ``UNDETECTED`` if it has no letters.

        ``folded`` may pass ``fold(text)`` when the caller has it already.
        """
        if not text or not _LETTER.search(text):
            return UNDETECTED
        words = (fold(text) if folded is None else folded).split()
        return self._first_pass.decide(text, words) or self.detect_with_lingua(text, words)

    def detect_many(self, texts: Sequence[str | None], folded: Sequence[str]) -> list[DetectedLanguage]:
        """:meth:`detect` of each text (``folded``: their :func:`fold`), same answers.

        The texts the first pass leaves to lingua go to it in one call that
        spreads them over all cores (holding the GIL meanwhile).
        """
        found: list[DetectedLanguage | None] = []
        unsure: list[tuple[int, str, list[str]]] = []  # (position, text, folded words)
        for text, text_folded in zip(texts, folded, strict=True):
            if not text or not _LETTER.search(text):
                found.append(UNDETECTED)
                continue
            words = text_folded.split()
            found.append(self._first_pass.decide(text, words))
            if found[-1] is None:
                unsure.append((len(found) - 1, text, words))
        values = self._lingua.compute_language_confidence_values_in_parallel([t for _, t, _ in unsure])
        for (position, _, words), confidences in zip(unsure, values, strict=True):
            found[position] = self._from_lingua(confidences, words)
        return found  # type: ignore[return-value]  # no None left

    def detect_with_lingua(self, text: str, words: list[str]) -> DetectedLanguage:
        """Lingua's answer for a text with letters, or the chat markers' when lingua is unsure."""
        return self._from_lingua(self._lingua.compute_language_confidence_values(text), words)

    def _from_lingua(self, confidences: list[ConfidenceValue], words: list[str]) -> DetectedLanguage:
        values = {self._codes[v.language]: v.value for v in confidences}
        if not values:
            return UNDETECTED
        best = max(values, key=values.__getitem__)  # ties: lingua's order
        if values[best] >= UNSURE_CONFIDENCE:
            return DetectedLanguage(best, values[best])
        return self._from_markers(words, values) or DetectedLanguage(best, values[best])

    def _from_markers(self, words: list[str], values: dict[str, float]) -> DetectedLanguage | None:
        hits = {lang: sum(w in markers for w in words) for lang, markers in self._markers.items()}
        top = max(hits.values(), default=0)
        winners = [lang for lang, n in hits.items() if n == top]
        if top == 0 or len(winners) != 1:
            return None
        lang = winners[0]
        close = values.get(lang, 0.0) >= CLOSE_RATIO * max(values.values())
        if len(words) <= SHORT_TEXT_MAX_WORDS or close:
            return DetectedLanguage(lang, max(MARKER_CONFIDENCE, values.get(lang, 0.0)))
        return None


def _iso(code: str) -> IsoCode639_1:
    try:
        return getattr(IsoCode639_1, code.upper())
    except AttributeError:
        raise ValueError(f"unknown ISO 639-1 language code: {code!r}") from None


@lru_cache(maxsize=8)
def get_detector(languages: tuple[str, ...] = DEFAULT_LANGUAGES) -> LanguageDetector:
    """Return the shared detector for ``languages`` (bounded cache of 8 sets)."""
    return LanguageDetector(tuple(languages))
