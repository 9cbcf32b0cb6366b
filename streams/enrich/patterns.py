"""Intent patterns: one compiled pattern, and an index that finds all matching ones at once.

Pure and read-only once built. The syntax is described in :mod:`streams.enrich.intent`;
every pattern is matched on folded text (``" words like this "``, see
:func:`streams.enrich.language.fold`).

A config has a few hundred patterns and most messages match a handful, so
:class:`PatternIndex` does not try them one by one. It splits each pattern
into the words it needs (``"mot de passe"`` -> ``mot``, ``de``, ``passe``;
``"quand .. arriv*"`` -> ``quand``, the stem ``arriv*``), finds which of those
words a text has with one set intersection and one regex scan, and only then
looks at the patterns that can match: a one-word pattern is decided by its
word, a longer one by its regex. Raw ``re:`` patterns are always tried. The
result is exactly the set of patterns whose regex matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from streams.enrich.language import fold

GAP = ".."
MAX_GAP_WORDS = 3
STEM = "*"


@dataclass(frozen=True)
class CompiledPattern:
    """A pattern ready to match folded text; ``anchor`` is a cheap pre-check.

    ``words`` are the folded words the pattern needs, a stem ending in ``*``
    (``("quand", "arriv*")``); empty for a raw ``re:`` pattern.
    """

    regex: re.Pattern[str]
    anchor: str
    weight: float
    words: tuple[str, ...] = ()

    def matches(self, folded: str) -> bool:
        return self.anchor in folded and self.regex.search(folded) is not None


def compile_pattern(pattern: str, weight: float = 1.0) -> CompiledPattern:
    """Compile one pattern of the config syntax; raise ValueError if invalid."""
    if pattern.startswith("re:"):
        try:
            return CompiledPattern(re.compile(pattern[3:]), "", weight)
        except re.error as exc:
            raise ValueError(f"invalid regex in pattern {pattern!r}: {exc}") from None
    words = pattern.split()
    if not words or words[0] == GAP or words[-1] == GAP:
        raise ValueError(f"pattern {pattern!r} must start and end with a word")
    parts, literals, needed, sep = [], [], [], ""
    for word in words:
        if word == GAP:
            sep = rf"(?: [a-z0-9]+){{0,{MAX_GAP_WORDS}}} "
            continue
        body = fold(word.rstrip(STEM)).strip()
        if not body:
            raise ValueError(f"pattern {pattern!r} has a word with no letters or digits: {word!r}")
        stem = word.endswith(STEM)
        literals.append(body)
        needed += body.split()
        needed[-1] += STEM if stem else ""
        parts.append(sep + re.escape(body).replace(r"\ ", " ") + ("[a-z0-9]*" if stem else ""))
        sep = " "
    regex = re.compile("(?<= )" + "".join(parts) + "(?= )")
    return CompiledPattern(regex, max(literals, key=len), weight, tuple(needed))


# A pattern that needs more than its key word: (group, index, the other words, its regex).
_Check = tuple[int, int, tuple[str, ...], re.Pattern[str]]


class PatternIndex:
    """Finds, for groups of patterns (one group per intent), which patterns match a folded text."""

    def __init__(self, groups: Iterable[Iterable[CompiledPattern]]) -> None:
        # key word -> (the (group, index) its presence decides, the patterns it lets through)
        self._by_word: dict[str, tuple[list[tuple[int, int]], list[_Check]]] = {}
        self._raw: list[tuple[int, int, re.Pattern[str]]] = []
        words: set[str] = set()
        for group, patterns in enumerate(groups):
            for index, pattern in enumerate(patterns):
                self._add(group, index, pattern)
                words.update(pattern.words)
        self._words = {w for w in words if not w.endswith(STEM)}
        stems = sorted(w[:-1] for w in words if w.endswith(STEM))
        # At a word's start the regex finds the longest stem it begins with; the
        # shorter stems that one begins with are the word's too (a word starting with
        # "preleve" also starts with "prelev"). The match takes the space before the word.
        self._stems = re.compile(" (" + _longest_first(stems) + ")") if stems else None
        self._stems_within = {s: [t + STEM for t in stems if s.startswith(t)] for s in stems}

    def _add(self, group: int, index: int, pattern: CompiledPattern) -> None:
        if not pattern.words:
            self._raw.append((group, index, pattern.regex))
            return
        key = max(pattern.words, key=len)  # the longest word is the rarest, roughly
        decided, checks = self._by_word.setdefault(key, ([], []))
        if len(pattern.words) == 1:
            decided.append((group, index))
        else:
            checks.append((group, index, tuple(w for w in pattern.words if w != key), pattern.regex))

    def matches(self, folded: str) -> list[tuple[int, int]]:
        """``(group, index)`` of every pattern that matches a folded text, in order."""
        present = self._present_words(folded)
        found: list[tuple[int, int]] = []
        for word in present:
            entry = self._by_word.get(word)
            if entry is None:
                continue
            found += entry[0]
            for group, index, others, regex in entry[1]:
                if present.issuperset(others) and regex.search(folded):
                    found.append((group, index))
        found += [(group, index) for group, index, regex in self._raw if regex.search(folded)]
        found.sort()
        return found

    def _present_words(self, folded: str) -> set[str]:
        """The pattern words ``folded`` has: words as they are, stems as ``stem*``."""
        present = self._words.intersection(folded.split())
        if self._stems is not None:
            for stem in self._stems.findall(folded):
                present.update(self._stems_within[stem])
        return present


def _longest_first(words: list[str]) -> str:
    """A regex of ``words`` as a letter tree (faster than a flat alternation), matching
    the longest word it can: an optional longer branch is tried before stopping."""
    tree: dict = {}
    for word in words:
        node = tree
        for letter in word:
            node = node.setdefault(letter, {})
        node[""] = {}
    return _branches(tree)


def _branches(node: dict) -> str:
    alternatives = [re.escape(letter) + _branches(child) for letter, child in sorted(node.items()) if letter]
    if not alternatives:
        return ""
    body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
    return f"(?:{body})?" if "" in node else body
