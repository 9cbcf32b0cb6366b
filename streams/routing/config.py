"""Routing rules per tenant, from a TOML file validated at load (see config/routing.example.toml).

``load(path)`` returns a :class:`RoutingConfig` or raises :class:`RoutingConfigError` whose
message names the file and every faulty entry (``tenants.acme.queues.1.hours: unknown hours
'weekend'``). Tenants without their own section use the ``"*"`` section, else built-in defaults
(one always-open ``general`` queue, no bot). The models are frozen: rules never change while
a worker runs, and ``version`` is stamped on every RoutingDecided.
"""

from __future__ import annotations

import hashlib
import re
import string
import tomllib
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
REPLY_FIELDS = frozenset({"hours", "next_open", "expected_response", "queue"})


class RoutingConfigError(ValueError):
    """The routing file cannot be read or is invalid; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _minutes(rng: str) -> tuple[int, int]:
    m = _RANGE.match(rng)
    if not m:
        raise ValueError(f"time range {rng!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if not (0 <= start < end <= 24 * 60) or m1 > 59 or m2 > 59:
        raise ValueError(f"time range {rng!r} must run forward within one day (00:00-24:00)")
    return start, end


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


class Hours(_Model):
    """Opening hours of a week in one time zone; a day left out is closed."""

    timezone: str | None = None  # default: the tenant's
    label: str = ""  # how the auto-reply states the hours, e.g. "Mon-Fri 9:00-18:00"
    mon: tuple[str, ...] = ()
    tue: tuple[str, ...] = ()
    wed: tuple[str, ...] = ()
    thu: tuple[str, ...] = ()
    fri: tuple[str, ...] = ()
    sat: tuple[str, ...] = ()
    sun: tuple[str, ...] = ()
    closed_dates: tuple[date, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _zone(v)

    @field_validator(*DAYS)
    @classmethod
    def _ranges(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        spans = sorted(_minutes(r) for r in v)
        for (_, end), (start, _) in pairwise(spans):
            if start < end:
                raise ValueError(f"time ranges {list(v)} overlap")
        return v

    def ranges(self, weekday: int) -> list[tuple[int, int]]:
        """Open spans of a weekday (0 = Monday) in minutes after local midnight."""
        return sorted(_minutes(r) for r in getattr(self, DAYS[weekday]))

    def summary(self) -> str:
        if self.label:
            return self.label
        parts = [f"{d.capitalize()} {', '.join(getattr(self, d))}" for d in DAYS if getattr(self, d)]
        return "; ".join(parts) or "closed"


class Queue(_Model):
    """A queue and which contacts it takes: every non-empty criterion must match."""

    name: Annotated[str, Field(min_length=1)]
    intents: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()  # an agent needs all of them to take this queue's contacts
    hours: str | None = None  # a key of the tenant's [hours]; None: always open
    expected_response: str = "as soon as we open"


class Bot(_Model):
    enabled: bool = False
    bot_id: str = "bot"
    queue: str = "bot"
    intents: tuple[str, ...] = ()  # routine intents the bot answers first
    min_confidence: float = Field(0.5, ge=0, le=1)
    max_turns: int = Field(3, ge=1)  # customer messages the bot gets before a human takes over
    handoff_intents: tuple[str, ...] = ("human_request",)
    handoff_on_negative: bool = True
    handoff_on_unknown_intent: bool = True
    handoff_template: str = "handoff"  # a bot MessageSent with this template asks for a human


class Vip(_Model):
    tiers: dict[str, int] = Field(default_factory=dict)  # tier -> priority
    queue: str | None = None
    skip_bot: bool = True


class Escalation(_Model):
    """A recurring unhappy customer: negative now, and repeated (negative) contacts lately."""

    enabled: bool = True
    queue: str = "escalation"
    min_contacts: int = Field(3, ge=1)
    min_negative_contacts: int = Field(2, ge=1)
    window_days: int = Field(30, ge=1)
    negative_threshold: float = Field(-0.3, ge=-1, le=0)
    priority: int = 5


class AutoReply(_Model):
    """The out-of-hours message; placeholders: {hours} {next_open} {expected_response} {queue}."""

    enabled: bool = True
    text: str = "We are closed. Our hours: {hours}. We reopen {next_open} and will answer {expected_response}."
    texts: dict[str, str] = Field(default_factory=dict)  # per language, e.g. fr = "..."

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _placeholders(v)

    @field_validator("texts")
    @classmethod
    def _texts(cls, v: dict[str, str]) -> dict[str, str]:
        for t in v.values():
            _placeholders(t)
        return v

    def for_language(self, language: str | None) -> str:
        return self.texts.get(language or "", self.text)


def _placeholders(text: str) -> str:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:
        raise ValueError(f"bad placeholder syntax: {e}") from None
    unknown = names - REPLY_FIELDS
    if unknown:
        raise ValueError(f"unknown placeholders {sorted(unknown)}; use {sorted(REPLY_FIELDS)}")
    return text


class TenantRules(_Model):
    timezone: str = "UTC"
    default_queue: str = "general"
    intent_min_confidence: float = Field(0.5, ge=0, le=1)
    hours: dict[str, Hours] = Field(default_factory=dict)
    queues: tuple[Queue, ...] = (Queue(name="general"), Queue(name="escalation", skills=("escalation",)))
    bot: Bot = Bot()
    vip: Vip = Vip()
    escalation: Escalation = Escalation()
    auto_reply: AutoReply = AutoReply()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)

    @model_validator(mode="after")
    def _references(self) -> TenantRules:
        names = [q.name for q in self.queues]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"queue names must be unique: {dupes}")
        for i, q in enumerate(self.queues):
            if q.hours is not None and q.hours not in self.hours:
                raise ValueError(f"queues.{i} ({q.name}): unknown hours {q.hours!r}; defined: {sorted(self.hours)}")
        wanted = {"default_queue": self.default_queue, "vip.queue": self.vip.queue,
                  "escalation.queue": self.escalation.queue if self.escalation.enabled else None}
        for where, name in wanted.items():
            if name is not None and name not in names:
                hint = " (or set escalation.enabled = false)" if where == "escalation.queue" else ""
                raise ValueError(f"{where} {name!r} is not a queue; queues: {names}{hint}")
        if self.bot.enabled and self.bot.queue in names:
            raise ValueError(f"bot.queue {self.bot.queue!r} must not be a human queue")
        return self

    def queue(self, name: str) -> Queue:
        return next(q for q in self.queues if q.name == name)

    def hours_of(self, queue: Queue) -> Hours | None:
        return None if queue.hours is None else self.hours[queue.hours]

    def zone(self, hours: Hours) -> ZoneInfo:
        return ZoneInfo(hours.timezone or self.timezone)


DEFAULT_RULES = TenantRules()


class RoutingConfig(_Model):
    version: str = ""
    tenants: dict[str, TenantRules] = Field(default_factory=dict)

    def for_tenant(self, tenant_id: str) -> TenantRules:
        return self.tenants.get(tenant_id) or self.tenants.get("*") or DEFAULT_RULES

    def version_of(self, tenant_id: str) -> str:
        """A short, stable label of the tenant's rules: the file's version and a content hash."""
        rules = self.for_tenant(tenant_id)
        digest = hashlib.sha256(rules.model_dump_json().encode()).hexdigest()[:12]
        return f"{self.version}+{digest}" if self.version else digest


def parse(text: str, source: str = "<routing rules>") -> RoutingConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RoutingConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        return RoutingConfig.model_validate(raw)
    except ValidationError as e:
        lines = [f"{source}: invalid routing rules ({e.error_count()} errors)"]
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise RoutingConfigError("\n".join(lines)) from None


def load(path: str | Path | None) -> RoutingConfig:
    """The rules in ``path``; built-in defaults for every tenant when ``path`` is None."""
    if path is None:
        return RoutingConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RoutingConfigError(f"{path}: cannot read routing rules: {e.strerror or e}") from None
    return parse(text, str(path))
