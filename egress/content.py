"""The canonical RichMessage of a MessageSent (pure).

``MessageSent.content`` (v2) is the canonical message when set. Older events, and replies that
only fill the v1 fields, are read into the same shape: ``text``, ``attachments`` as media,
``kind: template`` with ``template_name`` as a template without parameters, and the v1
``rich`` (kind + ``data_json``) for buttons, quick replies, list, carousel and location.
"""

from __future__ import annotations

import json
from typing import Any

FEATURES = ("template", "text", "media", "buttons", "quick_replies", "list", "cards", "location")


def blank() -> dict[str, Any]:
    return {"text": None, "media": [], "buttons": [], "quick_replies": [], "list": None, "cards": [],
            "location": None, "template": None, "subject": None}


def canonical(event: dict[str, Any]) -> dict[str, Any]:
    """The RichMessage ``event`` (a MessageSent) asks to send."""
    content = event.get("content")
    if content:
        return {**blank(), **content}
    out = blank()
    out["text"] = event.get("text")
    out["media"] = [a for a in event.get("attachments") or [] if a.get("kind") != "location"]
    if event.get("kind") == "template" and event.get("template_name"):
        out["template"] = {"name": event["template_name"], "language": "en", "parameters": []}
    rich = event.get("rich")
    if rich:
        _legacy_rich(out, rich)
    return out


def _legacy_rich(out: dict[str, Any], rich: dict[str, Any]) -> None:
    try:
        data = json.loads(rich.get("data_json") or "{}")
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    kind = rich.get("kind")
    options = [_button(o) for o in data.get("options") or data.get("buttons") or [] if isinstance(o, dict)]
    if kind in ("buttons", "button"):
        out["buttons"] = options
    elif kind in ("quick_replies", "quick_reply"):
        out["quick_replies"] = options
    elif kind == "list":
        rows = [{"id": str(r.get("id") or r.get("title")), "title": str(r.get("title") or r.get("id")),
                 "description": r.get("description"), "section": str(r.get("section") or "")}
                for r in data.get("rows") or [] if isinstance(r, dict)]
        out["list"] = {"button": str(data.get("button") or rich.get("title") or "Options"), "rows": rows}
    elif kind == "carousel":
        out["cards"] = [{"title": str(c.get("title") or ""), "subtitle": c.get("subtitle"),
                         "image_url": c.get("image_url"), "url": c.get("url"),
                         "buttons": [_button(b) for b in c.get("buttons") or [] if isinstance(b, dict)]}
                        for c in data.get("cards") or [] if isinstance(c, dict)]
    elif kind == "location" and "latitude" in data and "longitude" in data:
        out["location"] = {"latitude": float(data["latitude"]), "longitude": float(data["longitude"]),
                           "name": data.get("name"), "address": data.get("address")}


def _button(o: dict[str, Any]) -> dict[str, Any]:
    title = str(o.get("title") or o.get("id") or "")
    return {"id": str(o.get("id") or title), "title": title, "url": o.get("url")}


def features(msg: dict[str, Any]) -> list[str]:
    """The features a canonical message uses, in a fixed order."""
    return [f for f in FEATURES if msg.get(f)]
