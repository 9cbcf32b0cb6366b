"""Render the synthetic day's steps as the HTTP requests the providers and agents' clients send.

``render(step, ctx)`` -> ``HttpRequest`` (method, path with query, headers, body, what answer is
expected), or ``None`` for a step it does not render yet (see ``SKIPPED``).

- Customer messages, redeliveries and receipts: ``/webhooks/<adapter>/<account_id>``, in each
  channel's real payload shape, signed the channel's way with the account's current secret from
  the accounts file the ingress loads (``adapters/accounts.py``). The payload's own timestamp
  carries the simulated event time.
- Agents' presence, agents' and bots' replies, resolutions, transfers, identity links and
  merges, and the CRM's customer context: the agent API (``adapters/agent_api.py``), with
  ``occurred_at`` = the simulated time and the thread and customer ids the pipeline assigned.
- Bad requests are built from a real message and then broken (wrong or missing signature,
  truncated JSON, a body over the adapter's limit, an account nobody configured).

Every provider id (wamid, mid, update_id, webhookEventId, MsgId, Message-Id...) derives from the
scenario's namespace (tenant, day, seed, scale) and the step, so a redelivery is byte-identical,
a rerun of the same day is recognised downstream, and another day never collides with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from adapters.accounts import Accounts
from adapters.base import Account
from adapters.channels import Registry
from parley.app.synthetic.scenario import (
    BadRequest,
    Context,
    Handshake,
    Inbound,
    Link,
    Merge,
    Presence,
    Receipt,
    Redelivery,
    Reply,
    Resolve,
    Scenario,
    Step,
    Transfer,
)

# Channels whose adapter keeps the payload's timestamp as the event time: all the day's channels
# (e-mail from its Date header; web chat from the SDK's sent_at, as the demo account lifts the
# 24 h bound with options.max_client_skew_s = 0).
EVENT_TIME_FROM_PAYLOAD = frozenset({"whatsapp", "messenger", "instagram", "telegram", "line",
                                     "viber", "wechat", "rbm", "email", "webchat"})

BAD_EXPECT = {"bad_signature": frozenset({401, 403}), "missing_signature": frozenset({401}),
              "malformed_json": frozenset({400}), "oversize": frozenset({413}),
              "unknown_account": frozenset({404})}
OK = frozenset(range(200, 300))
UNKNOWN_ACCOUNT_ID = "999000111222333"
WRONG_SECRET = "not-the-configured-secret"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # with its query string
    headers: Mapping[str, str]
    body: bytes
    label: str  # what the driver counts it under: the channel, or "agent_api"
    expect: frozenset[int] = OK
    expect_body: bytes | None = None  # handshakes: the challenge echoed back


@dataclass
class RenderContext:
    """What rendering needs besides the step: the accounts, the agent token, a namespace."""

    scenario: Scenario
    accounts: Accounts
    agent_token: str
    registry: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        s = self.scenario
        self.tenant = s.tenant
        self.ns = f"{s.tenant}:{s.day.isoformat()}:{s.seed}:{s.scale:g}"
        self._accounts: dict[str, Account] = {}
        for a in self.accounts:
            if a.tenant_id == s.tenant:
                self._accounts.setdefault(a.channel, a)

    def account(self, channel: str) -> Account:
        try:
            return self._accounts[channel]
        except KeyError:
            raise LookupError(f"no {channel} account for tenant {self.tenant!r} in the accounts "
                              "file") from None

    def token(self, *parts: object, n: int = 16) -> str:
        """A deterministic url-safe id of ``n`` bytes from the namespace and ``parts``."""
        digest = hashlib.sha256("\x1f".join(map(str, (self.ns, *parts))).encode()).digest()
        return base64.urlsafe_b64encode(digest[:n]).decode().rstrip("=")

    def integer(self, *parts: object, digits: int = 18) -> int:
        digest = hashlib.sha256("\x1f".join(map(str, (self.ns, *parts))).encode()).digest()
        return 10 ** (digits - 1) + int.from_bytes(digest[:8], "big") % (9 * 10 ** (digits - 1))

    def limit(self, channel: str) -> int:
        return self.registry.get(channel).max_body_bytes


def render(step: Step, cx: RenderContext) -> HttpRequest | None:
    """The request for ``step`` (None: a handshake the account cannot answer)."""
    if isinstance(step, Redelivery):
        return inbound(step.original, cx, redelivery=True)
    for kind, fn in RENDERERS.items():
        if isinstance(step, kind):
            return fn(step, cx)
    raise TypeError(f"no rendering for {type(step).__name__}")


# --- customer messages ------------------------------------------------------------------------------

def inbound(m: Inbound, cx: RenderContext, *, redelivery: bool = False) -> HttpRequest:
    account = cx.account(m.channel)
    body, extra = PAYLOADS[m.channel](m, cx, account, redelivery)
    return signed(m.channel, account, body, extra)


def _path(channel: str, account_id: str, query: Mapping[str, str] | None = None) -> str:
    path = f"/webhooks/{channel}/{quote(account_id, safe='@+:.-_')}"
    return f"{path}?{urlencode(query)}" if query else path


def signed(channel: str, account: Account, body: bytes, extra: Mapping[str, str] | None = None,
           *, secret: str | None = None, account_id: str | None = None) -> HttpRequest:
    """A POST of ``body`` to the account's route, signed as the channel signs it."""
    key = secret if secret is not None else _secret(account)
    headers = {"Content-Type": "application/json", **(extra or {})}
    query: dict[str, str] = {}
    SIGNERS[channel](key, body, headers, query)
    return HttpRequest("POST", _path(channel, account_id or account.account_id, query), headers,
                       body, channel)


