"""Twilio Programmable Messaging webhooks: inbound SMS/MMS and WhatsApp, status callbacks.

Facts relied on (Twilio "Webhooks security" and "Twilio's request to your incoming message
webhook URL"; cross-checked with the ``twilio`` SDK's ``RequestValidator``):
- Requests are ``application/x-www-form-urlencoded``. ``X-Twilio-Signature`` is base64
  HMAC-SHA1 (key: the Auth Token) of the full URL Twilio requested, query string included,
  followed by every POST parameter name and value, sorted by name (a repeated name: its values
  sorted), with no separators. Twilio adds parameters without notice: sign over all received.
  Twilio may sign the URL with or without the default port: both are accepted.
- JSON bodies: the URL carries ``bodySHA256=<hex sha256 of the body>`` and the signature covers
  the URL alone.
- ``X-Twilio-Webhooks-Signature-Settings: key=…,algorithm=HMAC_SHA256`` selects HMAC-SHA256 (key:
  a SharedKey secret, listed in the account's secrets like an Auth Token).
- Inbound: ``MessageSid, AccountSid, MessagingServiceSid, From, To, Body, NumMedia,
  MediaUrl{N}, MediaContentType{N}``; WhatsApp adds ``WaId, ProfileName, ButtonText,
  ButtonPayload, Latitude, Longitude, Address, Label, OriginalRepliedMessageSid`` and prefixes
  addresses with ``whatsapp:``. No timestamp: the receipt time is the event time.
- Status callbacks: ``MessageSid, MessageStatus`` (queued, sending, sent, delivered,
  undelivered, failed, read, ...), ``ErrorCode``, ``To`` (the customer). Key: MessageSid (+status).
- The answer is TwiML; an empty ``<Response/>`` sends no reply.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from adapters.base import Account, Rejected, Reply, Request, Unmappable, hmac_matches
from adapters.channels._common import (
    KIB,
    BaseAdapter,
    attachment,
    e164,
    header,
    identity,
    json_object,
    location,
    mapping_errors,
    need,
    rich,
    text,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
STATUS = {"accepted": "queued", "scheduled": "queued", "queued": "queued", "sending": "sent",
          "sent": "sent", "delivered": "delivered", "read": "read", "undelivered":
          "undelivered", "failed": "failed", "canceled": "failed"}
INBOUND_STATUSES = {"received", "receiving"}


def _port_variants(url: str) -> list[str]:
    """The URL as given, without its port and with the scheme's default port."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return [url]
    bare = urlunsplit(parts._replace(netloc=_netloc(parts, host)))
    default = 443 if parts.scheme == "https" else 80
    ported = urlunsplit(parts._replace(netloc=_netloc(parts, f"{host}:{port or default}")))
    return list(dict.fromkeys([url, bare, ported]))


def _netloc(parts: Any, hostport: str) -> str:
    creds = parts.netloc.rpartition("@")[0]
    return f"{creds}@{hostport}" if creds else hostport


def _is_json(req: Request) -> bool:
    return (header(req, "content-type") or "").split(";")[0].strip().lower() == "application/json"


def _form(req: Request) -> list[tuple[str, str]]:
    try:
        return parse_qsl(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(
            req.body), errors="strict")
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected(400, f"malformed form body: {e}") from None


def _signed_string(url: str, pairs: list[tuple[str, str]]) -> str:
    by_name: dict[str, set[str]] = {}
    for name, value in pairs:
        by_name.setdefault(name, set()).add(value)
    return url + "".join(name + value for name in sorted(by_name)
                         for value in sorted(by_name[name]))


