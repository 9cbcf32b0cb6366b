"""LINE Messaging API webhooks (a batch of events per request).

Facts relied on (LINE Messaging API reference "Webhook event objects" and "Verify signature";
cross-checked with ``line-bot-sdk`` v3 ``linebot.v3.webhook``):
- ``x-line-signature``: base64 HMAC-SHA256 of the raw body keyed by the channel secret.
- Body ``{destination (the bot's user id), events[]}``; the console's "Verify" sends an empty
  ``events`` list, answered 200 with nothing to store.
- Every event: ``type``, ``timestamp`` (ms), ``mode`` (active/standby), ``webhookEventId`` (the
  idempotency key, the same on redelivery), ``deliveryContext.isRedelivery``, ``source{type:
  user|group|room, userId, groupId, roomId}``.
- ``message`` events: ``message{id, type, …}``: ``text{text, quotedMessageId}``,
  ``image|video|audio{contentProvider{type: line|external, originalContentUrl}}`` (content
  fetched separately by message id), ``file{fileName, fileSize}``, ``location{title, address,
  latitude, longitude}``, ``sticker{packageId, stickerId}``.
- ``postback`` events: ``postback{data, params}``. follow/unfollow/join/leave/unsend/beacon...
  are not customer messages. LINE has no delivery or read callbacks for bots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.base import Account, Rejected, Request, Unmappable, hmac_matches
from adapters.channels._common import (
    MIB,
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

CHANNEL = "line"
SIGNATURE_HEADER = "x-line-signature"
MEDIA = {"image", "video", "audio", "file"}


class LineAdapter(BaseAdapter):
    channel = CHANNEL
    max_body_bytes = 1 * MIB  # batched events; each is small

    def verify(self, req: Request, account: Account) -> None:
        given = header(req, SIGNATURE_HEADER)
        if not given:
            raise Rejected(401, f"missing {SIGNATURE_HEADER} header")
        if not hmac_matches(account.secrets, req.body, given, "sha256", encode="base64"):
            raise Rejected(403, f"{SIGNATURE_HEADER} does not match under any channel secret")

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        body = json_object(req.body)
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise Unmappable("not a LINE webhook (no events list)")
        cx, dest = self.ctx(req, account), text(body.get("destination"))
        out = []
        for ev in body["events"]:
            ev = as_dict(ev, "event")
            if ev.get("type") == "message":
                out.append(_message(cx, ev, dest))
            elif ev.get("type") == "postback":
                out.append(_postback(cx, ev, dest))
        return out


def _common(cx: Ctx, ev: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
    source = as_dict(ev.get("source"), "source")
    user = text(source.get("userId")) or text(source.get("groupId")) or text(source.get("roomId"))
    if not user:
        raise Unmappable("event source without userId")
    return need(ev, "webhookEventId"), identity(CHANNEL, user), \
        ms_from_ms(ev.get("timestamp"), cx.req.received_at_ms)


def _message(cx: Ctx, ev: dict[str, Any], dest: str | None) -> dict[str, Any]:
    key, sender, ts = _common(cx, ev)
    msg = as_dict(ev.get("message"), "message")
    mid, kind = need(msg, "id"), text(msg.get("type"))
    files, content = [], None
    if kind in MEDIA:
        provider = msg["contentProvider"] if isinstance(msg.get("contentProvider"), dict) \
            else {}
        files.append(attachment(
            "image" if kind == "image" else kind, media_id=mid,
            url=provider.get("originalContentUrl") if provider.get("type") == "external" else None,
            filename=msg.get("fileName"), size_bytes=msg.get("fileSize"),
        ))
    elif kind == "sticker":
        sticker = f"{text(msg.get('packageId'))}/{text(msg.get('stickerId'))}"
        files.append(attachment("sticker", media_id=sticker))
    elif kind == "location":
        content = location(msg.get("latitude"), msg.get("longitude"), title=msg.get("title"),
                           address=msg.get("address"))
    elif kind != "text":
        content = rich(kind or "unknown", data=msg)
    return cx.received(
        key=key, sender=sender, channel_message_id=mid, occurred_at=ts, account_id=dest,
        text=text(msg.get("text")), attachments=files, rich=content,
        reply_to=text(msg.get("quotedMessageId")),
    )


def _postback(cx: Ctx, ev: dict[str, Any], dest: str | None) -> dict[str, Any]:
    key, sender, ts = _common(cx, ev)
    pb = as_dict(ev.get("postback"), "postback")
    params = pb["params"] if isinstance(pb.get("params"), dict) else None
    return cx.received(
        key=key, sender=sender, channel_message_id=key, occurred_at=ts, account_id=dest,
        rich=rich("postback", payload=pb.get("data"), data=params),
    )


ADAPTER = LineAdapter()
