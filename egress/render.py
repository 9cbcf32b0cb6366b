"""Render a canonical RichMessage for one channel, degrading what the channel cannot show (pure).

Input: the canonical message (``content.canonical``), the channel's ``Caps``, the validated
template (if the message is one). Output: ``Rendered``: the parts to send, in order, and the
decision recorded on the delivery events: what was asked, what was sent, and why.

A part is a dict with a ``type``: ``text`` (``text``, optionally one interactive element:
``buttons``, ``quick_replies`` or ``list``), ``media`` (``media``: an Attachment), ``location``,
``cards`` (a carousel, or one rich card) or ``template``. Provider modules turn parts into
requests. Degradations, each recorded with its reason:

- options (reply buttons, quick replies, list rows) go to the first form the channel can show
  them all in (buttons -> list -> quick replies, in an order that depends on what was asked),
  else to numbered lines in the text ("Reply with the number");
- link buttons the channel cannot show become "title: url" lines;
- a carousel the channel cannot show becomes a list of its cards (then degrades as a list);
- a location becomes a map link; media of a kind the channel cannot carry becomes a link;
- a template on a channel without templates is sent as its text, parameters filled in;
- text over the channel's limit is split at word boundaries; options ride on the last piece.
Media over the channel's size limit is not degraded: ``RenderError`` (the agent must act).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from egress.capabilities import Caps
from egress.content import features
from egress.templates import Template

PROMPT = "Please choose an option:"


class RenderError(ValueError):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class Rendered:
    parts: tuple[dict[str, Any], ...]
    decision: dict[str, Any]


def render(msg: dict[str, Any], caps: Caps, template: Template | None = None, mode: str = "none") -> Rendered:
    """The parts ``caps.channel`` receives for ``msg``, and the decision (asked, sent, reasons)."""
    asked = features(msg)
    sent: list[str] = []
    reasons: list[str] = []
    ch = caps.channel
    if msg.get("template"):
        templated = _template(msg, caps, template, sent, reasons)
        if templated is not None:
            return Rendered(templated, _decision(asked, sent, reasons, templated, mode))
        msg = {**msg, "template": None, "text": template.fill(list(msg["template"]["parameters"])) if template else ""}
    lines: list[str] = []  # lines appended to the text (degraded options, links)
    options = _options(msg, caps, sent, reasons, lines)
    media = _media(msg, caps, sent, reasons, lines)
    location = _location(msg, caps, sent, reasons, lines)
    cards = msg.get("cards") or []
    if cards and not _cards_fit(cards, caps):
        cards = []  # already turned into options by _options
    text = "\n".join(x for x in [msg.get("text") or "", *lines] if x).strip()
    parts: list[dict[str, Any]] = []
    chunks = split(text, caps.text_limit, caps.text_in_bytes) if text else []
    if len(chunks) > 1:
        reasons.append(f"text: {_size(text, caps)} over {ch}'s limit of {caps.text_limit}: split in {len(chunks)}")
    if chunks:
        sent.append("text")
    body_limit = caps.body_limit or caps.text_limit
    if options is not None:
        if chunks and _size(chunks[-1], caps) <= body_limit:
            last = chunks.pop()
        else:
            last = options[1].get("button") if options[0] == "list" else PROMPT
            if chunks:
                reasons.append(f"text: over {ch}'s {body_limit} for an interactive message: sent before it")
        parts += [{"type": "text", "text": c} for c in chunks]
        parts.append({"type": "text", "text": last, options[0]: options[1]})
    else:
        parts += [{"type": "text", "text": c} for c in chunks]
    parts += [{"type": "media", "media": m} for m in media]
    if location:
        parts.append({"type": "location", "location": location})
    if cards:
        parts.append({"type": "cards", "cards": cards})
        sent.append("cards")
    if not parts:
        raise RenderError("empty_message", "nothing to send: the message has no text, media or content")
    return Rendered(tuple(parts), _decision(asked, sent, reasons, parts, mode))


def _decision(asked: list[str], sent: list[str], reasons: list[str], parts: Any, mode: str) -> dict[str, Any]:
    return {"asked": asked, "sent": list(dict.fromkeys(sent)), "reasons": reasons, "parts": len(parts),
            "mode": mode}


def _template(msg: dict[str, Any], caps: Caps, template: Template | None, sent: list[str],
              reasons: list[str]) -> tuple[dict[str, Any], ...] | None:
    call = msg["template"]
    others = [f for f in features(msg) if f not in ("template", "subject")]
    if others:
        reasons.append(f"template: sent alone, without its {', '.join(others)} "
                       "(a template carries only its parameters)")
    if caps.templates:
        sent.append("template")
        return ({"type": "template", "template": {
            "name": call["name"], "language": call.get("language") or "en",
            "parameters": list(call.get("parameters") or []),
            "provider_id": template.provider_id if template else None,
            "body": template.fill(list(call.get("parameters") or [])) if template else ""}},)
    reasons.append(f"template: {caps.channel} has no templates: sent as its text")
    return None


# --- options: buttons, quick replies, list, cards --------------------------------------------

_PREFERENCE = {"buttons": ("buttons", "list", "quick_replies"), "list": ("list", "quick_replies", "buttons"),
               "quick_replies": ("quick_replies", "buttons", "list")}


def _cap(caps: Caps, kind: str) -> int:
    return {"buttons": caps.reply_buttons, "list": caps.list_rows, "quick_replies": caps.quick_replies}[kind]


def _cards_fit(cards: list[dict[str, Any]], caps: Caps) -> bool:
    return 0 < len(cards) <= caps.carousel


def _options(msg: dict[str, Any], caps: Caps, sent: list[str], reasons: list[str],
             lines: list[str]) -> tuple[str, Any] | None:
    """The one interactive element the text carries, or None (degraded options go to ``lines``)."""
    ch = caps.channel
    cards = msg.get("cards") or []
    rows = list((msg.get("list") or {}).get("rows") or [])
    button = (msg.get("list") or {}).get("button") or "Options"
    if cards and not _cards_fit(cards, caps):
        why = "shows no carousel" if not caps.carousel else f"shows at most {caps.carousel} cards"
        reasons.append(f"cards: {ch} {why}: sent as a list of {len(cards)}")
        rows += [{"id": (c.get("buttons") or [{}])[0].get("id") or c["title"], "title": c["title"],
                  "description": c.get("subtitle"), "section": ""} for c in cards]
        lines += [f"{c['title']}: {c['url']}" for c in cards if c.get("url")]
    links = [b for b in msg.get("buttons") or [] if b.get("url")]
    buttons = [b for b in msg.get("buttons") or [] if not b.get("url")]
    chosen: tuple[str, list[dict[str, Any]]] | None = None
    if rows:
        chosen = ("list", rows)
    elif buttons:
        chosen = ("buttons", buttons)
    quick = list(msg.get("quick_replies") or [])
    if quick and chosen is None:
        chosen = ("quick_replies", quick)
    elif quick:
        reasons.append(f"quick_replies: {ch} shows one set of options per message: numbered in the text")
        lines += _numbered(quick)
        sent.append("text:numbered_options")
    if links:
        if caps.link_buttons >= len(links) and chosen is None:
            chosen = ("buttons", links)
        else:
            reasons.append(f"buttons: {len(links)} link button(s) not shown by {ch} here: sent as links")
            lines += [f"{b['title']}: {b['url']}" for b in links]
            sent.append("text:links")
    if chosen is None:
        return None
    return _fit(chosen[0], chosen[1], button, caps, sent, reasons, lines)


def _fit(asked: str, items: list[dict[str, Any]], button: str, caps: Caps, sent: list[str],
         reasons: list[str], lines: list[str]) -> tuple[str, Any] | None:
    n, ch = len(items), caps.channel
    for kind in _PREFERENCE[asked]:
        if _cap(caps, kind) >= n:
            if kind != asked:
                reasons.append(f"{asked}: {n} option(s) shown as {kind.replace('_', ' ')} on {ch}")
            sent.append(kind)
            return kind, _shaped(kind, items, button, caps, reasons)
    reasons.append(f"{asked}: {n} option(s) cannot be shown by {ch} as buttons, list or quick replies: "
                   "numbered in the text")
    lines += _numbered(items)
    sent.append("text:numbered_options")
    return None


def _shaped(kind: str, items: list[dict[str, Any]], button: str, caps: Caps, reasons: list[str]) -> Any:
    limit = caps.row_title if kind == "list" else caps.button_title
    cut = [i for i in items if len(i["title"]) > limit]
    if cut:
        reasons.append(f"{kind}: {len(cut)} title(s) over {limit} characters on {caps.channel}: shortened")
    shaped = [{**i, "title": _shorten(i["title"], limit)} for i in items]
    if kind == "list":
        return {"button": _shorten(button, caps.button_title or 20), "rows": shaped}
    return shaped


def _numbered(items: list[dict[str, Any]]) -> list[str]:
    return ["", *[f"{i}. {o['title']}" for i, o in enumerate(items, 1)], "Reply with the number of your choice."]


def _shorten(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[: max(limit - 1, 1)] + "…"


# --- media and location ------------------------------------------------------------------------

def _media(msg: dict[str, Any], caps: Caps, sent: list[str], reasons: list[str], lines: list[str]) -> list:
    out = []
    for m in msg.get("media") or []:
        kind = "document" if m.get("kind") == "file" else m.get("kind") or "document"
        limit = caps.media_limit(kind)
        label = m.get("caption") or m.get("filename") or kind
        if not (m.get("url") or m.get("media_id")):
            raise RenderError("media_invalid", f"{kind} has neither a url nor a media id")
        if limit and m.get("size_bytes") and m["size_bytes"] > limit:
            raise RenderError("media_too_large", f"{kind} {label!r} is {m['size_bytes']} bytes, over "
                                                 f"{caps.channel}'s {limit} bytes for a {kind}: send a link or a "
                                                 "smaller file")
        if limit and (m.get("url") or caps.channel in ("whatsapp", "telegram")):
            out.append({**m, "kind": kind})
            sent.append(f"media:{kind}")
        elif m.get("url"):
            reasons.append(f"media: {caps.channel} cannot carry a {kind} here: sent as a link")
            lines.append(f"{label}: {m['url']}")
            sent.append("text:links")
        else:
            raise RenderError("media_invalid",
                              f"{kind} {label!r}: {caps.channel} needs a url (a media id is another provider's)")
    return out


def _location(msg: dict[str, Any], caps: Caps, sent: list[str], reasons: list[str], lines: list[str]) -> Any:
    loc = msg.get("location")
    if not loc:
        return None
    if caps.location:
        sent.append("location")
        return loc
    reasons.append(f"location: {caps.channel} shows no location pin: sent as a map link")
    name = ", ".join(x for x in (loc.get("name"), loc.get("address")) if x)
    link = f"https://maps.google.com/?q={loc['latitude']},{loc['longitude']}"
    lines.append(f"{name}: {link}" if name else link)
    sent.append("text:location_link")
    return None


# --- text ----------------------------------------------------------------------------------------

def _size(text: str, caps: Caps) -> int:
    return len(text.encode()) if caps.text_in_bytes else len(text)


def split(text: str, limit: int, in_bytes: bool = False) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters (or UTF-8 bytes), cut at the last
    paragraph, line or word boundary in each piece when there is one."""
    size = (lambda s: len(s.encode())) if in_bytes else len
    out: list[str] = []
    rest = text
    while size(rest) > limit:
        cut = _fit_prefix(rest, limit, size)
        for sep in ("\n\n", "\n", " "):
            at = rest.rfind(sep, 0, cut)
            if at > cut // 2:
                cut = at
                break
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        out.append(rest)
    return out


def _fit_prefix(s: str, limit: int, size: Any) -> int:
    """The longest prefix length of ``s`` whose size is within ``limit``."""
    if size is len:
        return limit
    lo, hi = 0, min(len(s), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size(s[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return max(lo, 1)
