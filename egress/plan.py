"""From one MessageSent to a send plan, or a refusal that says why (pure).

Checks, in order, each giving a permanent failure the agent sees: the account (known to the
egress, with send credentials), the recipient (an address the provider takes), the template
(configured for the account, right language and parameters), the window (a free-form message
outside the customer-service window is refused: it names the window's end and the account's
templates), and the rendering (media too large). Then the parts are rendered, and one
idempotency key per provider call is derived from the message's event id where the provider
takes one (LINE ``X-Line-Retry-Key``, RBM ``messageId``): the same message gets the same keys in
every attempt and after any restart, so the provider drops a repeat.
"""

from __future__ import annotations

import re
from typing import Any

from egress import templates as tpl
from egress.capabilities import Caps, caps_for
from egress.content import canonical
from egress.model import Plan, Refusal, SendAccount
from egress.render import RenderError, render
from egress.windows import closed_reason, window_at
from schemas.events import derive_id

KEYED = frozenset({"line", "rbm"})  # providers that drop a repeated idempotency key
_DIGITS = re.compile(r"^\+?[0-9]{6,15}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def plan(event: dict[str, Any], account: SendAccount | None,
         inbound_times: tuple[int, ...] | list[int]) -> Plan | Refusal:
    """The plan for ``event`` (a MessageSent) from ``account``, given the customer's recent
    message times on that account (event time)."""
    channel, account_id = event["channel"], event["channel_account_id"]
    if account is None:
        return Refusal("unknown_account", f"no {channel} account {account_id!r} with send credentials is "
                                          "configured for the egress (accounts file, options.send)")
    recipient = address(account.provider, channel, event["recipient"])
    if recipient is None:
        return Refusal("invalid_recipient", f"the recipient is not a {channel} address {account.provider} can send "
                                            "to (its id is not the kind of address this provider takes)")
    msg = canonical(event)
    template = None
    if msg.get("template"):
        call = msg["template"]
        try:
            template = tpl.validate(account.templates, call["name"], call.get("language"),
                                    list(call.get("parameters") or []))
        except tpl.TemplateError as e:
            return Refusal(e.code, e.reason)
        msg = {**msg, "template": {**call, "language": template.language}}
    window = window_at(channel, inbound_times, event["envelope"]["occurred_at"], event.get("author_type") or "agent")
    if not msg.get("template") and not window.free_form_allowed:
        return Refusal("window_closed", closed_reason(window, tpl.names(account.templates)))
    caps = caps_for(channel, account.provider)
    mode = "template" if msg.get("template") else window.mode
    try:
        rendered = render(msg, caps, template, mode)
    except RenderError as e:
        return Refusal(e.code, e.reason)
    return Plan(rendered.parts, rendered.decision, mode, recipient,
                keys=keys(account.provider, event["envelope"]["event_id"], calls(rendered.parts, caps)),
                subject=msg.get("subject"))


def calls(parts: tuple[dict[str, Any], ...], caps: Caps) -> int:
    """How many provider calls the parts take (LINE carries 5 messages per call)."""
    return -(-len(parts) // max(caps.per_call, 1))


def keys(provider: str, event_id: str, n: int) -> tuple[str | None, ...]:
    if provider not in KEYED:
        return (None,) * n
    return tuple(derive_id(event_id, provider, "call", i) for i in range(n))


def address(provider: str, channel: str, recipient: dict[str, Any]) -> str | None:
    """The provider's address for the customer, or None when it cannot be one."""
    rid = str(recipient.get("id") or "").strip()
    phone = recipient.get("phone_e164")
    if provider == "twilio":
        number = phone or (rid if _DIGITS.match(rid) else None)
        if number is None:
            return None
        number = number if number.startswith("+") else f"+{number}"
        return f"whatsapp:{number}" if channel == "whatsapp" else number
    if provider == "whatsapp":
        digits = rid.lstrip("+")
        return digits if _DIGITS.match(digits) else None
    if provider == "rbm":
        number = phone or rid
        return number if _DIGITS.match(number) else None
    if provider == "email":
        addr = recipient.get("email") or rid
        return addr if _EMAIL.match(addr) else None
    if provider == "telegram":
        return rid if re.fullmatch(r"-?[0-9]{1,20}", rid) else None
    return rid or None
