"""Telegram Bot API (pure).

``POST /bot{token}/sendMessage`` (``chat_id``, ``text``, ``reply_markup``), ``sendPhoto``,
``sendVideo``, ``sendAudio``, ``sendDocument``, ``sendLocation``. Reply buttons and list rows
are an inline keyboard (one button per row, ``callback_data`` at most 64 bytes); quick replies
a one-time reply keyboard. The answer: ``{"ok": true, "result": {"message_id": ...}}``. Errors:
``error_code`` 429 with ``parameters.retry_after`` (seconds), 403 (the user blocked the bot),
400 (bad request). No idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result, http_default, parse_json, permanent, sent, transient

METHODS = {"image": ("sendPhoto", "photo"), "video": ("sendVideo", "video"), "audio": ("sendAudio", "audio"),
           "document": ("sendDocument", "document"), "sticker": ("sendSticker", "sticker")}


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    token = account.send.get("bot_token", "")
    return [_call(token, plan.recipient, p) for p in plan.parts]


def _call(token: str, chat: str, part: dict[str, Any]) -> Call:
    t = part["type"]
    if t == "media":
        m = part["media"]
        method, field = METHODS.get(m["kind"], METHODS["document"])
        body: dict[str, Any] = {"chat_id": chat, field: m.get("url") or m.get("media_id")}
        if m.get("caption") and m["kind"] != "sticker":
            body["caption"] = m["caption"]
        return Call(url=f"/bot{token}/{method}", json=body)
    if t == "location":
        loc = part["location"]
        return Call(url=f"/bot{token}/sendLocation",
                    json={"chat_id": chat, "latitude": loc["latitude"], "longitude": loc["longitude"]})
    body = {"chat_id": chat, "text": part["text"]}
    markup = _markup(part)
    if markup:
        body["reply_markup"] = markup
    return Call(url=f"/bot{token}/sendMessage", json=body)


def _markup(part: dict[str, Any]) -> dict[str, Any] | None:
    items = part.get("buttons") or (part.get("list") or {}).get("rows")
    if items:
        return {"inline_keyboard": [[{"text": i["title"], "url": i["url"]} if i.get("url") else
                                     {"text": i["title"],
                                  "callback_data": i["id"].encode()[:64].decode("utf-8", "ignore")}]
                                    for i in items]}
    if part.get("quick_replies"):
        return {"keyboard": [[{"text": q["title"]}] for q in part["quick_replies"]],
                "one_time_keyboard": True, "resize_keyboard": True}
    return None


def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    doc = parse_json(body)
    if not isinstance(doc, dict) or "ok" not in doc:
        return http_default(status, headers, "Telegram")
    if doc["ok"] and isinstance(doc.get("result"), dict) and "message_id" in doc["result"]:
        return sent([str(doc["result"]["message_id"])], status)
    code = doc.get("error_code") or status
    reason = f"Telegram error {code}: {doc.get('description', '')}"
    params = doc["parameters"] if isinstance(doc.get("parameters"), dict) else {}
    if code == 429:
        return transient("429", reason, status, float(params.get("retry_after", 1)))
    if isinstance(code, int) and code >= 500:
        return transient(str(code), reason, status)
    if code == 403:
        return permanent("403", reason + " (the customer blocked the bot or left the chat)", status)
    if doc["ok"]:
        return http_default(200, headers, "Telegram")
    return permanent(str(code), reason, status)
