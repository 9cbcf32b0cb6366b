"""First-party web and in-app chat: the endpoint our web/mobile SDK posts to.

Route: ``POST /webhooks/webchat/<account_id>``, JSON, at most 64 KiB.

Authentication (per account, so per tenant): ``Authorization: Bearer <token>`` where the token is
one of the account's ``secrets`` (two during rotation), compared in constant time. Missing or
wrong token: 401. The token identifies the site/app, not the person.

Identity: the SDK may add ``user_token``, a JWT (HS256) that the business's own backend signs for
a logged-in user with a key the browser never sees (``options.user_token_secrets``, two during
rotation). Claims: ``sub`` (the business's login id, required), optional ``exp``/``nbf`` (checked
against the request's receipt time, 60 s leeway), ``email`` and ``name``. A valid token sets the
sender's ``login_id`` (and ``email``): the identity processor links the visitor on that verified
signal. A token that does not verify is refused (401): a claimed identity is never half-trusted.

Body: one event, or ``{"events": [...]}`` with up to 50 (an SDK flushing its offline queue)::

    {"type": "message", "message_id": "m-7f3a", "visitor_id": "v-19c2",
     "text": "Where is my order?", "sent_at": 1731400000000, "display_name": "Zoé",
     "attachments": [{"kind": "image", "url": "https://cdn.example/u/1.png",
                      "mime_type": "image/png", "size_bytes": 48213}],
     "rich": {"kind": "quick_reply", "payload": "ORDER_STATUS", "title": "Order status"},
     "reply_to": "m-7f30", "subject": null, "user_token": "<jwt>"}
    {"type": "status", "message_id": "<our outbound message id>", "visitor_id": "v-19c2",
     "status": "delivered" | "read" | "failed", "at": 1731400001000}

The raw record keeps the body with ``user_token`` redacted (``redact``).

``message_id`` is chosen by the SDK, unique per visitor, and reused when it retries: the event id
derives from (tenant, account, visitor, message id), so a retry is recognised. Event time: the
SDK's ``sent_at`` (kept for messages queued offline) but never later than the receipt time nor
more than 24 h before it (``options.max_client_skew_s`` changes the bound; 0 lifts it, for
replays of recorded traffic such as `parley demo`); receipt time when absent. Partition key
``tenant|webchat|visitor_id``.
Unknown ``type`` or a body that does not validate: 400 with the first error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from adapters.base import Account, Rejected, Reply, Request, secret_equals
from schemas import topics
from schemas.events import derive_id, envelope, make

CHANNEL = "webchat"
MAX_SKEW_MS = 24 * 3600 * 1000
LEEWAY_S = 60
_Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^|\s]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WebchatAttachment(_Model):
    kind: Literal["image", "audio", "video", "document", "file", "sticker", "location"]
    url: str | None = Field(None, max_length=2048)
    media_id: str | None = Field(None, max_length=256)
    mime_type: str | None = Field(None, max_length=128)
    size_bytes: int | None = Field(None, ge=0)
    filename: str | None = Field(None, max_length=512)
    caption: str | None = Field(None, max_length=4096)
    sha256: str | None = Field(None, max_length=128)

    @model_validator(mode="after")
    def _has_reference(self) -> WebchatAttachment:
        if not (self.url or self.media_id):
            raise ValueError("an attachment needs a url or a media_id (never the bytes)")
        return self


class WebchatRich(_Model):
    kind: str = Field(min_length=1, max_length=64)
    payload: str | None = Field(None, max_length=4096)
    title: str | None = Field(None, max_length=1024)
    data: dict[str, Any] = Field(default_factory=dict)


class WebchatMessage(_Model):
    type: Literal["message"]
    message_id: _Id
    visitor_id: _Id
    text: str | None = Field(None, max_length=10_000)
    subject: str | None = Field(None, max_length=1000)
    attachments: list[WebchatAttachment] = Field(default_factory=list, max_length=10)
    rich: WebchatRich | None = None
    reply_to: str | None = Field(None, max_length=128)
    sent_at: int | None = Field(None, ge=0, lt=2**53)
    display_name: str | None = Field(None, max_length=256)
    user_token: str | None = Field(None, max_length=8192)

    @model_validator(mode="after")
    def _has_content(self) -> WebchatMessage:
        if not (self.text or self.attachments or self.rich):
            raise ValueError("a message needs text, attachments or rich content")
        return self


class WebchatStatus(_Model):
    type: Literal["status"]
    message_id: _Id
    visitor_id: _Id
    status: Literal["delivered", "read", "failed"]
    at: int | None = Field(None, ge=0, lt=2**53)
    error_code: str | None = Field(None, max_length=64)
    error_message: str | None = Field(None, max_length=1024)


WebchatEvent = Annotated[WebchatMessage | WebchatStatus, Field(discriminator="type")]


class WebchatBatch(_Model):
    events: list[WebchatEvent] = Field(min_length=1, max_length=50)


_ONE: TypeAdapter[WebchatMessage | WebchatStatus] = TypeAdapter(WebchatEvent)


class WebchatAdapter:
    channel = CHANNEL
    max_body_bytes = 64 * 1024

    def handshake(self, req: Request, account: Account) -> Reply | None:
        return None

    def verify(self, req: Request, account: Account) -> None:
        if not account.secrets:
            raise Rejected(403, "no token is configured for this account")
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret_equals(account.secrets, token.strip()):
            raise Rejected(401, "missing or wrong bearer token")

    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        items = _validate(req.body)
        return [_to_event(item, req, account) for item in items]

    def ack(self, req: Request, events: Sequence[dict[str, Any]]) -> Reply:
        body = {"accepted": [e["envelope"]["event_id"] for e in events]}
        return Reply(200, json.dumps(body), "application/json")

    def redact(self, body: bytes) -> bytes:
        """The body to keep in the raw record: ``user_token`` (a bearer credential for the
        visitor's login until it expires) replaced by ``<redacted>``; the event keeps the login
        id it proved. Bodies without one are kept byte for byte."""
        if b"user_token" not in body:
            return body
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return b""  # not JSON but names a token: keep nothing rather than the token
        items = doc["events"] if isinstance(doc, dict) and isinstance(doc.get("events"), list) else [doc]
        for item in items:
            if isinstance(item, dict) and "user_token" in item:
                item["user_token"] = "<redacted>"
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _validate(body: bytes) -> list[WebchatMessage | WebchatStatus]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Rejected(400, f"malformed JSON: {e}") from None
    if not isinstance(doc, dict):
        raise Rejected(400, "the body must be a JSON object")
    try:
        if "events" in doc:
            return list(WebchatBatch.model_validate(doc).events)
        return [_ONE.validate_python(doc)]
    except ValidationError as e:
        raise Rejected(400, _first_error(e)) from None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "union_tag_invalid":
        given = err["input"].get("type") if isinstance(err.get("input"), dict) else None
        return f"unknown type {given!r}: expected message or status"
    if err["type"] == "union_tag_not_found":
        return "missing field 'type' (message or status)"
    return f"{where}: {err['msg']}"


def _to_event(item: WebchatMessage | WebchatStatus, req: Request, account: Account) -> dict[str, Any]:
    key = topics.MESSAGES.key(account.tenant_id, CHANNEL, item.visitor_id)
    if isinstance(item, WebchatStatus):
        return _status(item, req, account, key)
    identity = {"channel": CHANNEL, "id": item.visitor_id, "display_name": item.display_name,
                "phone_e164": None, "email": None, "login_id": None}
    if item.user_token:
        claims = verify_user_token(item.user_token, _user_token_secrets(account), req.received_at_ms)
        identity["login_id"] = claims["sub"]
        identity["email"] = claims.get("email") if isinstance(claims.get("email"), str) else None
        if not identity["display_name"] and isinstance(claims.get("name"), str):
            identity["display_name"] = claims["name"]
    event_id = derive_id(account.tenant_id, CHANNEL, account.account_id, item.visitor_id, item.message_id)
    env = envelope("MessageReceived", event_id=event_id, occurred_at=_event_time(item.sent_at, req, account),
                   tenant_id=account.tenant_id, partition_key=key, producer=f"ingress/{CHANNEL}")
    return make("MessageReceived", env, channel=CHANNEL, channel_account_id=account.account_id,
                sender=identity, channel_message_id=item.message_id, text=item.text, subject=item.subject,
                attachments=[_attachment(a) for a in item.attachments], rich=_rich(item.rich),
                reply_to_channel_message_id=item.reply_to, raw_event_id=req.raw_event_id)


def _status(item: WebchatStatus, req: Request, account: Account, key: str) -> dict[str, Any]:
    event_id = derive_id(account.tenant_id, CHANNEL, account.account_id, item.visitor_id, item.message_id,
                         "status", item.status)
    env = envelope("DeliveryStatusChanged", event_id=event_id, occurred_at=_event_time(item.at, req, account),
                   tenant_id=account.tenant_id, partition_key=key, producer=f"ingress/{CHANNEL}")
    recipient = {"channel": CHANNEL, "id": item.visitor_id, "display_name": None, "phone_e164": None,
                 "email": None, "login_id": None}
    return make("DeliveryStatusChanged", env, channel=CHANNEL, channel_account_id=account.account_id,
                recipient=recipient, channel_message_id=item.message_id, status=item.status,
                error_code=item.error_code, error_message=item.error_message, raw_event_id=req.raw_event_id)


def _event_time(client_ms: int | None, req: Request, account: Account) -> int:
    """The SDK's clock, bounded by the receipt time (a fast clock) and by the account's
    ``max_client_skew_s`` before it (24 h by default; 0: no lower bound)."""
    received = req.received_at_ms
    skew_s = account.options.get("max_client_skew_s")
    skew_ms = MAX_SKEW_MS if skew_s is None else int(skew_s) * 1000
    if client_ms is None or (skew_ms and client_ms < received - skew_ms):
        return received
    return min(client_ms, received)


def _attachment(a: WebchatAttachment) -> dict[str, Any]:
    return {"kind": a.kind, "media_id": a.media_id, "url": a.url, "mime_type": a.mime_type,
            "size_bytes": a.size_bytes, "sha256": a.sha256, "caption": a.caption, "filename": a.filename}


def _rich(r: WebchatRich | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"kind": r.kind, "payload": r.payload, "title": r.title,
            "data_json": json.dumps(r.data, sort_keys=True, ensure_ascii=False)}


def _user_token_secrets(account: Account) -> tuple[str, ...]:
    opts = account.options
    many = opts.get("user_token_secrets") or []
    one = opts.get("user_token_secret")
    secrets = tuple(s for s in ([one] if one else []) + list(many) if isinstance(s, str) and s)
    if not secrets:
        raise Rejected(401, "user_token sent but this account has no user_token_secrets configured")
    return secrets


def verify_user_token(token: str, secrets: Sequence[str], now_ms: int) -> dict[str, Any]:
    """The claims of an HS256 JWT signed with one of ``secrets``; ``Rejected(401)`` otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Rejected(401, "user_token is not a JWT")
    header, claims = _json_part(parts[0]), _json_part(parts[1])
    if header.get("alg") != "HS256":
        raise Rejected(401, "user_token must be signed with HS256")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    signature = _b64url(parts[2])
    if not any(hmac.compare_digest(hmac.new(s.encode(), signing_input, hashlib.sha256).digest(), signature)
               for s in secrets):
        raise Rejected(401, "user_token signature does not verify")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= 256:
        raise Rejected(401, "user_token has no valid 'sub' (login id)")
    now_s = now_ms / 1000
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (not isinstance(exp, (int, float)) or now_s > exp + LEEWAY_S):
        raise Rejected(401, "user_token has expired")
    if nbf is not None and (not isinstance(nbf, (int, float)) or now_s < nbf - LEEWAY_S):
        raise Rejected(401, "user_token is not valid yet")
    return claims


def _b64url(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise Rejected(401, "user_token is not base64url") from None


def _json_part(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(part))
    except (ValueError, UnicodeDecodeError):
        raise Rejected(401, "user_token is not a JWT") from None
    if not isinstance(value, dict):
        raise Rejected(401, "user_token is not a JWT")
    return value


ADAPTER = WebchatAdapter()
