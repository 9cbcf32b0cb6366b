"""Lexicon sentiment for customer messages, French and English, fully offline.

* English (and any language other than French, where VADER still reads emoji,
  punctuation, capitals and English loan words): VADER, with customer-service
  words, phrases and emoji valences from ``data/sentiment_lexicon.toml`` added.
* French: a VADER-like scorer over a French lexicon from the same file, with
  negation (``ne ... pas``, ``jamais``, ``aucun``, colloquial ``j'aime pas``),
  intensifiers and dampeners (``très``, ``un peu``), contrast (``mais``: the
  clause after it counts 1.5x, the one before 0.5x) and exclamation marks.

Scores are in -1..1 (VADER's ``x / sqrt(x² + 15)`` normalisation) and labelled
with a symmetric neutral band. Pure and deterministic; no per-text cache.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from streams.enrich.language import fold
from streams.enrich.vader import VaderCompound

DEFAULT_LEXICON = Path(__file__).parent / "data" / "sentiment_lexicon.toml"
DEFAULT_NEUTRAL_BAND = 0.2

# VADER's constants, reused so both languages share one scale.
NEGATION_SCALAR = -0.74
EXCLAMATION_BOOST = 0.292
MAX_EXCLAMATIONS = 4
NORMALISATION_ALPHA = 15.0
BUT_BEFORE, BUT_AFTER = 0.5, 1.5

NEGATION_WINDOW = 4
PRE_NEGATORS = frozenset({"pas", "jamais", "aucun", "aucune", "rien", "sans", "ni", "ne", "n"})
POST_NEGATORS = frozenset({"pas", "plus", "jamais"})
# "jamais été aussi déçu" = never so disappointed: comparison, not negation.
COMPARATIVES = frozenset({"aussi", "autant", "si"})
CONTRASTS = frozenset({"mais", "cependant", "pourtant", "neanmoins", "toutefois"})


@dataclass(frozen=True)
class Sentiment:
    """A score in -1..1 and its label: negative, neutral or positive."""

    score: float
    label: str


def label_for(score: float, neutral_band: float = DEFAULT_NEUTRAL_BAND) -> str:
    """Label ``score``: within ±``neutral_band`` is neutral."""
    if score >= neutral_band:
        return "positive"
    if score <= -neutral_band:
        return "negative"
    return "neutral"


class _Valences:
    """Exact words plus ``stem*`` prefixes, looked up longest stem first."""

    def __init__(self, table: dict[str, float]) -> None:
        self.words = {k: float(v) for k, v in table.items() if not k.endswith("*")}
        self.stems = {k[:-1]: float(v) for k, v in table.items() if k.endswith("*")}
        # Stems by their first _key letters, longest first: one dict lookup finds
        # the only stems a token can start with.
        self._key = min(map(len, self.stems), default=0)
        self._by_key: dict[str, list[tuple[str, float]]] = {}
        for stem, value in sorted(self.stems.items(), key=lambda kv: -len(kv[0])):
            self._by_key.setdefault(stem[: self._key], []).append((stem, value))

    def get(self, token: str) -> float:
        value = self.words.get(token)
        if value is not None:
            return value
        for stem, value in self._by_key.get(token[: self._key], ()):
            if token.startswith(stem):
                return value
        return 0.0


def _phrase_body(phrase: str) -> str:
    """Regex body of a lexicon phrase: ``*`` ends a stem, ``'`` is optional."""
    words = []
    for word in phrase.split():
        body = re.escape(word.rstrip("*")).replace("'", "['’]?")
        words.append(body + (r"\w*" if word.endswith("*") else ""))
    return r"\s+".join(words)


