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
        self._lengths = sorted({len(s) for s in self.stems}, reverse=True)

    def get(self, token: str) -> float:
        if token in self.words:
            return self.words[token]
        for n in self._lengths:
            if len(token) >= n and token[:n] in self.stems:
                return self.stems[token[:n]]
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

    def replace(self, text: str) -> str:
        if self._regex is None:
            return text
        return self._regex.sub(lambda m: m.lastgroup, text)


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

    def analyse(self, text: str | None, language: str | None) -> Sentiment:
        """Score ``text``: the French scorer for ``"fr"``, VADER otherwise."""
        if not text or not text.strip():
            return Sentiment(0.0, "neutral")
        score = self._french(text) if language == "fr" else self._english(text)
        return Sentiment(round(score, 4), label_for(score, self.neutral_band))

    def _with_emoji_tokens(self, text: str) -> str:
        for emoji, _ in self._emoji:
            if emoji in text:
                text = text.replace(emoji, f" {self._emoji_tokens[emoji]} ")
        return text

    def _english(self, text: str) -> float:
        text = self._with_emoji_tokens(text)
        text = self._en_phrases.replace(text)
        return self._vader.polarity_scores(text)["compound"]

    def _french(self, text: str) -> float:
        folded = fold(self._with_emoji_tokens(text))
        folded = self._fr_phrases.replace(folded)
        tokens = folded.split()
        values = _apply_contrast(tokens, [self._valence(tokens, i) for i in range(len(tokens))])
        total = sum(values)
        if total:
            total += math.copysign(min(text.count("!"), MAX_EXCLAMATIONS) * EXCLAMATION_BOOST, total)
        return total / math.sqrt(total * total + NORMALISATION_ALPHA)

    def _valence(self, tokens: list[str], i: int) -> float:
        value = self._fr.get(tokens[i])
        if not value:
            return 0.0
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
