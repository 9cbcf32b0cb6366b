"""Viber REST bot API (pure).

``POST /pa/send_message`` with header ``X-Viber-Auth-Token``: ``receiver``, ``sender.name``,
``type`` (text, picture, video, file, location) and a ``keyboard`` for options. The answer is
HTTP 200 whatever happened: ``status`` 0 with ``message_token``, 12 too many requests
(retried), 6 receiver not subscribed, 5 receiver not registered, 2 bad auth token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result, http_default, parse_json, permanent, sent, transient

TRANSIENT = {12: "too many requests", 13: "temporary failure"}


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    headers = {"X-Viber-Auth-Token": account.send.get("auth_token", "")}
    sender = {"name": str(account.send.get("sender_name", "Support"))[:28]}
    base = {"receiver": plan.recipient, "min_api_version": 7, "sender": sender}
    return [Call(url="/pa/send_message", headers=headers, json={**base, **_body(p)}) for p in plan.parts]


def _body(part: dict[str, Any]) -> dict[str, Any]:
    t = part["type"]
    if t == "media":
        m = part["media"]
        kind = {"image": "picture", "video": "video"}.get(m["kind"], "file")
        out: dict[str, Any] = {"type": kind, "media": m["url"]}
        if kind == "picture" and m.get("caption"):
            out["text"] = m["caption"][:768]
        if kind != "picture":
            out["size"] = int(m.get("size_bytes") or 0)
        if kind == "file":
            out["file_name"] = m.get("filename") or m["url"].rsplit("/", 1)[-1] or "file"
        return out
    if t == "location":
        loc = part["location"]
        return {"type": "location", "location": {"lat": loc["latitude"], "lon": loc["longitude"]}}
    out = {"type": "text", "text": part["text"]}
    items = part.get("buttons") or part.get("quick_replies") or (part.get("list") or {}).get("rows")
    if items:
        out["keyboard"] = {"Type": "keyboard", "DefaultHeight": False, "Buttons": [
            {"Columns": 6, "Rows": 1, "Text": i["title"], "ActionType": "open-url" if i.get("url") else "reply",
             "ActionBody": i.get("url") or i["id"]} for i in items]}
    return out


def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    doc = parse_json(body)
    if not isinstance(doc, dict) or "status" not in doc:
        return http_default(status, headers, "Viber")
    code = doc["status"]
    if code == 0 and doc.get("message_token") is not None:
        return sent([str(doc["message_token"])], status)
    reason = f"Viber status {code}: {doc.get('status_message', '')}"
    if code in TRANSIENT:
        return transient(str(code), reason, status, 1.0 if code == 12 else None)
    if code == 6:
        return permanent("6", reason + " (the customer is not subscribed to the bot)", status)
    return permanent(str(code), reason, status)
