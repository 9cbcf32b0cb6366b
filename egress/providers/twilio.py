"""Twilio Programmable Messaging: SMS, MMS and WhatsApp (pure).

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded ``To``, ``From`` (or
``MessagingServiceSid``), ``Body``, ``MediaUrl``; a WhatsApp template is ``ContentSid`` with
``ContentVariables`` (JSON). HTTP Basic auth (Account SID or API key SID, and its secret).
The answer (201) carries ``sid``. Errors carry ``code``: 20429 and HTTP 429 are rate limits;
63016 is WhatsApp free-form outside the window; 21211/21614 bad numbers, 21610 opted out.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result, http_default, parse_json, permanent, retry_after, sent, transient

RATE_CODES = {20429, 14107}
WINDOW_CODES = {63016}


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    s = account.send
    sid = s.get("account_sid", "")
    user, secret = s.get("api_key_sid") or sid, s.get("api_key_secret") or s.get("auth_token", "")
    auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}
    sender: tuple[tuple[str, str], ...]
    if s.get("messaging_service_sid"):
        sender = (("MessagingServiceSid", s["messaging_service_sid"]),)
    else:
        origin = s.get("from") or account.account_id
        sender = (("From", f"whatsapp:{origin}" if plan.recipient.startswith("whatsapp:") else origin),)
    base: tuple[tuple[str, str], ...] = (("To", plan.recipient), *sender)
    if s.get("status_callback"):
        base += (("StatusCallback", s["status_callback"]),)
    url = f"/2010-04-01/Accounts/{sid}/Messages.json"
    return [Call(url=url, headers=auth, form=base + _fields(p)) for p in plan.parts]


def _fields(part: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    if part["type"] == "template":
        tp = part["template"]
        variables = {str(i): p for i, p in enumerate(tp["parameters"], 1)}
        if tp.get("provider_id"):
            return (("ContentSid", tp["provider_id"]), ("ContentVariables", orjson.dumps(variables).decode()))
        return (("Body", tp["body"]),)
    if part["type"] == "media":
        m = part["media"]
        return (("MediaUrl", m["url"]),) + ((("Body", m["caption"]),) if m.get("caption") else ())
    return (("Body", part.get("text") or ""),)


def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    doc = parse_json(body)
    if 200 <= status < 300 and isinstance(doc, dict) and isinstance(doc.get("sid"), str):
        return sent([doc["sid"]], status)
    if not isinstance(doc, dict) or "code" not in doc:
        return http_default(status, headers, "Twilio")
    code = doc.get("code")
    reason = f"Twilio error {code}: {doc.get('message', '')}"
    if code in RATE_CODES or status == 429:
        return transient(str(code), reason, status, retry_after(headers))
    if status >= 500:
        return transient(str(code), reason, status)
    if code in WINDOW_CODES:
        return permanent(str(code), reason + " (free-form WhatsApp outside the 24-hour window: send a template)",
                         status)
    return permanent(str(code), reason, status)
