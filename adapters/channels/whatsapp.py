"""WhatsApp Cloud API webhooks (``object: "whatsapp_business_account"``).

Facts relied on (Meta "WhatsApp Cloud API webhooks" reference; handshake and signature in
``meta.py``):
- ``entry[].changes[]`` with ``field: "messages"``; ``value`` holds ``metadata.phone_number_id``
  (the business number: our channel account), ``contacts[{profile{name}, wa_id, user_id}]``,
  ``messages[]`` and/or ``statuses[]``. Other fields (account updates, templates...) are skipped.
- A message: ``from`` (wa_id: the phone number's digits without ``+``), ``id`` (``wamid.…``, the
  idempotency key), ``timestamp`` (unix seconds as a string), ``type`` and an object of that name:
  ``text{body}``; media ``image|video|audio|document|sticker{id, mime_type, sha256, caption,
  filename}`` (the id is fetched separately from the Graph API); ``location{latitude, longitude,
  name, address}``; ``contacts[]``; ``interactive{type: button_reply|list_reply|nfm_reply}``;
  ``button{payload, text}`` (template quick reply); ``reaction{message_id, emoji}``;
  ``context{id}`` when replying. ``system`` and ``request_welcome`` are not customer messages.
- With usernames (2026), ``from``/``wa_id`` may be absent and a business-scoped user id
  (``from_user_id`` / ``contacts[].user_id``; ``recipient_user_id`` on statuses) present: the
  identity then falls back to it, without a phone number.
- A status: ``{id: wamid, status: sent|delivered|read|failed, timestamp, recipient_id,
  errors[{code, title, message, error_data{details}}]}``; order not guaranteed, read implies
  delivered; the idempotency key is wamid + status.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from adapters.base import Account, Reply, Request, Unmappable
from adapters.channels import meta
from adapters.channels._common import (
    BaseAdapter,
    Ctx,
    as_dict,
    as_list,
    attachment,
    e164,
    identity,
    location,
    mapping_errors,
    ms_from_seconds,
    need,
    rich,
    text,
)

CHANNEL = "whatsapp"
MEDIA = {"image", "video", "audio", "document", "sticker"}
NOT_MESSAGES = {"system", "request_welcome", "ephemeral"}


class WhatsAppAdapter(BaseAdapter):
    channel = CHANNEL
    max_body_bytes = meta.MAX_BODY

    def handshake(self, req: Request, account: Account) -> Reply | None:
        return meta.handshake(req, account)

    def verify(self, req: Request, account: Account) -> None:
        meta.verify(req, account)

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        cx = self.ctx(req, account)
        out: list[dict[str, Any]] = []
        for entry in meta.entries(req, "whatsapp_business_account"):
            for change in as_list(entry.get("changes"), "entry.changes"):
                change = as_dict(change, "change")
                if change.get("field") == "messages":
                    out.extend(_value(cx, as_dict(change.get("value"), "change.value")))
        return out


def _value(cx: Ctx, value: dict[str, Any]) -> Iterator[dict[str, Any]]:
    phone_id = text(as_dict(value.get("metadata") or {}, "metadata").get("phone_number_id"))
    names: dict[str, str | None] = {}
    for c in as_list(value.get("contacts"), "contacts"):
        c = as_dict(c, "contact")
        name = text(as_dict(c.get("profile") or {}, "profile").get("name"))
        for key in ("wa_id", "user_id"):
            user = text(c.get(key))
            if user:
                names[user] = name
    for m in as_list(value.get("messages"), "messages"):
        yield from _message(cx, as_dict(m, "message"), phone_id, names)
    for s in as_list(value.get("statuses"), "statuses"):
        yield _status(cx, as_dict(s, "status"), phone_id)


def _user(wa_id: str | None, user_id: str | None, name: str | None = None) -> dict[str, Any]:
    id_ = wa_id or user_id
    if not id_:
        raise Unmappable("neither a wa_id nor a business-scoped user id")
    return identity(CHANNEL, id_, display_name=name, phone_e164=e164(wa_id) if wa_id else None)


def _message(cx: Ctx, m: dict[str, Any], phone_id: str | None,
             names: dict[str, str | None]) -> Iterator[dict[str, Any]]:
    kind = text(m.get("type")) or "unknown"
    if kind in NOT_MESSAGES:
        return
    wamid = need(m, "id")
    wa_id, user_id = text(m.get("from")), text(m.get("from_user_id"))
    sender = _user(wa_id, user_id, names.get(wa_id or "") or names.get(user_id or ""))
    body, files, content = _content(kind, m)
    context = m["context"] if isinstance(m.get("context"), dict) else {}
    reply_to = text(context.get("id"))
    if kind == "reaction":
        reply_to = text(as_dict(m.get("reaction"), "reaction").get("message_id"))
    yield cx.received(
        key=wamid, sender=sender, channel_message_id=wamid, account_id=phone_id,
        occurred_at=ms_from_seconds(m.get("timestamp"), cx.req.received_at_ms),
        text=body, attachments=files, rich=content, reply_to=reply_to,
    )


def _content(kind: str, m: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]],
                                                     dict[str, Any] | None]:
    """(text, attachments, rich) of one message by its type."""
    obj = m.get(kind)
    if kind == "text":
        return text(as_dict(obj, "text").get("body")), [], None
    if kind in MEDIA:
        o = as_dict(obj, kind)
        return None, [attachment(kind, media_id=o.get("id"), mime_type=o.get("mime_type"),
                                 sha256=o.get("sha256"), caption=o.get("caption"),
                                 filename=o.get("filename"), url=o.get("url"))], None
    if kind == "location":
        o = as_dict(obj, kind)
        return None, [], location(o.get("latitude"), o.get("longitude"), name=o.get("name"),
                                  address=o.get("address"), url=o.get("url"))
    if kind == "interactive":
        o = as_dict(obj, kind)
        sub = text(o.get("type")) or "interactive"
        reply = o[sub] if isinstance(o.get(sub), dict) else {}
        if sub == "button_reply":
            sub = "button"
        title = text(reply.get("title"))
        payload = reply.get("id") if "id" in reply else reply.get("response_json")
        return title, [], rich(sub, payload=payload, title=title, data=reply)
    if kind == "button":  # a template's quick-reply button
        o = as_dict(obj, kind)
        return text(o.get("text")), [], rich("quick_reply", payload=o.get("payload"),
                                              title=o.get("text"))
    if kind == "reaction":
        o = as_dict(obj, kind)
        return None, [], rich("reaction", payload=o.get("emoji"), data=o)
    if kind == "contacts":
        cards = as_list(obj, "contacts")
        first = as_dict(cards[0], "contact") if cards else {}
        name = as_dict(first.get("name") or {}, "name").get("formatted_name")
        return None, [], rich("contact", title=name, data={"contacts": cards})
    # order, unsupported/unknown and future types: still a customer message, kept structured
    data = obj if isinstance(obj, dict) else {"value": obj, "errors": m.get("errors")}
    return None, [], rich(kind, data=data)


def _status(cx: Ctx, s: dict[str, Any], phone_id: str | None) -> dict[str, Any]:
    wamid, status = need(s, "id"), need(s, "status")
    errors = as_list(s.get("errors"), "errors")
    err = as_dict(errors[0], "error") if errors else {}
    details = as_dict(err.get("error_data") or {}, "error_data").get("details")
    return cx.status(
        key=f"{wamid}|{status}",
        recipient=_user(text(s.get("recipient_id")), text(s.get("recipient_user_id"))),
        channel_message_id=wamid, status=status, account_id=phone_id,
        occurred_at=ms_from_seconds(s.get("timestamp"), cx.req.received_at_ms),
        error_code=err.get("code"),
        error_message=details or err.get("message") or err.get("title"),
    )


ADAPTER = WhatsAppAdapter()
