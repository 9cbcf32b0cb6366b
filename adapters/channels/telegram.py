"""Telegram Bot API webhooks (one ``Update`` per request).

Facts relied on (Telegram Bot API reference: setWebhook, Update, Message, CallbackQuery):
- ``setWebhook(secret_token=…)`` makes Telegram send ``X-Telegram-Bot-Api-Secret-Token`` with
  that value on every request: a shared secret compared in constant time.
- ``Update{update_id, message | edited_message | business_message | edited_business_message |
  callback_query | …}``; ``update_id`` is the idempotency key (a redelivery repeats it).
- ``Message{message_id, from{id, first_name, last_name, username}, chat{id, type}, date (unix s),
  edit_date, text | caption, photo[PhotoSize{file_id, file_size}] (largest last), document,
  video, audio, voice, video_note, animation, sticker{file_id, mime_type, file_size, file_name},
  location{latitude, longitude}, contact{phone_number, user_id}, reply_to_message}``.
  ``message_id`` is unique per chat only: ``channel_message_id`` is ``"<chat id>:<message id>"``.
- ``CallbackQuery{id, from, message, data}`` (an inline-keyboard button) has no date: receipt time.
- No delivery or read callbacks exist for bots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.base import Account, Rejected, Request, Unmappable, secret_equals
from adapters.channels._common import (
    MIB,
    BaseAdapter,
    Ctx,
    as_dict,
    as_list,
    attachment,
    e164,
    header,
    identity,
    json_object,
    location,
    mapping_errors,
    ms_from_seconds,
    need,
    rich,
    text,
)

CHANNEL = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MESSAGE_KINDS = ("message", "edited_message", "business_message", "edited_business_message")
FILES = {"document": "document", "video": "video", "audio": "audio", "voice": "audio",
         "video_note": "video", "animation": "video", "sticker": "sticker"}


class TelegramAdapter(BaseAdapter):
    channel = CHANNEL
    max_body_bytes = 1 * MIB  # one update; a 4096-char text with entities is far below

    def verify(self, req: Request, account: Account) -> None:
        given = header(req, SECRET_HEADER)
        if not given:
            raise Rejected(401, f"missing {SECRET_HEADER} header")
        if not secret_equals(account.secrets, given):
            raise Rejected(403, f"{SECRET_HEADER} does not match any configured secret")

    @mapping_errors
    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        update = json_object(req.body)
        if not isinstance(update, dict) or "update_id" not in update:
            raise Unmappable("not a Telegram Update (no update_id)")
        key = need(update, "update_id")
        cx = self.ctx(req, account)
        for kind in MESSAGE_KINDS:
            if isinstance(update.get(kind), dict):
                return [_message(cx, key, as_dict(update[kind], kind))]
        if isinstance(update.get("callback_query"), dict):
            return [_callback(cx, key, update["callback_query"])]
        return []  # channel posts, polls, membership changes...: not customer messages


def _sender(msg: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    user = msg["from"] if isinstance(msg.get("from"), dict) else chat
    id_ = need(user, "id")
    name = " ".join(filter(None, (text(user.get("first_name")), text(user.get("last_name")))))
    phone = None
    contact = msg["contact"] if isinstance(msg.get("contact"), dict) else {}
    if text(contact.get("user_id")) == id_:  # the user shared their own number
        phone = e164(text(contact.get("phone_number")))
    return identity(CHANNEL, id_, display_name=name or text(user.get("username")),
                    phone_e164=phone)


def _message(cx: Ctx, key: str, msg: dict[str, Any]) -> dict[str, Any]:
    chat = as_dict(msg.get("chat"), "chat")
    chat_id = need(chat, "id")
    files, content = _files(msg), None
    if isinstance(msg.get("location"), dict):
        loc = msg["location"]
        content = location(loc.get("latitude"), loc.get("longitude"))
    elif isinstance(msg.get("contact"), dict):
        c = msg["contact"]
        content = rich("contact", payload=c.get("phone_number"), title=c.get("first_name"),
                       data=c)
    reply = msg["reply_to_message"] if isinstance(msg.get("reply_to_message"), dict) else {}
    return cx.received(
        key=key, sender=_sender(msg, chat),
        channel_message_id=f"{chat_id}:{need(msg, 'message_id')}",
        occurred_at=ms_from_seconds(msg.get("edit_date") or msg.get("date"),
                                    cx.req.received_at_ms),
        text=text(msg.get("text")) or (None if files else text(msg.get("caption"))),
        attachments=files, rich=content,
        reply_to=f"{chat_id}:{text(reply['message_id'])}" if reply.get("message_id") else None,
    )


def _files(msg: dict[str, Any]) -> list[dict[str, Any]]:
    caption = text(msg.get("caption"))
    out = []
    photos = as_list(msg.get("photo"), "photo")
    if photos:
        best = as_dict(photos[-1], "photo size")  # sizes ascend: the last is the original
        out.append(attachment("image", media_id=best.get("file_id"), caption=caption,
                              size_bytes=best.get("file_size")))
    for field, kind in FILES.items():
        f = msg.get(field)
        if isinstance(f, dict):
            out.append(attachment(kind, media_id=f.get("file_id"), mime_type=f.get("mime_type"),
                                  size_bytes=f.get("file_size"), filename=f.get("file_name"),
                                  caption=caption))
    return out


def _callback(cx: Ctx, key: str, cq: dict[str, Any]) -> dict[str, Any]:
    msg = cq["message"] if isinstance(cq.get("message"), dict) else {}
    chat = msg["chat"] if isinstance(msg.get("chat"), dict) else {}
    user = as_dict(cq.get("from"), "callback_query.from")
    reply_to = (f"{text(chat['id'])}:{text(msg['message_id'])}"
                if chat.get("id") is not None and msg.get("message_id") is not None else None)
    return cx.received(
        key=key, sender=_sender({"from": user}, chat),
        channel_message_id=f"callback:{need(cq, 'id')}",
        reply_to=reply_to,
        rich=rich("postback", payload=cq.get("data"),
                  data={"chat_instance": cq.get("chat_instance")}),
    )


ADAPTER = TelegramAdapter()