def _secret(account: Account) -> str:
    return (account.secrets[0] if account.secrets else account.verify_token) or ""


def _json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _secs(ms: int) -> int:
    return ms // 1000


def _rfc3339(ms: int, micro: int = 0) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{micro:06d}Z"


Payload = tuple[bytes, dict[str, str]]


def _whatsapp(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
    c = m.customer
    msg: dict[str, Any] = {"from": c.handle("whatsapp"), "id": wamid(cx, "in", m.number),
                           "timestamp": str(_secs(m.at_ms))}
    if m.image:
        msg |= {"type": "image", "image": {"caption": m.text, "mime_type": "image/jpeg",
                                           "sha256": cx.token("sha", m.number, n=32),
                                           "id": str(cx.integer("media", m.number, digits=16))}}
    else:
        msg |= {"type": "text", "text": {"body": m.text}}
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "33644600100", "phone_number_id": a.account_id},
             "contacts": [{"profile": {"name": c.name}, "wa_id": c.handle("whatsapp")}],
             "messages": [msg]}
    return _whatsapp_doc(a, value), {}


def _whatsapp_doc(a: Account, value: dict[str, Any]) -> bytes:
    return _json({"object": "whatsapp_business_account",
                  "entry": [{"id": "102290129340398",
                             "changes": [{"value": value, "field": "messages"}]}]})


