"""Viber REST bot API callbacks (one event per request).

Facts relied on (Viber REST Bot API "Callbacks"; signature cross-checked with ``viberbot``'s
``Api.verify_signature``, which compares against ``hmac.new(auth_token, body,
sha256).hexdigest()``):
- ``X-Viber-Content-Signature``: hex HMAC-SHA256 of the raw JSON body keyed by the bot's
  auth token.
- ``{event, timestamp (ms), message_token, …}``. ``message``: ``sender{id, name, avatar,
  language, country}``, ``message{type: text|picture|video|file|sticker|contact|url|location,
  text, media (URL), thumbnail, file_name, size, sticker_id, contact{name, phone_number},
  location{lat, lon}, tracking_data}``. ``message_token`` is the idempotency key.
- ``delivered | seen | failed``: ``{user_id, message_token, timestamp, desc (failed)}``: the
  status of one of our messages; key message_token + status. ``seen`` is mapped to ``read``.
- ``webhook`` (set_webhook's check), ``subscribed``, ``unsubscribed``, ``conversation_started``
  carry no customer message: answered 200, nothing stored.
- Viber caps its own requests at 30 KB; a 7000-character text in 4-byte UTF-8 plus the envelope
  can approach that, so the inbound limit is 64 KiB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.base import Account, Rejected, Request, Unmappable, hmac_matches
from adapters.channels._common import (
    KIB,
    BaseAdapter,
    Ctx,
    as_dict,
    attachment,
    header,
    identity,
    json_object,
    location,
    mapping_errors,
    ms_from_ms,
    need,
    rich,
    text,
)

CHANNEL = "viber"
SIGNATURE_HEADER = "X-Viber-Content-Signature"
STATUSES = {"delivered": "delivered", "seen": "read", "failed": "failed"}
FILES = {"picture": "image", "video": "video", "file": "file", "sticker": "sticker"}


class ViberAdapter(BaseAdapter):
    channel = CHANNEL
    max_body_bytes = 64 * KIB

    def verify(self, req: Request, account: Account) -> None:
        given = header(req, SIGNATURE_HEADER)
        if not given:
            raise Rejected(401, f"missing {SIGNATURE_HEADER} header")
        if not hmac_matches(account.secrets, req.body, given.lower(), "sha256"):
            raise Rejected(403, f"{SIGNATURE_HEADER} does not match under any auth token")

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        body = json_object(req.body)
        event = body.get("event") if isinstance(body, dict) else None
        if not isinstance(event, str):
            raise Unmappable("not a Viber callback (no event)")
        cx = self.ctx(req, account)
        if event == "message":
            return [_message(cx, body)]
        if event in STATUSES:
            return [_status(cx, body, STATUSES[event])]
        return []  # webhook check, subscriptions, conversation_started and future events


def _message(cx: Ctx, ev: dict[str, Any]) -> dict[str, Any]:
    token = need(ev, "message_token")
    sender = as_dict(ev.get("sender"), "sender")
    msg = as_dict(ev.get("message"), "message")
    kind = text(msg.get("type")) or "unknown"
    body, files, content = text(msg.get("text")), [], None
    if kind in FILES:
        files.append(attachment(
            FILES[kind], url=msg.get("media"), media_id=msg.get("sticker_id"),
            size_bytes=msg.get("size"), filename=msg.get("file_name"),
            caption=body if kind in {"picture", "video"} else None,
        ))
        body = None if kind in {"picture", "video"} else body
    elif kind == "location":
        loc = as_dict(msg.get("location"), "location")
        content = location(loc.get("lat"), loc.get("lon"), address=loc.get("address"))
    elif kind == "contact":
        c = as_dict(msg.get("contact"), "contact")
        content = rich("contact", payload=c.get("phone_number"), title=c.get("name"), data=c)
    elif kind == "url":
        body = text(msg.get("media")) or body
    elif kind != "text":
        content = rich(kind, data=msg)
    return cx.received(
        key=token, channel_message_id=token,
        sender=identity(CHANNEL, need(sender, "id"), display_name=text(sender.get("name"))),
        occurred_at=ms_from_ms(ev.get("timestamp"), cx.req.received_at_ms),
        text=body, attachments=files, rich=content,
    )


def _status(cx: Ctx, ev: dict[str, Any], status: str) -> dict[str, Any]:
    token = need(ev, "message_token")
    return cx.status(
        key=f"{token}|{status}", recipient=identity(CHANNEL, need(ev, "user_id")),
        channel_message_id=token, status=status,
        occurred_at=ms_from_ms(ev.get("timestamp"), cx.req.received_at_ms),
        error_message=ev.get("desc") if status == "failed" else None,
    )


ADAPTER = ViberAdapter()
