"""LINE adapter; signatures and parsing cross-checked with ``line-bot-sdk`` v3."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace

import pytest
from linebot.v3.webhook import SignatureValidator, WebhookParser

from adapters.base import Rejected, Unmappable
from adapters.channels.line import ADAPTER

try:
    from channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip

BOT = "Ub1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6"
USER = "U4af4980629e0b5f8e2a6fb1c9e12cd34"
ACCOUNT = account("line", BOT)


def ev(event_id, type_="message", ts=1462629479859, **kw):
    return {"type": type_, "mode": "active", "timestamp": ts,
            "source": {"type": "user", "userId": USER}, "webhookEventId": event_id,
            "deliveryContext": {"isRedelivery": False}, "replyToken": "nHuyWiB7yP5Zw52FIkcQob",
            **kw}


def webhook(*events):
    return {"destination": BOT, "events": list(events)}


TEXT = webhook(ev("01FZ74A0TDDPYRVKNK77XKC3ZR", message={
    "id": "444573844083572737", "type": "text", "quoteToken": "q3Plxr4AgKd",
    "text": "Good Morning!! (love)"}))


def sign(body: bytes, secret=NEW) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def post(payload, secret=NEW):
    body = json.dumps(payload).encode()
    return request(body, headers={"x-line-signature": sign(body, secret)})


def parse(payload):
    return roundtrip(list(ADAPTER.parse(post(payload), ACCOUNT)))


@pytest.mark.parametrize("secret", [NEW, OLD])
def test_signature_agrees_with_the_sdk(secret):
    req = post(TEXT, secret)
    assert SignatureValidator(secret).validate(req.body.decode(), req.headers["x-line-signature"])
    ADAPTER.verify(req, ACCOUNT)


@pytest.mark.parametrize("headers, status", [({}, 401),
                                             ({"x-line-signature": sign(b"other")}, 403)])
def test_bad_or_missing_signature(headers, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(TEXT, headers=headers), ACCOUNT)
    assert e.value.status == status


def test_text_message_field_by_field_and_sdk_agrees():
    req = post(TEXT)
    [sdk] = WebhookParser(NEW).parse(req.body.decode(), req.headers["x-line-signature"])
    [e] = roundtrip(list(ADAPTER.parse(req, ACCOUNT)))
    check_envelope(e, event_type="MessageReceived", adapter="line", key=sdk.webhook_event_id,
                   channel="line", customer=sdk.source.user_id, occurred_at=sdk.timestamp)
    assert e["channel_message_id"] == sdk.message.id == "444573844083572737"
    assert e["text"] == sdk.message.text
    assert e["channel_account_id"] == BOT
    assert e["sender"] == {"channel": "line", "id": USER, "display_name": None,
                           "phone_e164": None, "email": None, "login_id": None}


def test_console_verify_with_no_events_stores_nothing():
    assert parse({"destination": BOT, "events": []}) == []


def test_batch_yields_every_event_in_order():
    events = parse(webhook(
        ev("01A", message={"id": "1", "type": "text", "quoteToken": "q", "text": "one"}),
        ev("01B", type_="follow"),
        ev("01C", message={"id": "3", "type": "text", "quoteToken": "q", "text": "three"}),
    ))
    assert [e["text"] for e in events] == ["one", "three"]


@pytest.mark.parametrize("message, kind, media_id, url, extra", [
    ({"id": "354718705033693859", "type": "image", "quoteToken": "q",
      "contentProvider": {"type": "line"}}, "image", "354718705033693859", None, {}),
    ({"id": "325708", "type": "video", "quoteToken": "q", "duration": 60000,
      "contentProvider": {"type": "external", "originalContentUrl": "https://ex.com/v.mp4",
                          "previewImageUrl": "https://ex.com/p.jpg"}},
     "video", "325708", "https://ex.com/v.mp4", {}),
    ({"id": "325709", "type": "file", "fileName": "file.txt", "fileSize": 2138},
     "file", "325709", None, {"filename": "file.txt", "size_bytes": 2138}),
    ({"id": "1501597916", "type": "sticker", "quoteToken": "q", "packageId": "446",
      "stickerId": "1988", "stickerResourceType": "ANIMATION"}, "sticker", "446/1988", None, {}),
])
def test_media_are_references(message, kind, media_id, url, extra):
    [e] = parse(webhook(ev("01M", message=message)))
    [a] = e["attachments"]
    assert (a["kind"], a["media_id"], a["url"]) == (kind, media_id, url)
    for k, v in extra.items():
        assert a[k] == v


def test_location():
    [e] = parse(webhook(ev("01L", message={
        "id": "325710", "type": "location", "title": "my location",
        "address": "1-3 Kioicho, Chiyoda-ku, Tokyo, 102-8282, Japan",
        "latitude": 35.67966, "longitude": 139.73669})))
    assert e["rich"]["kind"] == "location" and e["rich"]["title"] == "my location"


def test_postback():
    [e] = parse(webhook(ev("01P", type_="postback", postback={
        "data": "action=buy&itemid=111", "params": {"datetime": "2017-12-25T01:00"}})))
    assert e["rich"]["kind"] == "postback" and e["rich"]["payload"] == "action=buy&itemid=111"
    assert e["channel_message_id"] == "01P"


def test_redelivery_keeps_the_webhook_event_id():
    redelivered = json.loads(json.dumps(TEXT))
    redelivered["events"][0]["deliveryContext"]["isRedelivery"] = True
    a = parse(TEXT)[0]
    b = roundtrip(list(ADAPTER.parse(replace(post(redelivered), received_at_ms=RECEIVED_AT + 1),
                                     ACCOUNT)))[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def test_malformed_and_unmappable():
    with pytest.raises(Rejected):
        ADAPTER.parse(request(b"{]"), ACCOUNT)
    for payload in ({"destination": BOT}, {"events": "nope"}, [1]):
        with pytest.raises(Unmappable):
            ADAPTER.parse(request(payload), ACCOUNT)
    with pytest.raises(Unmappable):  # a message event without its webhookEventId
        bad = webhook(ev("x", message={"id": "1", "type": "text", "text": "t"}))
        del bad["events"][0]["webhookEventId"]
        ADAPTER.parse(request(bad), ACCOUNT)
