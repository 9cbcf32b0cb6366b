"""The adapter contract: what one channel module provides to the ingress service.

An adapter is pure: it verifies a request and maps it to event dicts, with no I/O. The ingress
service (``adapters/ingress.py``) does the HTTP, the raw-request record, Kafka, metrics and dead
letters around it. Adding a channel is one module in ``adapters/channels/`` plus a line in
``adapters/channels/__init__.py``'s registry.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Account:
    """One business account on one channel (a WhatsApp phone number id, a page, a bot...)."""

    tenant_id: str
    channel: str
    account_id: str
    secrets: tuple[str, ...] = ()  # signing secrets, current first; two during rotation
    verify_token: str | None = None  # Meta hub.verify_token, WeChat token, ...
    options: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, named: str | None) -> bool:
        """Whether a payload naming account ``named`` is for this account.

        ``None`` (the payload names no account: Telegram, Viber, web chat) matches. Otherwise the
        account id itself, one of ``options.aliases`` (e.g. every number of a Twilio Messaging
        Service posting to one URL), or, for an account id ``@domain``, any address of that
        domain (e-mail: one Inbound Parse host for every address), compared without case.
        """
        if named is None:
            return True
        named_l = named.lower()
        if named_l == self.account_id.lower():
            return True
        if self.account_id.startswith("@") and named_l.endswith(self.account_id.lower()):
            return True
        return any(named_l == str(a).lower() for a in self.options.get("aliases") or ())


@dataclass(frozen=True)
class Request:
    """A webhook request as the adapter sees it. Header names are lower-case."""

    method: str
    url: str  # the full public URL, with query string (Twilio signs it)
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    received_at_ms: int  # receipt time: the event time when the channel gives none
    raw_event_id: str  # id of the RawRequest record of this request


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain"


class Rejected(Exception):
    """The request is refused with a 4xx: bad signature, malformed body, unknown type..."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class Unmappable(Exception):
    """The request verified but cannot be mapped to events: it goes to the dead-letter topic."""


class Adapter(Protocol):
    channel: str
    max_body_bytes: int

    def handshake(self, req: Request, account: Account) -> Reply | None:
        """Answer a verification handshake (GET challenge...), or None if this is not one."""

    def verify(self, req: Request, account: Account) -> None:
        """Raise ``Rejected`` (401/403) unless the request is authentic."""

    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        """Map to events (MessageReceived, DeliveryStatusChanged, ...); may be empty.

        Raise ``Rejected(400, ...)`` for malformed input, ``Unmappable`` for input that is
        well-formed but cannot be mapped.
        """

    def ack(self, req: Request, events: Sequence[dict[str, Any]]) -> Reply:
        """What to answer once every event is acknowledged by Kafka."""


def hmac_matches(secrets: Sequence[str], message: bytes, given: str | bytes, digest: str,
                 encode: str = "hex") -> bool:
    """True if ``given`` is the HMAC of ``message`` under any of ``secrets`` (constant time)."""
    import base64

    if isinstance(given, str):
        given = given.strip().encode()
    for secret in secrets:
        mac = hmac.new(secret.encode(), message, getattr(hashlib, digest)).digest()
        expected = mac.hex().encode() if encode == "hex" else base64.b64encode(mac)
        if hmac.compare_digest(expected, given):
            return True
    return False


def secret_equals(secrets: Sequence[str], given: str | None) -> bool:
    """Constant-time comparison of a shared secret echoed by the provider."""
    if not given:
        return False
    return any(hmac.compare_digest(s.encode(), given.encode()) for s in secrets)
