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
  So a signature older than a few minutes is never a genuine push: ``timestamp`` must be within
  ``options.max_signature_age_s`` (300 s by default) of the receipt time, either way; 0 lifts the
  bound (only for replays of recorded traffic, such as `parley demo`'s past day). Without it a
  signed (timestamp, nonce, signature) triple, seen once in a log, would sign any body forever.
- Safe mode (``encrypt_type=aes``; cross-checked with ``wechatpy.crypto.WeChatCrypto``): the body
  is ``<xml><ToUserName/><Encrypt>base64</Encrypt></xml>`` and the query adds ``msg_signature =
  sha1(''.join(sorted([token, timestamp, nonce, Encrypt])))``, which is what is verified. The
  ciphertext is AES-256-CBC (key = base64 of ``EncodingAESKey + "="``, IV = its first 16 bytes,
  PKCS#7 padding to 32 bytes) of ``16 random bytes | 4-byte big-endian length | XML | AppID``;
  the AppID must be the account's ``options.app_id``. Keys: ``options.encoding_aes_keys`` (the
  current one first, the previous one during a rotation; secrets: use ``{ env = ... }``).
  Compatible mode (plaintext fields beside ``Encrypt``) is read from the decrypted part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from adapters.base import Account, Rejected, Reply, Request, Unmappable
from adapters.channels._common import (
    KIB,
    BaseAdapter,
    Ctx,
    attachment,
    identity,
    location,
    mapping_errors,
    ms_from_seconds,
    rich,
)

CHANNEL = "wechat"
SUCCESS = Reply(200, "success", "text/plain")
MEDIA = {"image": "image", "voice": "audio", "video": "video", "shortvideo": "video"}
MAX_SIGNATURE_AGE_S = 300


def signature(token: str, timestamp: str, nonce: str, *more: str) -> str:
    """sha1 of the sorted, concatenated parts: ``signature``, or ``msg_signature`` with ``Encrypt``."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, *more])).encode()).hexdigest()


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
        ts, nonce = req.query.get("timestamp", ""), req.query.get("nonce", "")
        if _encrypted(req):
            given, name = req.query.get("msg_signature"), "msg_signature"
            extra: tuple[str, ...] = (_xml_fields(req.body).get("Encrypt", ""),)
        else:
            given, name, extra = req.query.get("signature"), "signature", ()
        if not given:
            raise Rejected(401, f"missing {name} query parameter")
        if not any(hmac.compare_digest(signature(t, ts, nonce, *extra).encode(), given.lower().encode())
                   for t in _tokens(account)):
            raise Rejected(403, f"{name} does not match sha1(sorted(token, timestamp, nonce"
                                f"{', Encrypt' if extra else ''}))")
        _fresh(ts, req.received_at_ms, account)

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        fields = _xml_fields(req.body)
        if "Encrypt" in fields:
            fields = _xml_fields(decrypt(fields["Encrypt"], account))
        elif _encrypted(req):
            raise Unmappable("encrypt_type=aes without an Encrypt element")
        if not fields.get("MsgType") or not fields.get("FromUserName"):
            raise Unmappable("not a WeChat message (no MsgType/FromUserName)")
        cx = self.ctx(req, account)
        if fields["MsgType"] == "event":
            return _event(cx, fields)
        return [_message(cx, fields)]

    def ack(self, req: Request, events: Sequence[dict[str, Any]]) -> Reply:
        return SUCCESS


def _encrypted(req: Request) -> bool:
    return req.query.get("encrypt_type", "raw").lower() == "aes"


def _fresh(timestamp: str, received_at_ms: int, account: Account) -> None:
    """Refuse a signature whose timestamp is not within the account's bound of the receipt time."""
    bound = account.options.get("max_signature_age_s", MAX_SIGNATURE_AGE_S)
    try:
        ts_ms = int(timestamp) * 1000
    except ValueError:
        raise Rejected(403, "timestamp is not unix seconds") from None
    if bound and abs(received_at_ms - ts_ms) > float(bound) * 1000:
        raise Rejected(403, f"timestamp is more than {bound} s from the receipt time: a replayed signature")


def decrypt(encrypted: str, account: Account) -> bytes:
    """The XML inside a safe-mode ``Encrypt`` (``Unmappable`` when no configured key opens it)."""
    keys = [k for k in account.options.get("encoding_aes_keys") or () if isinstance(k, str) and k]
    if not keys:
        raise Unmappable("safe-mode message, but the account has no options.encoding_aes_keys")
    try:
        data = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise Unmappable("Encrypt is not base64") from None
    app_id = str(account.options.get("app_id") or "")
    for key in keys:
        xml = _open(data, key, app_id)
        if xml is not None:
            return xml
    raise Unmappable("Encrypt does not decrypt to this account's AppID under any configured EncodingAESKey")


def _open(data: bytes, encoding_aes_key: str, app_id: str) -> bytes | None:
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:  # pragma: no cover - the dependency is declared
        raise Unmappable("safe mode needs the cryptography package") from None
    try:
        key = base64.b64decode(encoding_aes_key + "=")
    except (binascii.Error, ValueError):
        return None
    if len(key) != 32 or not data or len(data) % 16:
        return None
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= 32 or len(plain) < 20 + pad:
        return None
    content = plain[16:-pad]
    length = int.from_bytes(content[:4], "big")
    if 4 + length > len(content):
        return None
    if app_id and content[4 + length:].decode("utf-8", "replace") != app_id:
        return None
    return content[4:4 + length]


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