class _Phrases:
    """All phrases of a language in one regex; each match becomes a placeholder token.

    Longest phrases come first so "pas a la hauteur" wins over "a la hauteur".
    Folded (French) text is matched between spaces, raw (English) text
    case-insensitively between word boundaries.

    Two shortcuts give the regex's own result without running it: on folded
    words, :meth:`replace_words` tries, at each word, the phrases starting with
    it in the regex's order (leftmost, first alternative wins, as ``re.sub``);
    on raw text, a phrase can only match if all its plain words (``still``,
    ``waiting``) are among the text's words (between ``\\b`` or ``\\s``, a
    plain word of a match is one whole ``\\w+`` word), so :meth:`replace`
    skips the regex when no phrase can, and uses the one phrase's own regex
    when only one can: the other alternatives would fail everywhere.
    """

    def __init__(self, phrases: dict[str, float], lang: str, folded: bool) -> None:
        ordered = sorted(phrases.items(), key=lambda kv: (-len(kv[0].split()), kv[0]))
        self.valences = {f"zzphr{lang}{i}": float(v) for i, (_, v) in enumerate(ordered)}
        # "rien recu", "ne fonctionne pas": the phrase carries its own negation,
        # so the "n'" before it must not flip it again.
        self.self_negated = frozenset(
            f"zzphr{lang}{i}" for i, (p, _) in enumerate(ordered)
            if set(p.split()) & (PRE_NEGATORS | POST_NEGATORS)
        )
        groups = "|".join(f"(?P<zzphr{lang}{i}>{_phrase_body(p)})" for i, (p, _) in enumerate(ordered))
        pattern = f"(?<= )(?:{groups})(?= )" if folded else rf"(?i)\b(?:{groups})\b"
        self._regex = re.compile(pattern) if ordered else None
        self._plain_words = None if folded else _plain_words([p for p, _ in ordered])
        self._alone = [] if folded else [re.compile(rf"(?i)\b(?:(?P<zzphr{lang}{i}>{_phrase_body(p)}))\b")
                                         for i, (p, _) in enumerate(ordered)]
        self._by_first = _by_first_word([(f"zzphr{lang}{i}", p) for i, (p, _) in enumerate(ordered)])

    def replace(self, text: str) -> str:
        regex = self._regex
        if regex is not None and self._plain_words is not None and not _CASE_FOLDS_TO_ASCII.search(text):
            possible = self._possible(text)
            if not possible:
                return text
            if len(possible) == 1:
                regex = self._alone[possible[0]]
        return text if regex is None else regex.sub(lambda m: m.lastgroup or m.group(), text)

    def _possible(self, text: str) -> list[int]:
        """The phrases (by index) whose plain words are all words of ``text``."""
        if text.isascii():  # lower() changes no word boundary
            words = set(_WORD.findall(text.lower()))
        else:
            words = {w.lower() for w in _WORD.findall(text)}
        plain = self._plain_words or {}
        return [i for word in words & plain.keys() for i, others in plain[word] if words.issuperset(others)]

    def replace_words(self, words: list[str]) -> list[str]:
        """:meth:`replace` on folded text, given and returned as its words."""
        by_first = self._by_first
        if by_first is None:
            return self.replace(" " + " ".join(words) + " ").split()
        out: list[str] = []
        done = 0  # words before this one are in out (as themselves or in a phrase token)
        for k in [k for k, word in enumerate(words) if word in by_first]:
            if k < done:
                continue
            for token, parts in by_first[words[k]]:
                if _fits(parts, words, k):
                    out += words[done:k]
                    out.append(token)
                    done = k + len(parts)
                    break
        return out + words[done:] if out else words


# Under re.IGNORECASE these match an ASCII letter: a text with one goes to the regex.
_CASE_FOLDS_TO_ASCII = re.compile("[\u0130\u0131\u017f\u212a]")
_WORD = re.compile(r"\w+")


def _plain_words(phrases: list[str]) -> dict[str, list[tuple[int, frozenset[str]]]] | None:
    """Phrases (by index) under their longest plain (lower-case a-z0-9) word, with their
    other plain words; None if a phrase has no plain word (it could match anywhere)."""
    by_word: dict[str, list[tuple[int, frozenset[str]]]] = {}
    for i, phrase in enumerate(phrases):
        plain = [w for w in phrase.split() if re.fullmatch("[a-z0-9]+", w)]
        if not plain:
            return None
        key = max(plain, key=len)
        by_word.setdefault(key, []).append((i, frozenset(plain) - {key}))
    return by_word


# A phrase as its words: (folded word, True if a stem).
_Parts = tuple[tuple[str, bool], ...]


def _by_first_word(phrases: list[tuple[str, str]]) -> dict[str, list[tuple[str, _Parts]]] | None:
    """Phrases (in order) by their first word; None if one is not plain folded words."""
    by_first: dict[str, list[tuple[str, _Parts]]] = {}
    for token, phrase in phrases:
        parts = tuple((w.rstrip("*"), w.endswith("*")) for w in phrase.split())
        if parts[0][1] or not all(re.fullmatch("[a-z0-9]+", w) for w, _ in parts):
            return None
        by_first.setdefault(parts[0][0], []).append((token, parts))
    return by_first


def _fits(parts: _Parts, words: list[str], k: int) -> bool:
    if k + len(parts) > len(words):
        return False
    for (body, stem), word in zip(parts, words[k:], strict=False):  # the words from k on, as many as parts
        if not (word.startswith(body) if stem else word == body):
            return False
    return True


