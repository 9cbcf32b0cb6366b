"""WeChat Official Account message push (XML, plaintext mode).

Facts relied on (WeChat Official Accounts "Access overview" and "Receiving standard messages /
event pushes"; signature cross-checked with ``wechatpy.utils.check_signature``):
- Every request, the GET handshake included, carries ``signature, timestamp, nonce`` in the
  query: ``signature = sha1(''.join(sorted([token, timestamp, nonce])))`` in hex, with the Token
  configured in the OA console. The handshake adds ``echostr``, returned as the body.
- Messages are XML ``<xml>`` with ``ToUserName`` (the OA's original id: our account),
  ``FromUserName`` (the user's OpenID), ``CreateTime`` (unix s), ``MsgType``, ``MsgId`` (the
  idempotency key) and per type: ``text{Content}``, ``image{PicUrl, MediaId}``,
  ``voice{MediaId, Format, Recognition}``, ``video|shortvideo{MediaId, ThumbMediaId}``,
  ``location{Location_X (lat), Location_Y (lon), Scale, Label}``, ``link{Title, Description,
  Url}``.
- Events: ``MsgType=event, Event=…``: ``CLICK`` (menu button, ``EventKey``; keyed by
  FromUserName + CreateTime: events have no MsgId), ``TEMPLATESENDJOBFINISH`` (``MsgID``,
  ``Status: success | failed:user block | failed: system failed``: a delivery status);
  subscribe/unsubscribe/SCAN/LOCATION/VIEW are not customer messages.
- WeChat waits 5 s and tries 3 times; answering ``success`` (or an empty body) stops retries.
- Safe mode (``encrypt_type=aes``, AES-encrypted ``<Encrypt>``) is not supported: such requests
  verify but go to the dead letters.
"""

from __future__ import annotations

import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from adapters.base import Account, Rejected, Reply, Request, Unmappable
from adapters.channels._common import KIB, BaseAdapter, Ctx, attachment, identity, location, \
    mapping_errors, ms_from_seconds, rich

CHANNEL = "wechat"
SUCCESS = Reply(200, "success", "text/plain")
MEDIA = {"image": "image", "voice": "audio", "video": "video", "shortvideo": "video"}


def signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def _tokens(account: Account) -> list[str]:
    return [t for t in (account.verify_token, *account.secrets) if t]


class WeChatAdapter(BaseAdapter):
    channel = CHANNEL
    max_body_bytes = 64 * KIB  # one small XML message per push

    def handshake(self, req: Request, account: Account) -> Reply | None:
        if req.method.upper() != "GET":
            return None
        if "echostr" not in req.query:
            raise Rejected(400, "GET is only for the echostr handshake")
        self.verify(req, account)
        return Reply(200, req.query["echostr"], "text/plain")

    def verify(self, req: Request, account: Account) -> None:
        given = req.query.get("signature")
        if not given:
            raise Rejected(401, "missing signature query parameter")
        ts, nonce = req.query.get("timestamp", ""), req.query.get("nonce", "")
        if not any(hmac.compare_digest(signature(t, ts, nonce).encode(), given.lower().encode())
                   for t in _tokens(account)):
            raise Rejected(403, "signature does not match sha1(sorted(token, timestamp, nonce))")

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        fields = _xml_fields(req.body)
        if req.query.get("encrypt_type", "raw") != "raw" or "Encrypt" in fields:
            raise Unmappable("encrypted (safe mode) messages are not supported")
        if not fields.get("MsgType") or not fields.get("FromUserName"):
            raise Unmappable("not a WeChat message (no MsgType/FromUserName)")
        cx = self.ctx(req, account)
        if fields["MsgType"] == "event":
            return _event(cx, fields)
        return [_message(cx, fields)]

    def ack(self, req: Request, events: Sequence[dict[str, Any]]) -> Reply:
        return SUCCESS


def _xml_fields(body: bytes) -> dict[str, str]:
    """The ``<xml>`` root's children as {tag: text}. DTDs are refused (no entity expansion)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise Rejected(400, "XML with a DTD or entities is not accepted")
    try:
        root = ET.fromstring(body)
    except (ET.ParseError, ValueError, LookupError) as e:  # LookupError: unknown encoding
        raise Rejected(400, f"malformed XML: {e}") from None
    return {child.tag: (child.text or "").strip() for child in root}


def _base(cx: Ctx, f: dict[str, str]) -> dict[str, Any]:
    return {"sender": identity(CHANNEL, f["FromUserName"]),
            "account_id": f.get("ToUserName") or None,
            "occurred_at": ms_from_seconds(f.get("CreateTime"), cx.req.received_at_ms)}


def _message(cx: Ctx, f: dict[str, str]) -> dict[str, Any]:
    msg_id = f.get("MsgId")
    if not msg_id:
        raise Unmappable(f"{f['MsgType']} message without MsgId")
    kind, body, files, content = f["MsgType"], None, [], None
    if kind == "text":
        body = f.get("Content")
    elif kind in MEDIA:
        fmt = f.get("Format")
        files.append(attachment(MEDIA[kind], media_id=f.get("MediaId"), url=f.get("PicUrl"),
                                mime_type=f"audio/{fmt.lower()}" if fmt else None))
        body = f.get("Recognition") or None  # voice recognition, when enabled
    elif kind == "location":
        content = location(f.get("Location_X"), f.get("Location_Y"), title=f.get("Label"),
                           scale=f.get("Scale"))
    elif kind == "link":
        content = rich("link", payload=f.get("Url"), title=f.get("Title"),
                       data={"description": f.get("Description")})
    else:
        content = rich(kind, data=f)
    return cx.received(key=msg_id, channel_message_id=msg_id, text=body, attachments=files,
                       rich=content, **_base(cx, f))


def _event(cx: Ctx, f: dict[str, str]) -> list[dict[str, Any]]:
    event = f.get("Event", "").lower()
    if event == "click":
        key = f"{f['FromUserName']}|{f.get('CreateTime', '')}"
        return [cx.received(key=key, channel_message_id=f"event:{key}",
                            rich=rich("button", payload=f.get("EventKey")), **_base(cx, f))]
    if event == "templatesendjobfinish":
        msg_id, raw = f.get("MsgID") or f.get("MsgId"), f.get("Status", "")
        if not msg_id:
            raise Unmappable("TEMPLATESENDJOBFINISH without MsgID")
        status = "delivered" if raw == "success" else "failed"
        base = _base(cx, f)
        return [cx.status(key=f"{msg_id}|{status}", recipient=base["sender"],
                          channel_message_id=msg_id, status=status,
                          account_id=base["account_id"], occurred_at=base["occurred_at"],
                          error_message=None if status == "delivered" else raw)]
    return []  # subscribe, unsubscribe, SCAN, LOCATION, VIEW and others


ADAPTER = WeChatAdapter()
