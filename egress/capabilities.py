"""What each channel can show: the per-channel capability table (pure data).

Limits come from the providers' documentation (``shared/reference/CHANNELS.md``); where the
vendor states none, a conservative value is used and marked. ``render`` reads only this table,
so a channel's behaviour changes here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MB = 1024 * 1024


@dataclass(frozen=True)
class Caps:
    """One channel's (or provider route's) capabilities; 0 means "not supported"."""

    channel: str
    text_limit: int  # characters per text message (bytes of UTF-8 when text_in_bytes)
    text_in_bytes: bool = False
    body_limit: int = 0  # text carried by an interactive message (0: text_limit)
    reply_buttons: int = 0
    link_buttons: int = 0  # buttons that open a URL
    button_title: int = 20
    quick_replies: int = 0
    list_rows: int = 0
    row_title: int = 24
    carousel: int = 0  # cards per carousel
    min_carousel: int = 1
    location: bool = False
    media: dict[str, int] = field(default_factory=dict)  # kind -> max bytes
    templates: bool = False
    per_call: int = 1  # messages one API call may carry (LINE: 5)

    def media_limit(self, kind: str) -> int:
        return self.media.get(kind, 0)


_IMAGE_DOC = ("image", "video", "audio", "document")

CAPS: dict[str, Caps] = {
    "whatsapp": Caps("whatsapp", 4096, body_limit=1024, reply_buttons=3, link_buttons=1, button_title=20,
                     list_rows=10, row_title=24, location=True, templates=True,
                     media={"image": 5 * MB, "video": 16 * MB, "audio": 16 * MB, "document": 100 * MB,
                            "sticker": 500 * 1024}),
    "messenger": Caps("messenger", 2000, body_limit=640, reply_buttons=3, link_buttons=3, button_title=20,
                      quick_replies=13, carousel=10,
                      media={"image": 25 * MB, "video": 25 * MB, "audio": 25 * MB, "document": 25 * MB}),
    "instagram": Caps("instagram", 1000, text_in_bytes=True, quick_replies=13, button_title=20, carousel=10,
                      media={"image": 8 * MB, "video": 25 * MB, "audio": 25 * MB}),
    "sms": Caps("sms", 1600, media={k: 5 * MB for k in _IMAGE_DOC}),  # Twilio: MMS media
    "twilio_whatsapp": Caps("twilio_whatsapp", 1600, templates=True,
                            media={"image": 5 * MB, "video": 16 * MB, "audio": 16 * MB, "document": 16 * MB}),
    "telegram": Caps("telegram", 4096, body_limit=4096, reply_buttons=8, link_buttons=8, button_title=64,
                     quick_replies=12, list_rows=20, row_title=64, location=True,
                     media={"image": 10 * MB, "video": 50 * MB, "audio": 50 * MB, "document": 50 * MB}),
    "line": Caps("line", 5000, body_limit=160, reply_buttons=4, link_buttons=4, button_title=20,
                 quick_replies=13, carousel=10, location=True, per_call=5,
                 media={"image": 10 * MB, "video": 200 * MB, "audio": 200 * MB}),
    "viber": Caps("viber", 7000, reply_buttons=24, link_buttons=24, button_title=250, quick_replies=24,
                  list_rows=24, row_title=250, location=True,
                  media={"image": 1 * MB, "video": 26 * MB, "document": 50 * MB}),
    "wechat": Caps("wechat", 2048, templates=True,  # text limit: unverified, conservative
                   media={}),  # media needs an upload first (media_id): URLs are sent as links
    "rbm": Caps("rbm", 3072, reply_buttons=11, link_buttons=11, button_title=25, quick_replies=11,
                carousel=10, min_carousel=2, location=True,
                media={"image": 100 * MB, "video": 100 * MB}),
    "email": Caps("email", 1_000_000),  # everything degrades to plain text with links
    "webchat": Caps("webchat", 10_000, reply_buttons=10, link_buttons=10, button_title=64, quick_replies=13,
                    list_rows=100, row_title=128, carousel=10, location=True,
                    media={k: 100 * MB for k in (*_IMAGE_DOC, "sticker", "file")}),
}


def caps_for(channel: str, provider: str) -> Caps:
    """The capabilities of ``channel`` reached through ``provider`` (Twilio's WhatsApp differs)."""
    if provider == "twilio" and channel == "whatsapp":
        return CAPS["twilio_whatsapp"]
    return CAPS[channel]
