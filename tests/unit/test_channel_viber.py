"""Viber adapter; signatures cross-checked with ``viberbot``'s ``Api.verify_signature``."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace

import pytest
from viberbot import Api, BotConfiguration

from adapters.base import Rejected, Unmappable
from adapters.channels.viber import ADAPTER

try:
    from channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip

ACCOUNT = account("viber", "acme-bot")
USER = "01234567890A="
TOKEN = 4912661846655238145

TEXT = {  # the callback example of the Viber REST Bot API documentation
    "event": "message", "timestamp": 1457764197627, "message_token": TOKEN,
    "sender": {"id": USER, "name": "John McClane", "avatar": "http://avatar.example.com",
               "country": "UK", "language": "en", "api_version": 1},
    "message": {"type": "text", "text": "a message to the service",
                "tracking_data": "tracking data"},
}


def api(token=NEW):
    return Api(BotConfiguration(name="Acme", avatar="http://a.example/a.png", auth_token=token))


def post(payload, token=NEW):
    body = json.dumps(payload).encode()
    sig = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return request(body, headers={"X-Viber-Content-Signature": sig})


def parse(payload):
    return roundtrip(list(ADAPTER.parse(post(payload), ACCOUNT)))


@pytest.mark.parametrize("token", [NEW, OLD])
def test_signature_agrees_with_viberbot(token):
    req = post(TEXT, token)
    assert api(token).verify_signature(req.body, req.headers["x-viber-content-signature"])
    ADAPTER.verify(req, ACCOUNT)


@pytest.mark.parametrize("headers, status", [({}, 401),
                                             ({"X-Viber-Content-Signature": "00" * 32}, 403)])
def test_bad_or_missing_signature(headers, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(TEXT, headers=headers), ACCOUNT)
    assert e.value.status == status


def test_text_message_field_by_field_and_viberbot_agrees():
    req = post(TEXT)
    sdk = api().parse_request(req.body)
    [ev] = roundtrip(list(ADAPTER.parse(req, ACCOUNT)))
    check_envelope(ev, event_type="MessageReceived", adapter="viber", key=str(TOKEN),
                   channel="viber", customer=USER, occurred_at=sdk.timestamp)
    assert ev["channel_message_id"] == str(sdk.message_token)
    assert ev["sender"] == {"channel": "viber", "id": sdk.sender.id,
                            "display_name": sdk.sender.name, "phone_e164": None, "email": None,
                            "login_id": None}
    assert ev["text"] == sdk.message.text
    assert ev["channel_account_id"] == "acme-bot"


@pytest.mark.parametrize("message, kind, url, extra", [
    ({"type": "picture", "text": "my parcel", "media": "https://dl-media.viber.com/5/p.jpg",
      "thumbnail": "https://dl-media.viber.com/5/t.jpg", "size": 20345},
     "image", "https://dl-media.viber.com/5/p.jpg", {"caption": "my parcel", "size_bytes": 20345}),
    ({"type": "file", "media": "https://dl-media.viber.com/5/f.pdf", "size": 10000,
      "file_name": "invoice.pdf"}, "file", "https://dl-media.viber.com/5/f.pdf",
     {"filename": "invoice.pdf"}),
    ({"type": "video", "media": "https://dl-media.viber.com/5/v.mp4", "size": 1000000,
      "duration": 10}, "video", "https://dl-media.viber.com/5/v.mp4", {}),
    ({"type": "sticker", "sticker_id": 46105, "media": "https://viber.com/s.png"},
     "sticker", "https://viber.com/s.png", {"media_id": "46105"}),
])
def test_media_are_references(message, kind, url, extra):
    [ev] = parse({**TEXT, "message": message})
    [a] = ev["attachments"]
    assert (a["kind"], a["url"]) == (kind, url)
    for k, v in extra.items():
        assert a[k] == v


def test_location_and_contact():
    [loc] = parse({**TEXT, "message": {"type": "location",
                                       "location": {"lat": 50.76891, "lon": 6.11499}}})
    assert json.loads(loc["rich"]["data_json"]) == {"latitude": 50.76891, "longitude": 6.11499}
    [c] = parse({**TEXT, "message": {"type": "contact",
                                     "contact": {"name": "Itamar", "phone_number": "+972511123123"}}})
    assert c["rich"]["kind"] == "contact" and c["rich"]["payload"] == "+972511123123"


@pytest.mark.parametrize("event, status", [("delivered", "delivered"), ("seen", "read"),
                                           ("failed", "failed")])
def test_status_callbacks(event, status):
    payload = {"event": event, "timestamp": 1457764197627, "message_token": 491266184665523145,
               "user_id": USER}
    if event == "failed":
        payload["desc"] = "failure description"
    [ev] = parse(payload)
    check_envelope(ev, event_type="DeliveryStatusChanged", adapter="viber",
                   key=f"491266184665523145|{status}", channel="viber", customer=USER,
                   occurred_at=1457764197627)
    assert ev["status"] == status and ev["channel_message_id"] == "491266184665523145"
    assert ev["error_message"] == ("failure description" if event == "failed" else None)


@pytest.mark.parametrize("payload", [
    {"event": "webhook", "timestamp": 1457764197627, "chat_hostname": "SN-376_",
     "message_token": 5098034272017990000},
    {"event": "subscribed", "timestamp": 1457764197627, "user": {"id": USER, "name": "John"},
     "message_token": 4912661846655238145},
    {"event": "conversation_started", "timestamp": 1457764197627, "message_token": 1,
     "type": "open", "context": "ctx", "user": {"id": USER}, "subscribed": False},
])
def test_non_message_events_store_nothing(payload):
    assert parse(payload) == []


def test_redelivery_same_id():
    a = ADAPTER.parse(post(TEXT), ACCOUNT)[0]
    b = ADAPTER.parse(replace(post(TEXT), received_at_ms=RECEIVED_AT + 1), ACCOUNT)[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def test_limit_is_above_vibers_own_30kb_cap():
    assert 30 * 1024 < ADAPTER.max_body_bytes <= 128 * 1024


def test_malformed_and_unmappable():
    with pytest.raises(Rejected):
        ADAPTER.parse(request(b"{"), ACCOUNT)
    for payload in ({"timestamp": 1}, {"event": 5}, {"event": "message", "message_token": 1}):
        with pytest.raises(Unmappable):
            ADAPTER.parse(request(payload), ACCOUNT)
