"""VADER's compound score, the same number as ``polarity_scores(text)["compound"]``, faster.

vaderSentiment 3.3.2 lower-cases the word list again for each lexicon word and
each of its neighbours (quadratic in the words of a message), and also computes
the pos/neg/neu shares we do not use. :class:`VaderCompound` lower-cases once,
skips texts with no lexicon word (their compound is 0.0 whatever the rest), and
otherwise applies the same rules in the same order, so every float operation is
the one VADER makes. The rare contrast case (``but``) is handed to VADER's own
code. A unit test compares both on generated texts that exercise every rule.

Pure: reads the analyzer's lexicon and emoji table, never changes them.
"""

from __future__ import annotations

import string

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    normalize,
)

_NEGATE = frozenset(NEGATE)
_PUNCTUATION = string.punctuation
# The first words of VADER's idioms and two-word boosters: a sequence of words can only
# be one of them if it starts with one of these.
_IDIOM_STARTS = frozenset(k.split()[0] for k in [*SPECIAL_CASES, *BOOSTER_DICT] if " " in k)


class VaderCompound:
    """``compound(text)`` of a built :class:`SentimentIntensityAnalyzer` (lexicon as it is then)."""

    def __init__(self, analyzer: SentimentIntensityAnalyzer) -> None:
        self._lexicon = analyzer.lexicon
        self._emojis = analyzer.emojis
        # VADER replaces emoji one character at a time: only one-character keys ever match.
        self._emoji = frozenset(e for e in analyzer.emojis if len(e) == 1)
        self._emoji_ascii = any(e.isascii() for e in self._emoji)

    def compound(self, text: str) -> float:
        """``SentimentIntensityAnalyzer.polarity_scores(text)["compound"]``."""
        if (self._emoji_ascii or not text.isascii()) and not self._emoji.isdisjoint(text):
            text = self._describe_emoji(text)
        text = text.strip()
        # VADER's _strip_punc_if_word: punctuation off, unless that leaves 2 letters or fewer (":)")
        words = [token if len(bare := token.strip(_PUNCTUATION)) <= 2 else bare for token in text.split()]
        lower = [w.lower() for w in words]
        if self._lexicon.keys().isdisjoint(lower):
            return 0.0  # every valence is 0: so is the sum, whatever the punctuation
        capitals = sum(map(str.isupper, words))
        is_cap_diff = 0 < len(words) - capitals < len(words)  # allcap_differential(words)
        sentiments: list[float] = [0] * len(lower)  # boosters, "kind of", words not in the lexicon
        for i in [i for i, word in enumerate(lower) if word in self._lexicon]:
            word = lower[i]
            kind_of = word == "kind" and i < len(lower) - 1 and lower[i + 1] == "of"
            if word not in BOOSTER_DICT and not kind_of:
                sentiments[i] = self._valence(words, lower, i, is_cap_diff)
        if "but" in lower:
            sentiments = SentimentIntensityAnalyzer._but_check(words, sentiments)
        return _compound(sentiments, text)

    def _describe_emoji(self, text: str) -> str:
        """VADER's loop: each emoji becomes its description, space-separated from before."""
        out, prev_space = [], True
        for char in text:
            if char in self._emojis:
                out.append(("" if prev_space else " ") + self._emojis[char])
                prev_space = False
            else:
                out.append(char)
                prev_space = char == " "
        return "".join(out)

    def _valence(self, words: list[str], lower: list[str], i: int, is_cap_diff: bool) -> float:
        """``sentiment_valence`` for the lexicon word at ``i``."""
        lexicon, word = self._lexicon, lower[i]
        valence = lexicon[word]
        if word == "no" and i != len(lower) - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if (i > 0 and lower[i - 1] == "no") or (i > 1 and lower[i - 2] == "no") \
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor")):
            valence = lexicon[word] * N_SCALAR
        if words[i].isupper() and is_cap_diff:
            valence = valence + C_INCR if valence > 0 else valence - C_INCR
        for start_i in range(3):
            if i > start_i and lower[i - (start_i + 1)] not in lexicon:
                s = _scalar_inc_dec(words[i - (start_i + 1)], lower[i - (start_i + 1)], valence, is_cap_diff)
                if start_i == 1 and s != 0:
                    s = s * 0.95
                if start_i == 2 and s != 0:
                    s = s * 0.9
                valence = valence + s
                valence = _negation_check(valence, lower, start_i, i)
                if start_i == 2:
                    valence = _special_idioms_check(valence, lower, i)
        return self._least_check(valence, lower, i)

    def _least_check(self, valence: float, lower: list[str], i: int) -> float:
        if i > 1 and lower[i - 1] not in self._lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence = valence * N_SCALAR
        elif i > 0 and lower[i - 1] not in self._lexicon and lower[i - 1] == "least":
            valence = valence * N_SCALAR
        return valence


def _scalar_inc_dec(word: str, word_lower: str, valence: float, is_cap_diff: bool) -> float:
    scalar = 0.0
    if word_lower in BOOSTER_DICT:
        scalar = BOOSTER_DICT[word_lower]
        if valence < 0:
            scalar *= -1
        if word.isupper() and is_cap_diff:
            scalar = scalar + C_INCR if valence > 0 else scalar - C_INCR
    return scalar


def _negated(word: str) -> bool:
    return word in _NEGATE or "n't" in word


def _negation_check(valence: float, lower: list[str], start_i: int, i: int) -> float:
    if start_i == 0:
        if _negated(lower[i - 1]):
            valence = valence * N_SCALAR
    elif start_i == 1:
        if lower[i - 2] == "never" and (lower[i - 1] == "so" or lower[i - 1] == "this"):
            valence = valence * 1.25
        elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
            pass
        elif _negated(lower[i - 2]):
            valence = valence * N_SCALAR
    else:
        if lower[i - 3] == "never" and (lower[i - 2] == "so" or lower[i - 2] == "this") \
                or (lower[i - 1] == "so" or lower[i - 1] == "this"):
            valence = valence * 1.25
        elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
            pass
        elif _negated(lower[i - 3]):
            valence = valence * N_SCALAR
    return valence


def _special_idioms_check(valence: float, lower: list[str], i: int) -> float:
    # Every sequence below starts at i-3, i-2, i-1 or i: none can match without an idiom start.
    if _IDIOM_STARTS.isdisjoint(lower[i - 3:i + 1]):
        return valence
    onezero = f"{lower[i - 1]} {lower[i]}"
    twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
    twoone = f"{lower[i - 2]} {lower[i - 1]}"
    threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
    threetwo = f"{lower[i - 3]} {lower[i - 2]}"
    for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if seq in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
            break
    if len(lower) - 1 > i:
        zeroone = f"{lower[i]} {lower[i + 1]}"
        if zeroone in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
    if len(lower) - 1 > i + 1:
        zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
        if zeroonetwo in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
    for n_gram in (threetwoone, threetwo, twoone):
        if n_gram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[n_gram]
    return valence


def _compound(sentiments: list[float], text: str) -> float:
    """``score_valence(...)["compound"]``: the sum, pushed by ! and ?, normalised, rounded."""
    if not sentiments:
        return 0.0
    sum_s = float(sum(sentiments))
    punct_emph_amplifier = min(text.count("!"), 4) * 0.292 + _question_marks(text.count("?"))
    if sum_s > 0:
        sum_s += punct_emph_amplifier
    elif sum_s < 0:
        sum_s -= punct_emph_amplifier
    return round(normalize(sum_s), 4)


def _question_marks(count: int) -> float:
    if count > 1:
        return count * 0.18 if count <= 3 else 0.96
    return 0
