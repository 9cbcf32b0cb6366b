"""Meta webhooks (WhatsApp Cloud API, Messenger, Instagram): handshake, signature, messaging.

Facts relied on (Meta Graph API "Webhooks" and Messenger Platform webhook reference):
- Handshake: ``GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``; answer the
  challenge as the body when the token is the one configured in the app dashboard.
- Every POST carries ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the raw body keyed by
  the App Secret.
- Body: ``{"object": …, "entry": [...]}``; several entries and several events per entry may be
  batched in one request. Messenger/Instagram events are ``entry[].messaging[]`` with
  ``sender.id`` (PSID / IGSID), ``recipient.id`` (page / IG account), ``timestamp`` in ms, and one
  of ``message`` (``mid``, ``text``, ``quick_reply.payload``, ``reply_to.mid``,
  ``attachments[{type, payload{url, …}}]``, ``is_echo`` for the business's own messages,
  ``is_deleted`` for unsends), ``postback`` (``title``, ``payload``, ``mid``), ``delivery``
  (``mids``, ``watermark``), ``read`` (Messenger: ``watermark``; Instagram: ``mid``).
  A delivery/read without message ids covers every message sent before ``watermark`` (ms); such
  a status carries ``channel_message_id = "watermark:<ms>"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from adapters.base import Account, Rejected, Reply, Request, Unmappable, hmac_matches, secret_equals
from adapters.channels._common import (
    MIB,
    BaseAdapter,
    Ctx,
    as_dict,
    as_list,
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

SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_BODY = 3 * MIB  # WhatsApp documents webhook payloads up to 3 MB; Meta batches entries


def handshake(req: Request, account: Account) -> Reply | None:
    """Answer ``hub.challenge`` when ``hub.verify_token`` is the configured token."""
    if req.method.upper() != "GET":
        return None
    if req.query.get("hub.mode") != "subscribe":
        raise Rejected(400, "GET is only for the hub.mode=subscribe handshake")
    tokens = [account.verify_token] if account.verify_token else []
    if not secret_equals(tokens, req.query.get("hub.verify_token")):
        raise Rejected(403, "hub.verify_token does not match the configured verify token")
    return Reply(200, req.query.get("hub.challenge", ""), "text/plain")


def verify(req: Request, account: Account) -> None:
    """X-Hub-Signature-256 over the raw body, under any App Secret of the account (rotation)."""
    given = header(req, SIGNATURE_HEADER)
    if not given:
        raise Rejected(401, f"missing {SIGNATURE_HEADER} header")
    algo, _, digest = given.strip().partition("=")
    if algo != "sha256" or not digest:
        raise Rejected(403, f"{SIGNATURE_HEADER} is not of the form sha256=<hex>")
    if not hmac_matches(account.secrets, req.body, digest.lower(), "sha256"):
        raise Rejected(403, f"{SIGNATURE_HEADER} does not match the body under any app secret")


def entries(req: Request, obj: str) -> list[dict[str, Any]]:
    """The ``entry`` list of a Meta webhook whose ``object`` is ``obj``."""
    body = json_object(req.body)
    if not isinstance(body, dict) or body.get("object") != obj:
        found = body.get("object") if isinstance(body, dict) else type(body).__name__
        raise Unmappable(f"not a Meta {obj!r} webhook (object={found!r})")
    if not isinstance(body.get("entry"), list):
        raise Unmappable("Meta webhook without an entry list")
    return [as_dict(e, "entry") for e in body["entry"]]


class MetaMessagingAdapter(BaseAdapter):
    """Messenger and Instagram: the same ``entry[].messaging[]`` shape under another object."""

    max_body_bytes = MAX_BODY

    def __init__(self, channel: str, obj: str) -> None:
        self.channel = channel
        self.obj = obj

    def handshake(self, req: Request, account: Account) -> Reply | None:
        return handshake(req, account)

    def verify(self, req: Request, account: Account) -> None:
        verify(req, account)

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        cx = self.ctx(req, account)
        return [ev for entry in entries(req, self.obj)
                for item in as_list(entry.get("messaging"), "entry.messaging")
                for ev in self._events(cx, as_dict(item, "messaging event"))]

    def _events(self, cx: Ctx, ev: dict[str, Any]) -> Iterator[dict[str, Any]]:
        user = need(as_dict(ev.get("sender"), "sender"), "id")
        page = text(as_dict(ev.get("recipient") or {}, "recipient").get("id"))
        ts = ms_from_ms(ev.get("timestamp"), cx.req.received_at_ms)
        who = identity(self.channel, user)
        if isinstance(ev.get("message"), dict):
            yield from self._message(cx, ev["message"], who, page, ts)
        elif isinstance(ev.get("postback"), dict):
            yield self._postback(cx, ev["postback"], who, page, ts)
        elif isinstance(ev.get("delivery"), dict):
            yield from self._statuses(cx, ev["delivery"], "delivered", who, page, ts)
        elif isinstance(ev.get("read"), dict):
            yield from self._statuses(cx, ev["read"], "read", who, page, ts)
        # reactions, referrals, opt-ins, policy notices...: not customer messages, skipped

    def _message(self, cx: Ctx, msg: dict[str, Any], who: dict[str, Any], page: str | None,
                 ts: int) -> Iterator[dict[str, Any]]:
        if msg.get("is_echo") or msg.get("is_deleted"):
            return  # our own message echoed back, or an unsend: not a new inbound message
        mid = need(msg, "mid")
        body = text(msg.get("text"))
        content = None
        if isinstance(msg.get("quick_reply"), dict):
            content = rich("quick_reply", payload=msg["quick_reply"].get("payload"), title=body)
        files = []
        for a in as_list(msg.get("attachments"), "message.attachments"):
            kind = text(as_dict(a, "attachment").get("type")) or "file"
            payload = a["payload"] if isinstance(a.get("payload"), dict) else {}
            if kind == "location" and isinstance(payload.get("coordinates"), dict):
                c = payload["coordinates"]
                content = location(c.get("lat"), c.get("long"), title=text(a.get("title")))
                continue
            if payload.get("sticker_id") is not None:
                kind = "sticker"
            files.append(attachment(kind, url=payload.get("url"),
                                    media_id=payload.get("attachment_id"),
                                    caption=a.get("title")))
        reply_to = msg.get("reply_to")
        yield cx.received(
            key=mid, sender=who, channel_message_id=mid, occurred_at=ts, account_id=page,
            text=body, attachments=files, rich=content,
            reply_to=text(reply_to.get("mid")) if isinstance(reply_to, dict) else None,
        )

    def _postback(self, cx: Ctx, pb: dict[str, Any], who: dict[str, Any], page: str | None,
                  ts: int) -> dict[str, Any]:
        mid = text(pb.get("mid")) or f"postback:{who['id']}:{ts}"
        title = text(pb.get("title"))
        data = {"referral": pb["referral"]} if isinstance(pb.get("referral"), dict) else None
        return cx.received(
            key=mid, sender=who, channel_message_id=mid, occurred_at=ts, account_id=page,
            text=title, rich=rich("postback", payload=pb.get("payload"), title=title, data=data),
        )

    def _statuses(self, cx: Ctx, st: dict[str, Any], status: str, who: dict[str, Any],
                  page: str | None, ts: int) -> Iterator[dict[str, Any]]:
        mids = [text(m) for m in as_list(st.get("mids"), "mids")]
        if text(st.get("mid")):
            mids.append(text(st["mid"]))
        if not mids:  # Messenger: everything sent before the watermark
            mark = text(st.get("watermark"))
            if mark is None:
                return
            mids = [f"watermark:{mark}"]
        for mid in filter(None, mids):
            # a watermark is only unique per user: key it by the user too
            key = f"{who['id']}|{mid}|{status}" if mid.startswith("watermark:") \
                else f"{mid}|{status}"
            yield cx.status(key=key, recipient=who, channel_message_id=mid,
                            status=status, occurred_at=ts, account_id=page)