class SentimentAnalyzer:
    """French and English sentiment from one lexicon file; build once, reuse."""

    def __init__(self, lexicon_path: Path = DEFAULT_LEXICON,
                 neutral_band: float = DEFAULT_NEUTRAL_BAND) -> None:
        data = tomllib.loads(Path(lexicon_path).read_text(encoding="utf-8"))
        self.neutral_band = neutral_band
        self._emoji = sorted(data.get("emoji", {}).items(), key=lambda kv: -len(kv[0]))
        fr, en = data.get("fr", {}), data.get("en", {})
        self._fr_phrases = _Phrases(fr.get("phrases", {}), "f", folded=True)
        self._en_phrases = _Phrases(en.get("phrases", {}), "e", folded=False)
        self._emoji_tokens = {e: f"zzemo{i}" for i, (e, _) in enumerate(self._emoji)}
        emoji_vals = {self._emoji_tokens[e]: float(v) for e, v in self._emoji}
        self._fr = _Valences({**fr.get("words", {}), **self._fr_phrases.valences, **emoji_vals})
        self._boosters = {k: float(v) for k, v in fr.get("boosters", {}).items()}
        self._vader = SentimentIntensityAnalyzer()
        self._vader.lexicon.update({**en.get("words", {}), **self._en_phrases.valences, **emoji_vals})
        self._vader_compound = VaderCompound(self._vader)
        self._emoji_not_ascii = not any(e.isascii() for e, _ in self._emoji)

    def analyse(self, text: str | None, language: str | None, folded: str | None = None) -> Sentiment:
        """Score ``text``: the French scorer for ``"fr"``, VADER otherwise.

        ``folded`` may pass ``fold(text)`` when the caller has it already.
        """
        if not text or not text.strip():
            return Sentiment(0.0, "neutral")
        score = self._french(text, folded) if language == "fr" else self._english(text)
        return Sentiment(round(score, 4), label_for(score, self.neutral_band))

    def _with_emoji_tokens(self, text: str) -> str:
        if text.isascii() and self._emoji_not_ascii:
            return text
        for emoji, _ in self._emoji:
            if emoji in text:
                text = text.replace(emoji, f" {self._emoji_tokens[emoji]} ")
        return text

    def _english(self, text: str) -> float:
        text = self._with_emoji_tokens(text)
        text = self._en_phrases.replace(text)
        return self._vader_compound.compound(text)

    def _french(self, text: str, folded: str | None = None) -> float:
        with_tokens = self._with_emoji_tokens(text)
        if folded is None or with_tokens != text:
            folded = fold(with_tokens)
        tokens = self._fr_phrases.replace_words(folded.split())
        lexicon = self._fr.get
        values = [self._valence(tokens, i, value) if (value := lexicon(token)) else 0.0
                  for i, token in enumerate(tokens)]
        values = _apply_contrast(tokens, values)
        total = sum(values)
        if total:
            total += math.copysign(min(text.count("!"), MAX_EXCLAMATIONS) * EXCLAMATION_BOOST, total)
        return total / math.sqrt(total * total + NORMALISATION_ALPHA)

    def _valence(self, tokens: list[str], i: int, value: float) -> float:
        """The lexicon ``value`` of ``tokens[i]`` after boosters and negation."""
        for distance, decay in ((1, 1.0), (2, 0.95)):
            if i >= distance and tokens[i - distance] in self._boosters:
                # a booster > 0 pushes away from zero, a dampener (< 0) towards it
                value += self._boosters[tokens[i - distance]] * decay * (1 if value > 0 else -1)
        if tokens[i] in self._fr_phrases.self_negated or not _negated(tokens, i):
            return value
        return value * NEGATION_SCALAR


def _negated(tokens: list[str], i: int) -> bool:
    """``ne``/``pas``/``jamais``... shortly before, or a colloquial ``pas`` right after."""
    before = tokens[max(0, i - NEGATION_WINDOW):i]
    if any(t in PRE_NEGATORS for t in before):
        return not any(t in COMPARATIVES for t in before)
    return i + 1 < len(tokens) and tokens[i + 1] in POST_NEGATORS


def _apply_contrast(tokens: list[str], values: list[float]) -> list[float]:
    """After the last ``mais``, valences count more; before it, less."""
    pivots = [i for i, t in enumerate(tokens) if t in CONTRASTS]
    if not pivots:
        return values
    pivot = pivots[-1]
    return [v * (BUT_BEFORE if i < pivot else BUT_AFTER) for i, v in enumerate(values)]
