"""Per-tenant intent classification with weighted keyword patterns.

Config file (TOML, validated at load by :func:`load_intent_config`)::

    version = 1

    [tenants.default]
    min_confidence = 0.3      # intents below this are dropped
    max_intents = 3           # at most this many, best first
    saturation = 1.0          # confidence = 1 - exp(-score / saturation)

    [[tenants.default.intents]]
    name = "refund"
    sentiment_bias = 0.0      # added to the sentiment score, times the confidence
    patterns.fr = ["rembours*", "mon argent", {p = "un avoir", w = 0.8}]
    patterns.en = ["refund*", "money back"]

    [tenants.acme]
    extends = "default"       # inherit settings and intents; same name = override
    min_confidence = 0.4
    [[tenants.acme.intents]]
    name = "warranty_claim"
    patterns.any = ["garantie", "warranty"]

Patterns (under ``patterns.<iso code>`` or ``patterns.any``) are matched on
folded text (lower case, no accents, punctuation as spaces, see
:func:`streams.enrich.language.fold`), on whole words:

* ``"mot de passe"``: those words in a row; ``"rembours*"``: a stem (prefix);
* ``"quand .. recevoir"``: ``..`` allows up to three words in between;
* ``"re:<regex>"``: a raw regular expression over the folded text;
* a bare string weighs 1.0; ``{p = "...", w = 0.5}`` sets the weight, and a
  negative weight cancels a false friend (``"merci de"`` is not a thank-you).

An intent's score is the sum of the weights of its distinct matching patterns,
whatever the message's language (short messages are often misdetected).
Deterministic: ties keep the config order.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.enrich.language import fold
from streams.enrich.patterns import GAP, MAX_GAP_WORDS, CompiledPattern, PatternIndex, compile_pattern

__all__ = [
    "DEFAULT_INTENTS_PATH", "DEFAULT_TENANT", "GAP", "MAX_GAP_WORDS", "CompiledPattern", "Intent",
    "IntentClassifier", "IntentConfig", "IntentConfigError", "compile_pattern", "load_intent_config",
]

DEFAULT_INTENTS_PATH = Path(__file__).parent / "data" / "intents.default.toml"
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Intent:
    """A detected intent and its confidence in 0..1."""

    name: str
    confidence: float


class IntentConfigError(ValueError):
    """The intent config file cannot be read or is invalid."""


class PatternSpec(BaseModel):
    """A pattern with an explicit weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    p: str = Field(min_length=1)
    w: float = 1.0