def _meta_messaging(obj: str) -> Callable[[Inbound, RenderContext, Account, bool], Payload]:
    def payload(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
        message: dict[str, Any] = {"mid": mid(cx, m.channel, "in", m.number), "text": m.text}
        if m.image:
            message["attachments"] = [{"type": "image", "payload": {
                "url": f"https://scontent.xx.fbcdn.net/v/t1.15752-9/{cx.token('img', m.number)}.jpg"}}]
        event = {"sender": {"id": m.customer.handle(m.channel)}, "recipient": {"id": a.account_id},
                 "timestamp": m.at_ms, "message": message}
        return _json({"object": obj, "entry": [{"id": a.account_id, "time": m.at_ms,
                                                "messaging": [event]}]}), {}
    return payload


def _telegram(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
    c = m.customer
    user_id = int(c.handle("telegram"))
    first, _, last = c.name.partition(" ")
    msg: dict[str, Any] = {
        "message_id": m.number, "date": _secs(m.at_ms),
        "from": {"id": user_id, "is_bot": False, "first_name": first, "last_name": last,
                 "language_code": c.language},
        "chat": {"id": user_id, "first_name": first, "last_name": last, "type": "private"},
    }
    if m.image:
        file_id = "AgACAgQAAxkBAAI" + cx.token("tg-photo", m.number, n=24)
        msg["photo"] = [{"file_id": file_id + s, "file_unique_id": cx.token("u", m.number, s, n=9),
                         "file_size": size, "width": w, "height": h}
                        for s, size, w, h in (("s", 1310, 90, 67), ("m", 20123, 320, 240),
                                              ("x", 98412, 1280, 960))]
        msg["caption"] = m.text
    else:
        msg["text"] = m.text
    return _json({"update_id": 700_000_000 + m.number, "message": msg}), {}


def _line(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
    message: dict[str, Any] = {"id": str(cx.integer("line-msg", m.number)),
                               "quoteToken": cx.token("quote", m.number, n=48)}
    if m.image:
        message |= {"type": "image", "contentProvider": {"type": "line"}}
    else:
        message |= {"type": "text", "text": m.text}
    event = {"type": "message", "message": message,
             "webhookEventId": ulid(cx, "line-event", m.number),
             "deliveryContext": {"isRedelivery": redelivery}, "timestamp": m.at_ms,
             "source": {"type": "user", "userId": m.customer.handle("line")},
             "replyToken": cx.token("reply", m.number, n=16).replace("-", "a"), "mode": "active"}
    return _json({"destination": a.account_id, "events": [event]}), {}


def _viber(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
    c = m.customer
    doc = {"event": "message", "timestamp": m.at_ms, "chat_hostname": "SN-CHAT-07_",
           "message_token": viber_token(cx, "in", m.number),
           "sender": {"id": c.handle("viber"), "name": c.name, "language": c.language,
                      "country": "GB" if c.language == "en" else "FR", "api_version": 10},
           "message": {"type": "text", "text": m.text}, "silent": False}
    return _json(doc), {}


def _wechat(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
    xml = ("<xml>"
           f"<ToUserName><![CDATA[{a.account_id}]]></ToUserName>"
           f"<FromUserName><![CDATA[{m.customer.handle('wechat')}]]></FromUserName>"
           f"<CreateTime>{_secs(m.at_ms)}</CreateTime>"
           "<MsgType><![CDATA[text]]></MsgType>"
           f"<Content><![CDATA[{m.text}]]></Content>"
           f"<MsgId>{cx.integer('wechat-msg', m.number, digits=19)}</MsgId>"
           "</xml>")
    return xml.encode(), {"Content-Type": "text/xml"}


def _rbm(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
    inner = {"senderPhoneNumber": m.customer.phone, "messageId": rbm_id(cx, "in", m.number),
             "sendTime": _rfc3339(m.at_ms), "text": m.text, "agentId": a.account_id}
    return _rbm_push(cx, a, inner, m.at_ms, m.number), {}


def _rbm_push(cx: RenderContext, a: Account, inner: dict[str, Any], at_ms: int,
              n: object) -> bytes:
    data = base64.b64encode(_json(inner)).decode()
    return _json({"message": {"data": data, "messageId": str(cx.integer("pubsub", n, digits=16)),
                              "publishTime": _rfc3339(at_ms, 480_000),
                              "attributes": {"product": "RBM",
                                             "event_type": "EVENT" if "eventType" in inner
                                             else "MESSAGE"}},
                  "subscription": "projects/rbm-acme-support/subscriptions/rbm-acme-support"})


def _email(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
    c = m.customer
    domain = c.email.partition("@")[2]
    when = datetime.fromtimestamp(m.at_ms / 1000, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    head = [f"Received: from mail.{domain} by mx.sendgrid.net; {when}",
            f"Message-ID: {email_id(cx, m.number, domain)}", f"Date: {when}",
            f"From: {c.name} <{c.email}>", f"To: Acme Support <{a.account_id}>",
            f"Subject: {m.subject or ''}", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=UTF-8"]
    if m.subject and m.subject.startswith("Re:") and m.reply_to:
        previous = email_id(cx, m.reply_to, domain)
        head[2:2] = [f"In-Reply-To: {previous}", f"References: {previous}"]
    fields = [("headers", "\n".join(head) + "\n"), ("dkim", f"{{@{domain} : pass}}"),
              ("to", f"Acme Support <{a.account_id}>"), ("from", f"{c.name} <{c.email}>"),
              ("text", m.text + "\n"), ("sender_ip", "203.0.113.25"), ("subject", m.subject or ""),
              ("envelope", json.dumps({"to": [a.account_id], "from": c.email})),
              ("attachments", "0"), ("charsets", json.dumps(
                  {"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8", "text": "UTF-8"})),
              ("SPF", "pass")]
    boundary = "xYzZY" + cx.token("boundary", m.number, n=12)
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode() + b"\r\n" for name, value in fields) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                  "User-Agent": "Sendlib/1.0 demo"}


def _webchat(m: Inbound, cx: RenderContext, a: Account, redelivery: bool) -> Payload:
    c = m.customer
    doc: dict[str, Any] = {"type": "message", "message_id": f"m-{cx.token('web', m.number, n=9)}",
                           "visitor_id": c.handle("webchat"), "text": m.text,
                           "sent_at": m.at_ms, "display_name": c.name.partition(" ")[0]}
    if m.image:
        doc["attachments"] = [{"kind": "image", "mime_type": "image/jpeg", "size_bytes": 182_344,
                               "url": f"https://cdn.acme.example/u/{cx.token('img', m.number)}.jpg"}]
    keys = a.options.get("user_token_secrets") or []
    if c.logged_in and keys:
        doc["user_token"] = jwt_hs256({"sub": f"acme-user-{c.key}", "email": c.email,
                                       "name": c.name}, keys[0])
    return _json(doc), {}


PAYLOADS: dict[str, Callable[[Inbound, RenderContext, Account, bool], Payload]] = {
    "whatsapp": _whatsapp, "messenger": _meta_messaging("page"),
    "instagram": _meta_messaging("instagram"), "telegram": _telegram, "line": _line,
    "viber": _viber, "wechat": _wechat, "rbm": _rbm, "email": _email, "webchat": _webchat,
}


# --- signatures ---------------------------------------------------------------------------------

def _hmac(key: str, data: bytes, digest: str) -> bytes:
    return hmac.new(key.encode(), data, digest).digest()


def _sign_meta(key: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> None:
    headers["X-Hub-Signature-256"] = "sha256=" + _hmac(key, body, "sha256").hex()


def _sign_telegram(key: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> None:
    headers["X-Telegram-Bot-Api-Secret-Token"] = key


def _sign_line(key: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> None:
    headers["x-line-signature"] = base64.b64encode(_hmac(key, body, "sha256")).decode()


def _sign_viber(key: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> None:
    headers["X-Viber-Content-Signature"] = _hmac(key, body, "sha256").hex()


def _sign_wechat(key: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> None:
    # WeChat signs (token, timestamp, nonce) in the query, not the body
    nonce = str(int.from_bytes(hashlib.sha256(body).digest()[:4], "big"))
    ts = _wechat_ts(body)
    query |= {"signature": wechat_signature(key, ts, nonce), "timestamp": ts, "nonce": nonce,
              "openid": _xml_text(body, "FromUserName")}


def _sign_rbm(key: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> None:
    try:
        data = base64.b64decode(json.loads(body)["message"]["data"])
    except (ValueError, KeyError, TypeError):
        data = body  # a deliberately broken body: sign something, it is refused anyway
    headers["X-Goog-Signature"] = base64.b64encode(_hmac(key, data, "sha512")).decode()


def _sign_email(key: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> None:
    headers["Authorization"] = "Basic " + base64.b64encode(f"sendgrid:{key}".encode()).decode()


def _sign_webchat(key: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> None:
    headers["Authorization"] = f"Bearer {key}"


SIGNERS: dict[str, Callable[[str, bytes, dict[str, str], dict[str, str]], None]] = {
    "whatsapp": _sign_meta, "messenger": _sign_meta, "instagram": _sign_meta,
    "telegram": _sign_telegram, "line": _sign_line, "viber": _sign_viber,
    "wechat": _sign_wechat, "rbm": _sign_rbm, "email": _sign_email, "webchat": _sign_webchat,
}
SIGNATURE_HEADERS = {"whatsapp": "X-Hub-Signature-256", "messenger": "X-Hub-Signature-256",
                     "instagram": "X-Hub-Signature-256", "telegram": "X-Telegram-Bot-Api-Secret-Token",
                     "line": "x-line-signature", "viber": "X-Viber-Content-Signature",
                     "rbm": "X-Goog-Signature", "email": "Authorization",
                     "webchat": "Authorization"}


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def _xml_text(body: bytes, tag: str) -> str:
    text = body.decode("utf-8", "replace")
    start = text.find(f"<{tag}>")
    end = text.find(f"</{tag}>")
    value = text[start + len(tag) + 2:end] if start >= 0 and end > start else ""
    return value.removeprefix("<![CDATA[").removesuffix("]]>")


def _wechat_ts(body: bytes) -> str:
    return _xml_text(body, "CreateTime") or "0"


def jwt_hs256(claims: Mapping[str, Any], key: str) -> str:
    """A compact HS256 JWT (what the business's backend gives a logged-in web chat user)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    signing_input = b64(_json({"alg": "HS256", "typ": "JWT"})) + "." + b64(_json(dict(claims)))
    return signing_input + "." + b64(_hmac(key, signing_input.encode(), "sha256"))


# --- provider ids -----------------------------------------------------------------------------------

def wamid(cx: RenderContext, direction: str, n: int) -> str:
    return "wamid.HBgL" + cx.token("wamid", direction, n, n=27)


def mid(cx: RenderContext, channel: str, direction: str, n: int) -> str:
    prefix = "m_" if channel == "messenger" else "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj"
    return prefix + cx.token("mid", channel, direction, n, n=30)


def viber_token(cx: RenderContext, direction: str, n: int) -> int:
    return cx.integer("viber", direction, n, digits=19)


def rbm_id(cx: RenderContext, direction: str, n: int) -> str:
    h = hashlib.sha256(f"{cx.ns}\x1frbm\x1f{direction}\x1f{n}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}".upper()


def email_id(cx: RenderContext, n: int, domain: str) -> str:
    return f"<{cx.token('email', n, n=15)}@mail.{domain}>"


def ulid(cx: RenderContext, *parts: object) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = int.from_bytes(hashlib.sha256("\x1f".join(map(str, (cx.ns, *parts))).encode())
                           .digest()[:17], "big")
    return "01" + "".join(alphabet[(value >> (5 * i)) & 31] for i in range(24))


def outbound_channel_id(r: Reply, cx: RenderContext) -> str | None:
    """The provider's id of a reply (so its receipts match it), where the channel has one."""
    return {"whatsapp": lambda: wamid(cx, "out", r.number),
            "messenger": lambda: mid(cx, "messenger", "out", r.number),
            "instagram": lambda: mid(cx, "instagram", "out", r.number),
            "viber": lambda: str(viber_token(cx, "out", r.number)),
            "rbm": lambda: rbm_id(cx, "out", r.number)}.get(r.channel, lambda: None)()


def reply_message_id(r: Reply, cx: RenderContext) -> str:
    return f"out-{cx.token('reply', r.number, n=12)}"


# --- receipts -----------------------------------------------------------------------------------

def receipt(st: Receipt, cx: RenderContext) -> HttpRequest:
    r, who = st.reply, st.reply.recipient["id"]
    a = cx.account(r.channel)
    if r.channel == "whatsapp":
        status = {"id": outbound_channel_id(r, cx), "status": st.status,
                  "timestamp": str(_secs(st.at_ms)), "recipient_id": who,
                  "conversation": {"id": cx.token("wa-conv", r.thread_id, n=16),
                                   "origin": {"type": "service"}},
                  "pricing": {"billable": False, "pricing_model": "PMP", "category": "service"}}
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": "33644600100",
                              "phone_number_id": a.account_id}, "statuses": [status]}
        body = _whatsapp_doc(a, value)
    elif r.channel == "messenger":
        key = "delivery" if st.status == "delivered" else "read"
        detail: dict[str, Any] = {"watermark": st.at_ms}
        if key == "delivery":
            detail["mids"] = [outbound_channel_id(r, cx)]
        event = {"sender": {"id": who}, "recipient": {"id": a.account_id},
                 "timestamp": st.at_ms, key: detail}
        body = _json({"object": "page", "entry": [{"id": a.account_id, "time": st.at_ms,
                                                   "messaging": [event]}]})
    elif r.channel == "viber":
        body = _json({"event": st.status, "timestamp": st.at_ms, "chat_hostname": "SN-CHAT-07_",
                      "message_token": viber_token(cx, "out", r.number),
                      "user_id": who})
    elif r.channel == "rbm":
        inner = {"senderPhoneNumber": r.recipient.get("phone_e164") or who,
                 "eventType": st.status.upper(),
                 "eventId": cx.token("rbm-ev", r.number, st.status),
                 "messageId": outbound_channel_id(r, cx), "sendTime": _rfc3339(st.at_ms),
                 "agentId": a.account_id}
        body = _rbm_push(cx, a, inner, st.at_ms, f"{r.number}-{st.status}")
    elif r.channel == "webchat":
        body = _json({"type": "status", "message_id": reply_message_id(r, cx),
                      "visitor_id": who, "status": st.status, "at": st.at_ms})
    else:
        raise ValueError(f"no receipts on {r.channel}")
    return signed(r.channel, a, body)


# --- handshakes -----------------------------------------------------------------------------------

def handshake(h: Handshake, cx: RenderContext) -> HttpRequest | None:
    a = cx.account(h.channel)
    expect_body = h.challenge.encode()
    if h.channel in ("whatsapp", "messenger", "instagram"):
        if not a.verify_token:
            return None
        q = {"hub.mode": "subscribe", "hub.verify_token": a.verify_token,
             "hub.challenge": h.challenge}
        return HttpRequest("GET", _path(h.channel, a.account_id, q), {}, b"", h.channel,
                           expect_body=expect_body)
    if h.channel == "wechat":
        ts, nonce = str(_secs(h.at_ms)), str(cx.integer("nonce", h.seq, digits=9))
        q = {"signature": wechat_signature(_secret(a), ts, nonce), "timestamp": ts,
             "nonce": nonce, "echostr": h.challenge}
        return HttpRequest("GET", _path(h.channel, a.account_id, q), {}, b"", h.channel,
                           expect_body=expect_body)
    if h.channel == "rbm":
        body = _json({"clientToken": _secret(a), "secret": h.challenge})
        return HttpRequest("POST", _path(h.channel, a.account_id), {"Content-Type":
                                                                    "application/json"},
                           body, h.channel, expect_body=expect_body)
    return None


# --- bad requests -------------------------------------------------------------------------------

def bad(b: BadRequest, cx: RenderContext) -> HttpRequest:
    a = cx.account(b.channel)
    m = b.template
    body, extra = PAYLOADS[b.channel](m, cx, a, False)
    expect = BAD_EXPECT[b.flaw]
    if b.flaw == "bad_signature":
        req = signed(b.channel, a, body, extra, secret=WRONG_SECRET)
    elif b.flaw == "missing_signature":
        req = signed(b.channel, a, body, extra)
        if b.channel == "wechat":
            path = req.path.split("?")[0]
            req = HttpRequest("POST", path, req.headers, body, b.channel)
        else:
            drop = SIGNATURE_HEADERS[b.channel].lower()
            req = HttpRequest("POST", req.path, {k: v for k, v in req.headers.items()
                                                 if k.lower() != drop}, body, b.channel)
    elif b.flaw == "malformed_json":
        req = signed(b.channel, a, body[: len(body) // 2])  # cut mid-document, signed as sent
    elif b.flaw == "oversize":
        pad = "x" * (cx.limit(b.channel) + 1024)
        req = signed(b.channel, a, _json({"padding": pad}), extra)
    elif b.flaw == "unknown_account":
        req = signed(b.channel, a, body, extra, account_id=UNKNOWN_ACCOUNT_ID)
    else:
        raise ValueError(f"unknown flaw {b.flaw!r}")
    return HttpRequest(req.method, req.path, req.headers, req.body, b.channel, expect)


# --- the agent API ------------------------------------------------------------------------------

def _agent_post(cx: RenderContext, agent_id: str, what: str, doc: dict[str, Any]) -> HttpRequest:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {cx.agent_token}"}
    return HttpRequest("POST", f"/agents/{quote(cx.tenant)}/{quote(agent_id)}/{what}", headers,
                       _json(doc), "agent_api")


def presence(p: Presence, cx: RenderContext) -> HttpRequest:
    a = p.agent
    doc = {"presence": p.presence, "capacity": p.capacity, "skills": list(a.skills),
           "languages": list(a.languages), "channels": [], "queues": list(a.queues),
           "display_name": a.name, "occurred_at": p.at_ms,
           "change_id": f"demo-{cx.token('presence', a.id, p.at_ms, p.presence, n=12)}"}
    return _agent_post(cx, a.id, "status", doc)


def reply(r: Reply, cx: RenderContext) -> HttpRequest:
    """A bot's or an agent's message on the thread, to the identity the customer wrote from."""
    doc = {"message_id": reply_message_id(r, cx), "channel": r.channel,
           "channel_account_id": cx.account(r.channel).account_id, "recipient": dict(r.recipient),
           "text": r.text, "author_type": r.author_type, "channel_message_id": outbound_channel_id(r, cx),
           "customer_id": r.customer_id, "thread_id": r.thread_id,
           "in_reply_to_event_id": r.in_reply_to, "occurred_at": r.at_ms}
    if r.template:
        doc["template_name"] = r.template
    return _agent_post(cx, r.author_id, "replies", doc)


def _request_id(cx: RenderContext, *parts: object) -> str:
    return f"demo-{cx.token(*parts, n=12)}"


def resolve(r: Resolve, cx: RenderContext) -> HttpRequest:
    """``POST /agents/<tenant>/<agent>/threads/<thread>/resolve`` at the step's event time."""
    doc = {"customer_id": r.customer_id, "channel": r.channel, "resolved_by": r.resolved_by,
           "occurred_at": r.at_ms, "request_id": _request_id(cx, "resolve", r.thread_id, r.at_ms)}
    return _agent_post(cx, r.agent_id, f"threads/{quote(r.thread_id)}/resolve", doc)


def transfer(t: Transfer, cx: RenderContext) -> HttpRequest:
    """``POST /agents/<tenant>/<agent>/threads/<thread>/transfer`` to a queue."""
    doc = {"customer_id": t.customer_id, "to_queue": t.to_queue, "reason": t.reason,
           "occurred_at": t.at_ms, "request_id": _request_id(cx, "transfer", t.thread_id, t.at_ms)}
    return _agent_post(cx, t.agent_id, f"threads/{quote(t.thread_id)}/transfer", doc)


def link(k: Link, cx: RenderContext) -> HttpRequest:
    """``POST /agents/<tenant>/<agent>/identities/link``: the channel identity to the customer."""
    doc = {"channel": k.channel, "id": k.identity, "customer_id": k.customer_id,
           "occurred_at": k.at_ms, "request_id": _request_id(cx, "link", k.channel, k.identity)}
    return _agent_post(cx, k.agent_id, "identities/link", doc)


def merge(m: Merge, cx: RenderContext) -> HttpRequest:
    """``POST /agents/<tenant>/<agent>/customers/merge``: the second profile into the first."""
    doc = {"customer_id": m.customer_id, "merged_customer_id": m.merged_customer_id,
           "occurred_at": m.at_ms, "request_id": _request_id(cx, "merge", m.merged_customer_id)}
    return _agent_post(cx, m.agent_id, "customers/merge", doc)


def context(c: Context, cx: RenderContext) -> HttpRequest:
    """``POST /customers/<tenant>/<customer>/context``: what the CRM knows, at the step's time."""
    doc: dict[str, Any] = {"source": c.source, "name": c.customer.name, "tier": c.tier,
                           "occurred_at": c.at_ms, "request_id": _request_id(cx, "context", c.customer_id)}
    if c.lifecycle_stage:
        doc["lifecycle_stage"] = c.lifecycle_stage
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {cx.agent_token}"}
    return HttpRequest("POST", f"/customers/{quote(cx.tenant)}/{quote(c.customer_id)}/context",
                       headers, _json(doc), "agent_api")


RENDERERS: dict[type, Callable[[Any, RenderContext], HttpRequest | None]] = {
    Inbound: inbound, Reply: reply, Presence: presence, Receipt: receipt, BadRequest: bad,
    Handshake: handshake, Resolve: resolve, Transfer: transfer, Link: link, Merge: merge,
    Context: context,
}