class TwilioAdapter(BaseAdapter):
    channel = "twilio"
    max_body_bytes = 64 * KIB  # form posts: Body <= 1600 chars, <= 10 media URLs

    def verify(self, req: Request, account: Account) -> None:
        given = header(req, SIGNATURE_HEADER)
        if not given:
            raise Rejected(401, f"missing {SIGNATURE_HEADER} header")
        algo = "sha1"
        for part in (header(req, SETTINGS_HEADER) or "").split(","):
            name, _, value = part.partition("=")
            if name.strip() == "algorithm" and value.strip():
                algo = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}.get(value.strip().upper(), "")
        if not algo:
            raise Rejected(403, f"unsupported signature algorithm in {SETTINGS_HEADER}")
        body_hash = parse_qs(urlsplit(req.url).query).get("bodySHA256")
        if body_hash:  # JSON body: the URL carries the body's hash, the signature the URL
            digest = hashlib.sha256(req.body).hexdigest()
            if not hmac.compare_digest(digest.encode(), body_hash[0].lower().encode()):
                raise Rejected(403, "bodySHA256 does not match the body")
            pairs: list[tuple[str, str]] = []
        else:
            pairs = _form(req)
        if not any(hmac_matches(account.secrets, _signed_string(url, pairs).encode(), given,
                                algo, encode="base64") for url in _port_variants(req.url)):
            raise Rejected(403, f"{SIGNATURE_HEADER} does not match under any auth token")

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        params = self._params(req)
        sid = text(params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid"))
        if not sid:
            raise Unmappable("no MessageSid: not a Twilio messaging webhook")
        status = (text(params.get("MessageStatus")) or "").lower()
        if status and status not in INBOUND_STATUSES:
            return [self._status(req, account, params, sid, status)]
        if not text(params.get("From")):
            raise Unmappable("inbound message without From")
        return [self._inbound(req, account, params, sid)]

    def ack(self, req: Request, events: Sequence[dict[str, Any]]) -> Reply:
        return Reply(200, EMPTY_TWIML, "text/xml")

    def _params(self, req: Request) -> dict[str, Any]:
        if _is_json(req):
            body = json_object(req.body)
            if not isinstance(body, dict):
                raise Unmappable("JSON body is not an object")
            return body
        params: dict[str, Any] = {}
        for name, value in _form(req):
            params.setdefault(name, value)  # first value wins; repeats are signed, not mapped
        return params

    def _inbound(self, req: Request, account: Account, p: dict[str, Any], sid: str) -> dict:
        channel, sender_addr = _address(need(p, "From"))
        phone = e164(sender_addr)
        if channel == "whatsapp":
            wa_id = text(p.get("WaId")) or (phone or sender_addr).lstrip("+")
            sender = identity(channel, wa_id, display_name=text(p.get("ProfileName")),
                              phone_e164=phone)
        else:
            sender = identity(channel, phone or sender_addr, phone_e164=phone)
        content = None
        if text(p.get("ButtonPayload")) or text(p.get("ButtonText")):
            content = rich("quick_reply", payload=p.get("ButtonPayload"),
                           title=p.get("ButtonText"))
        elif text(p.get("Latitude")) and text(p.get("Longitude")):
            content = location(text(p["Latitude"]), text(p["Longitude"]),
                               name=text(p.get("Label")), address=text(p.get("Address")))
        return self.ctx(req, account).received(
            key=sid, sender=sender, channel_message_id=sid, channel=channel,
            account_id=_address(text(p.get("To")) or "")[1] or None,
            text=text(p.get("Body")) or None, attachments=_media(p), rich=content,
            reply_to=text(p.get("OriginalRepliedMessageSid")),
        )

    def _status(self, req: Request, account: Account, p: dict[str, Any], sid: str,
                status: str) -> dict:
        channel, to = _address(text(p.get("To")) or "")
        if not to:
            raise Unmappable("status callback without To")
        phone = e164(to)
        id_ = (text(p.get("WaId")) or (phone or to).lstrip("+")) if channel == "whatsapp" \
            else (phone or to)
        return self.ctx(req, account).status(
            key=f"{sid}|{status}", recipient=identity(channel, id_, phone_e164=phone),
            channel_message_id=sid, status=STATUS.get(status, status), channel=channel,
            account_id=_address(text(p.get("From")) or "")[1] or None,
            error_code=text(p.get("ErrorCode")) or None,
            error_message=text(p.get("ErrorMessage")) or None,
        )


def _address(addr: str) -> tuple[str, str]:
    """('whatsapp', '+14155550100') from 'whatsapp:+14155550100'; ('sms', addr) without prefix."""
    prefix, sep, rest = addr.partition(":")
    if sep and prefix.isalpha():
        return prefix.lower(), rest
    return "sms", addr


def _media(p: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    try:
        count = int(text(p.get("NumMedia")) or 0)
    except ValueError:
        count = 0
    for i in range(min(count, 50)):
        url, mime = text(p.get(f"MediaUrl{i}")), text(p.get(f"MediaContentType{i}"))
        if not url:
            continue
        major = (mime or "").split("/")[0]
        kind = major if major in {"image", "video", "audio"} else "document"
        out.append(attachment(kind, url=url, mime_type=mime,
                              media_id=url.rstrip("/").rsplit("/", 1)[-1]))
    return out


ADAPTER = TwilioAdapter()
