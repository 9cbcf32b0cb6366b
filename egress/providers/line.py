"""LINE Messaging API: push messages (pure).

``POST /v2/bot/message/push`` with ``to`` and up to 5 ``messages``; a bearer channel access
token. Idempotency: ``X-Line-Retry-Key`` (a UUID, derived from our event id and the call's
index): a retry with the same key is not delivered twice and answers 409, with the messages
the first request sent. The answer: ``{"sentMessages": [{"id", "quoteToken"}]}``. 429 is the
rate limit, or the monthly quota when its message says so (not retried).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result, http_default, parse_json, permanent, retry_after, sent, transient

PER_CALL = 5


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    auth = {"Authorization": f"Bearer {account.send.get('channel_access_token', '')}"}
    messages = [_message(p) for p in plan.parts]
    calls = []
    for i in range(0, len(messages), PER_CALL):
        key = plan.keys[i // PER_CALL] if i // PER_CALL < len(plan.keys) else None
        headers = {**auth, **({"X-Line-Retry-Key": key} if key else {})}
        chunk = messages[i:i + PER_CALL]
        calls.append(Call(url="/v2/bot/message/push", headers=headers, json={"to": plan.recipient, "messages": chunk},
                          key=key, parts=len(chunk)))
    return calls


def _message(part: dict[str, Any]) -> dict[str, Any]:
    t = part["type"]
    if t == "media":
        m = part["media"]
        if m["kind"] == "audio":
            return {"type": "audio", "originalContentUrl": m["url"], "duration": 60000}
        return {"type": m["kind"] if m["kind"] in ("image", "video") else "image",
                "originalContentUrl": m["url"], "previewImageUrl": m["url"]}
    if t == "location":
        loc = part["location"]
        return {"type": "location", "title": (loc.get("name") or "Location")[:100],
                "address": (loc.get("address") or loc.get("name") or "-")[:100],
                "latitude": loc["latitude"], "longitude": loc["longitude"]}
    if t == "cards":
        return {"type": "template", "altText": part["cards"][0]["title"][:400], "template": {
            "type": "carousel", "columns": [_column(c) for c in part["cards"]]}}
    if part.get("buttons"):
        return {"type": "template", "altText": part["text"][:400], "template": {
            "type": "buttons", "text": part["text"][:160], "actions": [_action(b) for b in part["buttons"]]}}
    msg: dict[str, Any] = {"type": "text", "text": part["text"]}
    items = part.get("quick_replies") or (part.get("list") or {}).get("rows")
    if items:
        msg["quickReply"] = {"items": [{"type": "action", "action": _action(i)} for i in items]}
    return msg


def _action(b: dict[str, Any]) -> dict[str, Any]:
    if b.get("url"):
        return {"type": "uri", "label": b["title"][:20], "uri": b["url"]}
    return {"type": "postback", "label": b["title"][:20], "data": b["id"][:300], "displayText": b["title"][:300]}


def _column(c: dict[str, Any]) -> dict[str, Any]:
    col: dict[str, Any] = {"title": c["title"][:40], "text": (c.get("subtitle") or c["title"])[:60],
                           "actions": [_action(b) for b in c.get("buttons", [])[:3]] or
                           [_action({"id": c["title"], "title": c["title"], "url": c.get("url")})]}
    if c.get("image_url"):
        col["thumbnailImageUrl"] = c["image_url"]
    return col


def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    doc = parse_json(body)
    if isinstance(doc, dict) and status in (200, 409) and isinstance(doc.get("sentMessages"), list):
        return sent([m.get("id") for m in doc["sentMessages"] if m.get("id")], status, duplicate=status == 409)
    if status == 409:  # the retry key was accepted before: the first request delivered it
        rid = headers.get("X-Line-Accepted-Request-Id") or headers.get("x-line-accepted-request-id") or ""
        return sent([rid or (call.key if call else None) or ""], status, duplicate=True)
    message = doc.get("message", "") if isinstance(doc, dict) else ""
    if status == 429 and "monthly limit" in message.lower():
        return permanent("quota", f"LINE: {message} (the monthly push quota is spent)", status)
    if status == 429:
        return transient("429", f"LINE: {message or 'rate limit'}", status, retry_after(headers))
    if not isinstance(doc, dict) or "message" not in doc:
        return http_default(status, headers, "LINE")
    if status >= 500:
        return transient(f"http_{status}", f"LINE: {message}", status)
    return permanent(f"http_{status}", f"LINE: {message}", status)
