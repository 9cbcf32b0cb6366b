"""Telegram adapter; updates built with ``python-telegram-bot``'s own ``Update`` objects."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from telegram import CallbackQuery, Chat, Contact, Document, Location, Message, PhotoSize, Update, User

from adapters.base import Rejected, Unmappable
from adapters.channels.telegram import ADAPTER

try:
    from channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip

ACCOUNT = account("telegram", "7012345678")
WHEN = datetime(2024, 11, 12, 8, 0, tzinfo=UTC)
USER = User(id=1111111, is_bot=False, first_name="Marie", last_name="Curie", username="mcurie")
CHAT = Chat(id=1111111, type="private", first_name="Marie")
HEADER = "X-Telegram-Bot-Api-Secret-Token"


def message(**kw) -> Message:
    return Message(message_id=1365, date=WHEN, chat=CHAT, from_user=USER, **kw)


def update_json(update_id=10000, **kw) -> dict:
    return Update(update_id=update_id, **kw).to_dict()


def post(payload, secret=NEW):
    return request(json.dumps(payload), headers={HEADER: secret})


def parse(payload):
    return roundtrip(list(ADAPTER.parse(post(payload), ACCOUNT)))


TEXT = update_json(message=message(text="Bonjour, ma commande n'est pas arrivée"))


@pytest.mark.parametrize("secret", [NEW, OLD])
def test_secret_token_rotation(secret):
    ADAPTER.verify(post(TEXT, secret), ACCOUNT)


@pytest.mark.parametrize("headers, status", [({}, 401), ({HEADER: "guess"}, 403),
                                             ({HEADER: NEW + "x"}, 403)])
def test_bad_or_missing_secret(headers, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(TEXT, headers=headers), ACCOUNT)
    assert e.value.status == status


def test_no_handshake():
    assert ADAPTER.handshake(post(TEXT), ACCOUNT) is None


def test_text_message_field_by_field():
    [ev] = parse(TEXT)
    check_envelope(ev, event_type="MessageReceived", adapter="telegram", key="10000",
                   channel="telegram", customer="1111111", occurred_at=1731398400000)
    assert ev["sender"] == {"channel": "telegram", "id": "1111111", "display_name": "Marie Curie",
                            "phone_e164": None, "email": None, "login_id": None}
    assert ev["channel_account_id"] == "7012345678"
    assert ev["channel_message_id"] == "1111111:1365"
    assert ev["text"] == "Bonjour, ma commande n'est pas arrivée"
    assert ev["attachments"] == [] and ev["rich"] is None


def test_photo_takes_the_largest_size_and_the_caption():
    photo = (PhotoSize("AgAD-small", "u1", 90, 67, file_size=1254),
             PhotoSize("AgAD-large", "u2", 1280, 960, file_size=110472))
    [ev] = parse(update_json(message=message(photo=photo, caption="Colis abîmé")))
    assert ev["attachments"] == [{"kind": "image", "media_id": "AgAD-large", "url": None,
                                  "mime_type": None, "size_bytes": 110472, "sha256": None,
                                  "caption": "Colis abîmé", "filename": None}]
    assert ev["text"] is None


def test_document():
    doc = Document("BQACAgIAAxk", "u3", file_name="facture.pdf", mime_type="application/pdf",
                   file_size=52011)
    [ev] = parse(update_json(message=message(document=doc)))
    [a] = ev["attachments"]
    assert (a["kind"], a["media_id"], a["filename"], a["mime_type"], a["size_bytes"]) == \
        ("document", "BQACAgIAAxk", "facture.pdf", "application/pdf", 52011)


def test_location_and_own_contact():
    [loc] = parse(update_json(message=message(location=Location(2.3522, 48.8566))))
    assert loc["rich"]["kind"] == "location"
    assert json.loads(loc["rich"]["data_json"]) == {"latitude": 48.8566, "longitude": 2.3522}
    own = Contact("33612345678", "Marie", user_id=1111111)
    [c] = parse(update_json(message=message(contact=own)))
    assert c["sender"]["phone_e164"] == "+33612345678"  # shared by the user: an identity signal
    other = Contact("+33700000000", "Pierre", user_id=2222222)
    [c2] = parse(update_json(message=message(contact=other)))
    assert c2["sender"]["phone_e164"] is None and c2["rich"]["kind"] == "contact"


def test_reply_to_message():
    original = Message(message_id=1300, date=WHEN, chat=CHAT, text="earlier")
    [ev] = parse(update_json(message=message(text="see above", reply_to_message=original)))
    assert ev["reply_to_channel_message_id"] == "1111111:1300"


def test_edited_message_is_a_new_event_for_the_same_message():
    edited = update_json(update_id=10001, edited_message=message(
        text="corrected", edit_date=datetime(2024, 11, 12, 8, 5, tzinfo=UTC)))
    [a], [b] = parse(TEXT), parse(edited)
    assert a["channel_message_id"] == b["channel_message_id"]
    assert a["envelope"]["event_id"] != b["envelope"]["event_id"]
    assert b["envelope"]["occurred_at"] == 1731398700000


def test_callback_query_is_a_postback():
    cq = CallbackQuery("4382bfdwdsb323b2d9", USER, "-3458", data="ORDER_STATUS",
                       message=message(text="Choose:"))
    [ev] = parse(update_json(update_id=10002, callback_query=cq))
    assert ev["rich"]["kind"] == "postback" and ev["rich"]["payload"] == "ORDER_STATUS"
    assert ev["channel_message_id"] == "callback:4382bfdwdsb323b2d9"
    assert ev["reply_to_channel_message_id"] == "1111111:1365"
    assert ev["envelope"]["occurred_at"] == RECEIVED_AT  # callback queries carry no date


def test_redelivery_same_id():
    a = ADAPTER.parse(post(TEXT), ACCOUNT)[0]
    b = ADAPTER.parse(replace(post(TEXT), received_at_ms=RECEIVED_AT + 60_000), ACCOUNT)[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def test_other_updates_are_skipped():
    post_ = Message(message_id=9, date=WHEN, chat=Chat(id=-100123, type="channel"), text="news")
    assert parse(update_json(channel_post=post_)) == []


def test_malformed_and_unmappable():
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(request(b'{"update_id": 1,'), ACCOUNT)
    assert e.value.status == 400
    for payload in ({"message": {"text": "no update id"}}, [TEXT], {"update_id": 5, "message": {
            "message_id": 1, "date": 1, "text": "no chat"}}):
        with pytest.raises(Unmappable):
            ADAPTER.parse(request(payload), ACCOUNT)
