"""WhatsApp Cloud API, Messenger and Instagram: Meta's Graph API (pure).

WhatsApp: ``POST /{version}/{phone-number-id}/messages`` with ``messaging_product: whatsapp``;
the answer's ``messages[0].id`` is the wamid the status webhooks name. Messenger and Instagram:
``POST /{version}/me/messages`` with ``recipient.id``, ``messaging_type`` RESPONSE, or
MESSAGE_TAG with ``tag: HUMAN_AGENT`` past 24 h; the answer's ``message_id``. Auth: a bearer
token (system user / page access token). No idempotency key: the runner records attempts.
Errors (``error.code``): 4, 17, 32, 613, 80007, 130429, 131056 are rate limits (retried);
1, 2, 131000, 131016 temporary; 131047 (WhatsApp) and 10 / 2018278 (Messenger) the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result, http_default, parse_json, permanent, sent, transient

VERSION = "v21.0"
RATE_CODES = {4, 17, 32, 613, 80007, 130429, 131056}
TEMPORARY_CODES = {1, 2, 131000, 131016, 1200}
WINDOW_CODES = {131047, 2018278}


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    version = account.send.get("api_version", VERSION)
    auth = {"Authorization": f"Bearer {account.send.get('access_token', '')}"}
    if account.provider == "whatsapp":
        url = f"/{version}/{account.account_id}/messages"
        return [Call(url=url, headers=auth, json=whatsapp_body(plan.recipient, p)) for p in plan.parts]
    url = f"/{version}/me/messages"
    return [Call(url=url, headers=auth, json=messenger_body(plan, p, account.provider)) for p in plan.parts]


# --- WhatsApp --------------------------------------------------------------------------------

def whatsapp_body(to: str, part: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    t = part["type"]
    if t == "template":
        tp = part["template"]
        comps = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in tp["parameters"]]}] \
            if tp["parameters"] else []
        return {**out, "type": "template", "template": {"name": tp["name"], "language": {"code": tp["language"]},
                                                        "components": comps}}
    if t == "media":
        m = part["media"]
        media: dict[str, Any] = {"link": m["url"]} if m.get("url") else {"id": m["media_id"]}
        if m.get("caption") and m["kind"] in ("image", "video", "document"):
            media["caption"] = m["caption"]
        if m.get("filename") and m["kind"] == "document":
            media["filename"] = m["filename"]
        return {**out, "type": m["kind"], m["kind"]: media}
    if t == "location":
        loc = part["location"]
        return {**out, "type": "location", "location": {k: v for k, v in loc.items() if v is not None}}
    if part.get("buttons"):
        return {**out, "type": "interactive", "interactive": _wa_buttons(part)}
    if part.get("list"):
        return {**out, "type": "interactive", "interactive": _wa_list(part)}
    return {**out, "type": "text", "text": {"body": part["text"], "preview_url": False}}


def _wa_buttons(part: dict[str, Any]) -> dict[str, Any]:
    body = {"text": part["text"]}
    links = [b for b in part["buttons"] if b.get("url")]
    if links:
        b = links[0]
        return {"type": "cta_url", "body": body,
                "action": {"name": "cta_url", "parameters": {"display_text": b["title"], "url": b["url"]}}}
    return {"type": "button", "body": body, "action": {"buttons": [
        {"type": "reply", "reply": {"id": b["id"][:256], "title": b["title"]}} for b in part["buttons"]]}}


def _wa_list(part: dict[str, Any]) -> dict[str, Any]:
    sections: dict[str, list[dict[str, Any]]] = {}
    for r in part["list"]["rows"]:
        row = {"id": r["id"][:200], "title": r["title"]}
        if r.get("description"):
            row["description"] = r["description"][:72]
        sections.setdefault(r.get("section") or "", []).append(row)
    return {"type": "list", "body": {"text": part["text"]}, "action": {
        "button": part["list"]["button"],
        "sections": [{"title": (title or "Options")[:24], "rows": rows} for title, rows in sections.items()]}}


# --- Messenger, Instagram ------------------------------------------------------------------------

def messenger_body(plan: Plan, part: dict[str, Any], provider: str) -> dict[str, Any]:
    out: dict[str, Any] = {"recipient": {"id": plan.recipient}}
    if plan.mode == "human_agent":
        out.update(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
    else:
        out["messaging_type"] = "RESPONSE"
    return {**out, "message": _messenger_message(part)}


def _messenger_message(part: dict[str, Any]) -> dict[str, Any]:
    t = part["type"]
    if t == "media":
        m = part["media"]
        kind = {"document": "file", "sticker": "image"}.get(m["kind"], m["kind"])
        return {"attachment": {"type": kind, "payload": {"url": m["url"], "is_reusable": True}}}
    if t == "cards":
        return {"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": [
            _element(c) for c in part["cards"]]}}}
    if part.get("buttons"):
        return {"attachment": {"type": "template", "payload": {
            "template_type": "button", "text": part["text"], "buttons": [_button(b) for b in part["buttons"]]}}}
    msg: dict[str, Any] = {"text": part["text"]}
    if part.get("quick_replies"):
        msg["quick_replies"] = [{"content_type": "text", "title": q["title"], "payload": q["id"]}
                                for q in part["quick_replies"]]
    return msg


def _button(b: dict[str, Any]) -> dict[str, Any]:
    if b.get("url"):
        return {"type": "web_url", "url": b["url"], "title": b["title"]}
    return {"type": "postback", "title": b["title"], "payload": b["id"]}


def _element(c: dict[str, Any]) -> dict[str, Any]:
    el: dict[str, Any] = {"title": c["title"][:80]}
    if c.get("subtitle"):
        el["subtitle"] = c["subtitle"][:80]
    if c.get("image_url"):
        el["image_url"] = c["image_url"]
    if c.get("url"):
        el["default_action"] = {"type": "web_url", "url": c["url"]}
    if c.get("buttons"):
        el["buttons"] = [_button(b) for b in c["buttons"][:3]]
    return el


# --- answers -----------------------------------------------------------------------------------

def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    doc = parse_json(body)
    if 200 <= status < 300 and isinstance(doc, dict):
        if isinstance(doc.get("messages"), list) and doc["messages"] and doc["messages"][0].get("id"):
            return sent([doc["messages"][0]["id"]], status)
        if doc.get("message_id"):
            return sent([doc["message_id"]], status)
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return http_default(status, headers, "Meta")
    code, sub = err.get("code"), err.get("error_subcode")
    reason = f"Meta error {code}{f'/{sub}' if sub else ''}: {err.get('message', '')}".strip()
    if code in RATE_CODES or status == 429:
        return transient(str(code), reason, status, _retry(headers))
    if code in TEMPORARY_CODES or status >= 500:
        return transient(str(code), reason, status)
    if code in WINDOW_CODES or sub in WINDOW_CODES or (code == 10 and sub == 2018278):
        return permanent(str(sub if sub in WINDOW_CODES else code),
                         reason + " (outside the customer-service window: send a template)", status)
    return permanent(str(code), reason, status)


def _retry(headers: Mapping[str, str]) -> float | None:
    from egress.providers.base import retry_after

    return retry_after(headers)