class IntentSpec(BaseModel):
    """One intent: a name, patterns per language and a sentiment bias."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    patterns: dict[str, tuple[str | PatternSpec, ...]]
    sentiment_bias: float = Field(default=0.0, ge=-1.0, le=1.0)

    @field_validator("patterns")
    @classmethod
    def _check_patterns(cls, value: dict[str, tuple[str | PatternSpec, ...]]):
        for lang, patterns in value.items():
            if lang != "any" and not re.fullmatch(r"[a-z]{2}", lang):
                raise ValueError(f"pattern language must be an ISO 639-1 code or 'any', got {lang!r}")
            for pattern in patterns:
                compile_pattern(pattern.p if isinstance(pattern, PatternSpec) else pattern)
        if not any(value.values()):
            raise ValueError("an intent needs at least one pattern")
        return value


class IntentConfig(BaseModel):
    """The intent classifier settings of one tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    extends: str | None = None
    min_confidence: float = Field(default=0.3, gt=0.0, le=1.0)
    max_intents: int = Field(default=3, ge=1)
    saturation: float = Field(default=1.0, gt=0.0)
    intents: tuple[IntentSpec, ...] = ()

    @field_validator("intents")
    @classmethod
    def _unique_names(cls, value: tuple[IntentSpec, ...]) -> tuple[IntentSpec, ...]:
        names = [i.name for i in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate intent names: {', '.join(duplicates)}")
        return value


class IntentConfigFile(BaseModel):
    """The whole file: a version and tenants by id."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    tenants: dict[str, IntentConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_extends(self) -> IntentConfigFile:
        for tenant_id in self.tenants:
            _extends_chain(self.tenants, tenant_id)
        for tenant_id in self.tenants:
            if not _resolve(self.tenants, tenant_id).intents:
                raise ValueError(f"tenant {tenant_id!r} has no intents")
        return self


def _extends_chain(tenants: dict[str, IntentConfig], tenant_id: str) -> list[str]:
    chain = [tenant_id]
    while (parent := tenants[chain[-1]].extends) is not None:
        if parent not in tenants:
            raise ValueError(f"tenant {chain[-1]!r} extends unknown tenant {parent!r}")
        if parent in chain:
            raise ValueError(f"tenants extend each other in a cycle: {' -> '.join(chain + [parent])}")
        chain.append(parent)
    return chain


def _resolve(tenants: dict[str, IntentConfig], tenant_id: str) -> IntentConfig:
    """Merge a tenant over its ``extends`` chain: own settings and intents win."""
    merged: dict = {}
    intents: dict[str, IntentSpec] = {}
    for config in reversed([tenants[t] for t in _extends_chain(tenants, tenant_id)]):
        merged.update({k: getattr(config, k) for k in config.model_fields_set - {"intents", "extends"}})
        intents.update({i.name: i for i in config.intents})
    return IntentConfig(**merged, intents=tuple(intents.values()))


def load_intent_config(path: str | Path = DEFAULT_INTENTS_PATH) -> dict[str, IntentConfig]:
    """Load and validate an intents file; return each tenant's resolved config.

    Raises :class:`IntentConfigError` naming the file and the faulty entry.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        parsed = IntentConfigFile.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise IntentConfigError(f"cannot read intent config {path}: {exc}") from exc
    except ValidationError as exc:
        raise IntentConfigError(f"invalid intent config {path}:\n{exc}") from exc
    return {tenant_id: _resolve(parsed.tenants, tenant_id) for tenant_id in parsed.tenants}


class IntentClassifier:
    """Scores a tenant's intents on a message; build once per config."""

    def __init__(self, config: IntentConfig) -> None:
        self.config = config
        self._names = [spec.name for spec in config.intents]
        compiled = [_compile_spec(spec) for spec in config.intents]
        self._weights = [[p.weight for p in patterns] for patterns in compiled]
        self._index = PatternIndex(compiled)
        self.biases = {spec.name: spec.sentiment_bias for spec in config.intents}

    def classify(self, text: str | None) -> tuple[Intent, ...]:
        """Return the intents above ``min_confidence``, best first."""
        if not text:
            return ()
        return self.classify_folded(fold(text))

    def classify_folded(self, folded: str) -> tuple[Intent, ...]:
        """:meth:`classify` for a text already passed through :func:`fold`."""
        scores: dict[int, float] = {}  # config order -> score
        for order, index in self._index.matches(folded):  # by intent, then pattern order
            scores[order] = scores.get(order, 0) + self._weights[order][index]
        saturation, floor = self.config.saturation, self.config.min_confidence
        scored = []  # (-confidence, config order)
        for order, score in scores.items():
            if score > 0:  # 0 or less: confidence 0, under any min_confidence
                confidence = round(1.0 - math.exp(-score / saturation), 4)
                if confidence >= floor:
                    scored.append((-confidence, order))
        scored.sort()
        return tuple([Intent(self._names[order], -neg) for neg, order in scored[: self.config.max_intents]])


def _compile_spec(spec: IntentSpec) -> list[CompiledPattern]:
    """Compile an intent's patterns; a pattern listed twice counts once."""
    weights: dict[str, float] = {}
    for patterns in spec.patterns.values():
        for pattern in patterns:
            text, weight = (pattern.p, pattern.w) if isinstance(pattern, PatternSpec) else (pattern, 1.0)
            weights.setdefault(text, weight)
    return [compile_pattern(text, weight) for text, weight in weights.items()]
