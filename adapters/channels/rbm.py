"""Google RCS Business Messaging (RBM) webhooks.

Facts relied on (Google "RBM webhooks" guide and the ``UserMessage`` / ``UserEvent`` /
``UserFile`` REST reference):
- Handshake: when the webhook is configured, Google POSTs ``{"clientToken", "secret"}``; check
  the client token and answer 200 with the ``secret`` as a plain-text body.
- Each message/event is POSTed as a Pub/Sub-style envelope ``{"message": {"data": <base64 JSON>,
  "messageId", "publishTime", "attributes"}, "subscription"}``. ``X-Goog-Signature`` is the
  base64 HMAC-SHA512 of the base64-*decoded* ``message.data``, keyed by the clientToken.
- ``UserMessage{senderPhoneNumber (E.164), messageId (the idempotency key), sendTime (RFC 3339,
  0-9 fractional digits), agentId, text | userFile{category, thumbnail, payload{mimeType,
  fileSizeBytes, fileUri, fileName}} | location{latitude, longitude} |
  suggestionResponse{postbackData, text, type: REPLY|ACTION}}``.
- ``UserEvent{senderPhoneNumber, eventType: DELIVERED|READ|IS_TYPING|…, eventId, messageId
  (set for DELIVERED and READ: our message), sendTime, agentId}``; key: messageId + status.
- Google retries non-200 answers with backoff up to 600 s for 7 days.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from adapters.base import Account, Rejected, Reply, Request, Unmappable, hmac_matches, secret_equals
from adapters.channels._common import (
    KIB,
    BaseAdapter,
    Ctx,
    as_dict,
    attachment,
    e164,
    header,
    identity,
    json_object,
    location,
    mapping_errors,
    ms_from_rfc3339,
    need,
    rich,
    text,
)

CHANNEL = "rbm"
SIGNATURE_HEADER = "X-Goog-Signature"
STATUSES = {"DELIVERED": "delivered", "READ": "read"}
FILE_KINDS = {"IMAGE": "image", "VIDEO": "video", "AUDIO": "audio"}


def _envelope(req: Request) -> dict[str, Any]:
    body = json_object(req.body)
    if not isinstance(body, dict):
        raise Unmappable("RBM body is not an object")
    return body


def _data(body: dict[str, Any]) -> bytes:
    """The base64-decoded ``message.data`` of a push (400 when it is not base64)."""
    msg = body.get("message")
    data = msg.get("data") if isinstance(msg, dict) else None
    if not isinstance(data, str):
        raise Rejected(400, "RBM push without message.data")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(400, "message.data is not valid base64") from None


class RbmAdapter(BaseAdapter):
    channel = CHANNEL
    max_body_bytes = 256 * KIB  # one user message or event, base64-wrapped

    def handshake(self, req: Request, account: Account) -> Reply | None:
        try:
            body = json.loads(req.body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(body, dict) or "clientToken" not in body or "message" in body:
            return None
        tokens = [t for t in (*account.secrets, account.verify_token) if t]
        given = body.get("clientToken")
        if not secret_equals(tokens, given if isinstance(given, str) else None):
            raise Rejected(403, "clientToken does not match the configured client token")
        secret = body.get("secret")
        return Reply(200, secret if isinstance(secret, str) else "", "text/plain")

    def verify(self, req: Request, account: Account) -> None:
        given = header(req, SIGNATURE_HEADER)
        if not given:
            raise Rejected(401, f"missing {SIGNATURE_HEADER} header")
        if not hmac_matches(account.secrets, _data(_envelope(req)), given, "sha512",
                            encode="base64"):
            raise Rejected(403, f"{SIGNATURE_HEADER} does not match message.data under any "
                                "client token")

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        inner = json_object(_data(_envelope(req)))
        if not isinstance(inner, dict) or not inner.get("senderPhoneNumber"):
            raise Unmappable("message.data is not an RBM UserMessage or UserEvent")
        cx = self.ctx(req, account)
        phone = need(inner, "senderPhoneNumber")
        who = identity(CHANNEL, e164(phone) or phone, phone_e164=e164(phone))
        ts = ms_from_rfc3339(inner.get("sendTime"), req.received_at_ms)
        agent = text(inner.get("agentId"))
        if "eventType" in inner:
            status = STATUSES.get(text(inner["eventType"]) or "")
            if status is None:
                return []  # IS_TYPING and other ephemeral events
            mid = need(inner, "messageId")
            return [cx.status(key=f"{mid}|{status}", recipient=who, channel_message_id=mid,
                              status=status, occurred_at=ts, account_id=agent)]
        return [_message(cx, inner, who, ts, agent)]


def _message(cx: Ctx, m: dict[str, Any], who: dict[str, Any], ts: int,
             agent: str | None) -> dict[str, Any]:
    mid = need(m, "messageId")
    body, files, content = text(m.get("text")), [], None
    if isinstance(m.get("userFile"), dict):
        uf = m["userFile"]
        info = as_dict(uf.get("payload") or {}, "userFile.payload")
        mime = text(info.get("mimeType")) or ""
        kind = FILE_KINDS.get(text(uf.get("category")) or "") or \
            FILE_KINDS.get(mime.split("/")[0].upper(), "file")
        files.append(attachment(kind, url=info.get("fileUri"), mime_type=mime or None,
                                size_bytes=info.get("fileSizeBytes"),
                                filename=info.get("fileName")))
    elif isinstance(m.get("location"), dict):
        content = location(m["location"].get("latitude"), m["location"].get("longitude"))
    elif isinstance(m.get("suggestionResponse"), dict):
        sr = m["suggestionResponse"]
        body = text(sr.get("text"))
        kind = "quick_reply" if text(sr.get("type")) in (None, "REPLY") else "action"
        content = rich(kind, payload=sr.get("postbackData"), title=body, data=sr)
    elif body is None:
        raise Unmappable("UserMessage without text, userFile, location or suggestionResponse")
    return cx.received(key=mid, sender=who, channel_message_id=mid, occurred_at=ts,
                       account_id=agent, text=body, attachments=files, rich=content)


ADAPTER = RbmAdapter()
