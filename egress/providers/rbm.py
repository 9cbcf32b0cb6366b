"""Google RCS Business Messaging: agent messages (pure).

``POST /v1/phones/{msisdn}/agentMessages?messageId={id}&agentId={agent}`` with an OAuth2 bearer
token (service account; the runner fetches it). ``messageId`` is ours, derived from the event
id: a repeat answers 409 ALREADY_EXISTS and is not delivered twice, and the delivery receipts
name that same id. Bodies: ``contentMessage`` with ``text`` and ``suggestions`` (replies and
actions, at most 11), ``contentInfo.fileUrl`` for media, ``richCard`` (a standalone card, or a
carousel of 2-10). Errors: 404 the phone is not RCS-capable (fall back to SMS), 429
RESOURCE_EXHAUSTED (retried), 5xx (retried).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result, http_default, parse_json, permanent, retry_after, sent, transient


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    agent = account.send.get("agent_id", account.account_id)
    phone = quote(plan.recipient if plan.recipient.startswith("+") else f"+{plan.recipient}")
    return [Call(url=f"/v1/phones/{phone}/agentMessages?messageId={key}&agentId={quote(agent)}", token="rbm",
                 json=_body(p), key=key) for p, key in zip(plan.parts, plan.keys, strict=True)]


def _body(part: dict[str, Any]) -> dict[str, Any]:
    t = part["type"]
    if t == "media":
        return {"contentMessage": {"contentInfo": {"fileUrl": part["media"]["url"], "forceRefresh": False}}}
    if t == "location":
        loc = part["location"]
        label = loc.get("name") or "Location"
        return {"contentMessage": {"text": ", ".join(x for x in (loc.get("name"), loc.get("address")) if x) or label,
                                   "suggestions": [{"action": {"text": "View location", "postbackData": "location",
                                                               "viewLocationAction": {"latLong": {
                                                                   "latitude": loc["latitude"],
                                                                   "longitude": loc["longitude"]},
                                                                   "label": label}}}]}}
    if t == "cards":
        contents = [_card(c) for c in part["cards"]]
        card = {"standaloneCard": {"cardOrientation": "VERTICAL", "cardContent": contents[0]}} if len(contents) == 1 \
            else {"carouselCard": {"cardWidth": "MEDIUM", "cardContents": contents}}
        return {"contentMessage": {"richCard": card}}
    msg: dict[str, Any] = {"text": part["text"]}
    items = part.get("buttons") or part.get("quick_replies") or (part.get("list") or {}).get("rows")
    if items:
        msg["suggestions"] = [_suggestion(i) for i in items]
    return {"contentMessage": msg}


def _suggestion(i: dict[str, Any]) -> dict[str, Any]:
    if i.get("url"):
        return {"action": {"text": i["title"][:25], "postbackData": i["id"], "openUrlAction": {"url": i["url"]}}}
    return {"reply": {"text": i["title"][:25], "postbackData": i["id"][:2048]}}


def _card(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"title": c["title"][:200]}
    if c.get("subtitle"):
        out["description"] = c["subtitle"][:2000]
    if c.get("image_url"):
        out["media"] = {"height": "MEDIUM", "contentInfo": {"fileUrl": c["image_url"]}}
    if c.get("buttons"):
        out["suggestions"] = [_suggestion(b) for b in c["buttons"][:4]]
    return out


def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    doc = parse_json(body)
    if 200 <= status < 300 and isinstance(doc, dict) and doc.get("name"):
        return sent([call.key if call and call.key else doc["name"].rsplit("/", 1)[-1]], status)
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return http_default(status, headers, "RBM")
    state = err.get("status", "")
    reason = f"RBM {err.get('code', status)} {state}: {err.get('message', '')}"
    if status == 409 or state == "ALREADY_EXISTS":
        return sent([call.key if call and call.key else ""], status, duplicate=True)
    if status == 429 or state == "RESOURCE_EXHAUSTED":
        return transient("RESOURCE_EXHAUSTED", reason, status, retry_after(headers))
    if status >= 500:
        return transient(state or f"http_{status}", reason, status)
    if status == 401:
        return transient("UNAUTHENTICATED", reason, status, 0.0, token_expired=True)
    if status == 404:
        return permanent("NOT_FOUND", reason + " (the phone is not RCS-capable: send by SMS instead)", status)
    return permanent(state or f"http_{status}", reason, status)
