"""Inbound e-mail through SendGrid Inbound Parse (``multipart/form-data``).

Facts relied on (Twilio SendGrid "Inbound Email Parse Webhook" and "Securing your Inbound Parse
webhooks"):
- One POST per e-mail, ``multipart/form-data``: ``from, to, cc, subject, text, html, headers``
  (the raw header block), ``envelope`` (JSON ``{to: [...], from}``), ``charsets`` (JSON: the
  charset of each field), ``attachments`` (count), ``attachment-info`` (JSON) and file parts
  ``attachment1..N``; with "POST the raw, full MIME message" the body is in ``email`` instead of
  ``text/html/headers/attachmentN``. The total message is capped at 30 MB.
- Nothing is signed by default: the documented protection is basic auth in the URL, checked
  here (``Authorization: Basic``; the password, or ``user:password``, is one of the account's
  secrets; the raw record redacts that header). A secret in the query string is not offered: the
  query is stored verbatim in the raw record. Signed (ECDSA) and OAuth security policies are
  not verified here.
- A 2xx stops retries; 5xx is retried for 3 days.
The account: the route's if it is among the recipients (the SMTP envelope's ``to``, else the
To/Cc fields), else the first recipient (see the ingress's account check).
Mapping: ``Message-Id`` is the idempotency key (a SHA-256 of the body when missing); the subject
is carried for threading by subject, ``In-Reply-To`` (else the last ``References`` id) as
``reply_to_channel_message_id``. Attachment bytes stay in the RawRequest record only: each
attachment is a reference ``raw:<raw_event_id>#<part>`` with its mime type, size and SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import re
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser, HeaderParser
from email.utils import collapse_rfc2231_value, getaddresses, parseaddr
from typing import Any

from adapters.base import Account, Rejected, Request, Unmappable, secret_equals
from adapters.channels._common import MIB, BaseAdapter, attachment, header, identity, mapping_errors

CHANNEL = "email"
_MSG_ID = re.compile(r"<[^<>\s]+>")
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)


class Part:
    """One field of the multipart form."""

    def __init__(self, msg: MIMEPart) -> None:
        name = msg.get_param("name", header="content-disposition")
        self.name = collapse_rfc2231_value(name) if name else ""  # an RFC 2231 value is a tuple
        self.filename = msg.get_filename()
        self.content_type = msg.get_content_type() if msg.get("content-type") else None
        self.data = _payload(msg)


class EmailAdapter(BaseAdapter):
    channel = CHANNEL
    max_body_bytes = 30 * MIB  # SendGrid's cap on a whole message with attachments

    def verify(self, req: Request, account: Account) -> None:
        auth = header(req, "authorization")
        if not auth:
            raise Rejected(401, "missing basic auth (Authorization header)")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise Rejected(403, "Authorization: Basic value is not base64") from None
            if secret_equals(account.secrets, pair) or \
                    secret_equals(account.secrets, pair.partition(":")[2]):
                return
        raise Rejected(403, "credentials do not match any configured secret")

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        parts = _form(req)
        fields = _texts(parts)
        raw = next((p.data for p in parts if p.name == "email" and p.data), None)
        if raw is not None:
            mime = BytesParser(policy=policy.default).parsebytes(raw)
            head, body, files = mime, _mime_text(mime), _mime_files(req, mime)
        elif "headers" in fields or "from" in fields:
            head = HeaderParser(policy=policy.default).parsestr(fields.get("headers", ""))
            body = fields.get("text") or _html_text(fields.get("html"))
            files = [_ref(req, p.name, p.filename, p.content_type, p.data)
                     for p in parts if p.filename is not None]
        else:
            raise Unmappable("not an Inbound Parse post (no email, headers or from field)")
        return [self._event(req, account, fields, head, body, files)]

    def _event(self, req: Request, account: Account, fields: dict[str, str], head: Any,
               body: str | None, files: list[dict[str, Any]]) -> dict[str, Any]:
        name, addr = parseaddr(fields.get("from") or str(head.get("from") or ""))
        if "@" not in addr:
            raise Unmappable("no sender address in from")
        msg_id = _ids(head.get("message-id"))
        key = msg_id[0] if msg_id else "sha256:" + hashlib.sha256(req.body).hexdigest()
        refs = _ids(head.get("references"))
        reply = _ids(head.get("in-reply-to"))[:1] or refs[-1:]
        subject = fields.get("subject") or str(head.get("subject") or "") or None
        return self.ctx(req, account).received(
            key=key, channel_message_id=key, account_id=_recipient(account, fields, head),
            sender=identity(CHANNEL, addr.lower(), display_name=name or None, email=addr.lower()),
            text=body or None, subject=subject, attachments=files,
            reply_to=reply[0] if reply else None, references=refs,
            occurred_at=_sent_at(head.get("date")),
        )


def _recipient(account: Account, fields: dict[str, str], head: Any) -> str | None:
    """The account the e-mail was sent to: the route's when it is among the recipients (SMTP
    envelope first, else the To and Cc fields), else the first recipient (the ingress then files
    it under that address's account, or refuses it); None when no recipient is given."""
    try:
        envelope = json.loads(fields.get("envelope") or "{}")
    except ValueError:
        envelope = {}
    to = envelope.get("to") if isinstance(envelope, dict) else None
    addresses = [a for a in to if isinstance(a, str)] if isinstance(to, list) else []
    if not addresses:
        listed = [fields.get("to", ""), fields.get("cc", ""), str(head.get("to") or ""), str(head.get("cc") or "")]
        addresses = [addr for _, addr in getaddresses(listed) if "@" in addr]
    addresses = [a.strip().lower() for a in addresses if a.strip()]
    if not addresses or any(account.matches(a) for a in addresses):
        return None
    return addresses[0]


def _sent_at(date: Any) -> int | None:
    """The Date header in epoch ms: the time the sender's system says the mail was sent
    (KPIS.md: event time is what the channel says); None (receipt time) if absent or bad."""
    from email.utils import parsedate_to_datetime

    try:
        sent = parsedate_to_datetime(str(date)) if date else None
    except (TypeError, ValueError, IndexError):
        return None
    if sent is None or sent.tzinfo is None:
        return None
    return int(sent.timestamp() * 1000)


def _form(req: Request) -> list[Part]:
    ctype = header(req, "content-type") or ""
    if not ctype.lower().startswith("multipart/form-data") or "boundary=" not in ctype.lower():
        raise Rejected(400, "expected multipart/form-data with a boundary")
    try:
        prefix = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise Rejected(400, "Content-Type header is not latin-1") from None
    msg = BytesParser(policy=policy.HTTP).parsebytes(prefix + req.body)
    if not msg.is_multipart() or not msg.get_payload():
        raise Rejected(400, "malformed multipart body (boundary not found)")
    return [Part(p) for p in msg.iter_parts()]


def _texts(parts: list[Part]) -> dict[str, str]:
    """Non-file fields decoded with the charsets SendGrid declares for them."""
    try:
        charsets = json.loads(next((p.data for p in parts if p.name == "charsets"), b"{}"))
    except ValueError:
        charsets = {}
    charsets = charsets if isinstance(charsets, dict) else {}
    out: dict[str, str] = {}
    for p in parts:
        if p.filename is None and p.name != "email":
            out[p.name] = _decode(p.data, charsets.get(p.name))
    return out


def _decode(data: bytes, charset: Any) -> str:
    try:
        return data.decode(charset if isinstance(charset, str) else "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _ids(value: Any) -> list[str]:
    return _MSG_ID.findall(str(value)) if value else []


def _html_text(markup: str | None) -> str | None:
    if not markup:
        return None
    return re.sub(r"\s+", " ", html.unescape(_TAGS.sub(" ", markup))).strip() or None


def _ref(req: Request, part: str, filename: str | None, mime: str | None,
         data: bytes) -> dict[str, Any]:
    major = (mime or "").split("/")[0]
    return attachment(major if major in {"image", "video", "audio"} else "document",
                      media_id=f"raw:{req.raw_event_id}#{part}", mime_type=mime,
                      size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                      filename=filename)


def _mime_text(mime: EmailMessage) -> str | None:
    part = mime.get_body(preferencelist=("plain", "html"))
    if part is None:
        return None
    content = part.get_content()
    return _html_text(content) if part.get_content_subtype() == "html" else content


def _mime_files(req: Request, mime: EmailMessage) -> list[dict[str, Any]]:
    if not mime.is_multipart():
        return []
    return [_ref(req, f"email/{i}", p.get_filename(), p.get_content_type(), _payload(p))
            for i, p in enumerate(mime.iter_attachments(), 1)]


def _payload(part: MIMEPart) -> bytes:
    """A leaf part's body, transfer-decoded (a multipart's, which has none of its own: empty)."""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


ADAPTER = EmailAdapter()
