"""How much of a message an event carries: the ingress's documented limits (pure).

A webhook body may be as large as its adapter allows (an e-mail up to 30 MiB, a Meta batch up to
3 MiB) and is kept whole in its RawRequest record on ``parley.ingress.raw`` (32 MiB records).
The events on ``parley.messages`` (and downstream, on topics with Kafka's ~1 MB default) carry at
most the limits below; anything cut is named in ``truncated_fields`` and the event's
``content_ref`` (``<raw topic>:<raw_event_id>``) says where the whole request is. With every
limit applied, a MessageReceived stays well under 1 MB, so nothing valid is refused for size;
the encoded record is still checked against the topic's live ``max.message.bytes`` before it
is produced (a topic configured smaller sends the request to the dead letters, not a 503).

Limits (UTF-8 bytes unless said): text 64 KiB; subject 2 KiB; display names 1 KiB; rich
payload and title 4 KiB, rich data (JSON) 64 KiB (beyond: replaced by ``{"truncated": true}``);
at most 50 attachments, each caption and filename 1 KiB, URL and media id 4 KiB (beyond: dropped,
the raw record keeps it); at most 100 references (the newest), each 1 KiB; a delivery status's
error message 4 KiB. Channels' own text limits (WhatsApp 4096 characters, SMS 1600, LINE 5000,
Viber 7000) are far below: in practice only long e-mails are cut.
"""

from __future__ import annotations

from typing import Any

KIB = 1024
TEXT_BYTES = 64 * KIB
SUBJECT_BYTES = 2 * KIB
NAME_BYTES = 1 * KIB
RICH_SHORT_BYTES = 4 * KIB
RICH_DATA_BYTES = 64 * KIB
RICH_DATA_CUT = '{"truncated":true}'
MAX_ATTACHMENTS = 50
ATTACHMENT_TEXT_BYTES = 1 * KIB
ATTACHMENT_REF_BYTES = 4 * KIB
MAX_REFERENCES = 100
REFERENCE_BYTES = 1 * KIB
ERROR_BYTES = 4 * KIB


def cut(value: str | None, limit: int) -> str | None:
    """``value`` cut to at most ``limit`` UTF-8 bytes, on a character boundary (anything but a
    string is left as it is: the encoder refuses it)."""
    if not isinstance(value, str) or len(value) * 4 <= limit:  # fast path: cannot exceed the limit
        return value
    data = value.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return value
    return data[:limit].decode("utf-8", "ignore")


def fit(event: dict[str, Any], content_ref: str) -> dict[str, Any]:
    """``event`` within the limits (the same dict, changed in place only where something was cut)."""
    etype = event["envelope"]["event_type"]
    if etype == "MessageReceived":
        cuts = _message(event)
        if cuts:
            event["truncated_fields"] = cuts
            event["content_ref"] = content_ref
    elif etype == "DeliveryStatusChanged":
        event["error_message"] = cut(event.get("error_message"), ERROR_BYTES)
        event["error_code"] = cut(event.get("error_code"), NAME_BYTES)
    elif etype == "MessageSent":
        event["text"] = cut(event.get("text"), TEXT_BYTES)
    return event


def _message(ev: dict[str, Any]) -> list[str]:
    cuts: list[str] = []
    _field(ev, "text", TEXT_BYTES, cuts)
    _field(ev, "subject", SUBJECT_BYTES, cuts)
    sender = ev.get("sender")
    if isinstance(sender, dict):
        _field(sender, "display_name", NAME_BYTES, cuts, "sender.display_name")
    if isinstance(ev.get("rich"), dict):
        _rich(ev["rich"], cuts)
    if not isinstance(ev.get("attachments"), list) or not isinstance(ev.get("references"), list):
        return sorted(set(cuts))  # not shaped like the schema: the encoder says why
    if len(ev.get("attachments") or []) > MAX_ATTACHMENTS:
        ev["attachments"] = ev["attachments"][:MAX_ATTACHMENTS]
        cuts.append("attachments")
    for a in ev.get("attachments") or []:
        if isinstance(a, dict):
            _attachment(a, cuts)
    refs = ev.get("references") or []
    if len(refs) > MAX_REFERENCES or any(isinstance(r, str) and len(r) * 4 > REFERENCE_BYTES for r in refs):
        kept = [r for r in refs[-MAX_REFERENCES:] if not isinstance(r, str) or len(r.encode()) <= REFERENCE_BYTES]
        if kept != refs:
            ev["references"] = kept
            cuts.append("references")
    return sorted(set(cuts))


def _field(obj: dict[str, Any], name: str, limit: int, cuts: list[str], label: str | None = None) -> None:
    value = obj.get(name)
    short = cut(value, limit)
    if short is not value:
        obj[name] = short
        cuts.append(label or name)


def _rich(rich: dict[str, Any], cuts: list[str]) -> None:
    _field(rich, "payload", RICH_SHORT_BYTES, cuts, "rich.payload")
    _field(rich, "title", RICH_SHORT_BYTES, cuts, "rich.title")
    data = rich.get("data_json")
    if data is not None and cut(data, RICH_DATA_BYTES) is not data:
        rich["data_json"] = RICH_DATA_CUT  # half a JSON document is not JSON
        cuts.append("rich.data_json")


def _attachment(a: dict[str, Any], cuts: list[str]) -> None:
    for name in ("caption", "filename"):
        _field(a, name, ATTACHMENT_TEXT_BYTES, cuts, f"attachments.{name}")
    for name in ("url", "media_id", "mime_type", "sha256"):
        value = a.get(name)
        if value is not None and cut(value, ATTACHMENT_REF_BYTES) is not value:
            a[name] = None  # a cut reference points nowhere: dropped, the raw record keeps it
            cuts.append(f"attachments.{name}")
