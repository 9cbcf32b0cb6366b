"""Plain data shared by the pure modules: a sending account and a send plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from egress.templates import Template


@dataclass(frozen=True)
class SendAccount:
    """A channel account the egress may send from: its provider and credentials."""

    tenant_id: str
    provider: str  # the accounts file's adapter: whatsapp, messenger, twilio, telegram...
    account_id: str
    send: Mapping[str, Any] = field(default_factory=dict)  # credentials and provider options
    templates: tuple[Template, ...] = ()
    aliases: tuple[str, ...] = ()
    rate_per_s: float = 50.0
    burst: int = 50


@dataclass(frozen=True)
class Plan:
    """What to send for one MessageSent: the rendered parts, in order, and why they look so."""

    parts: tuple[dict[str, Any], ...]
    decision: dict[str, Any]
    mode: str  # response, human_agent, template, none
    recipient: str  # the provider's address for the customer
    keys: tuple[str | None, ...] = ()  # one idempotency key per provider call, where it takes one
    subject: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A message that will not be sent: ``code`` (machine), ``reason`` (for the agent)."""

    code: str
    reason: str
    decision: dict[str, Any] | None = None
