"""Instagram messaging adapter: payloads shaped after the Instagram messaging webhook examples."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace

import pytest

from adapters.base import Rejected, Unmappable
from adapters.channels.instagram import ADAPTER

try:
    from channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip

IG_ACCOUNT, IGSID = "17841405822304914", "1254459154682919"
ACCOUNT = account("instagram", IG_ACCOUNT, verify_token="vt-ig")
MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAyMjI3MTQyNDgxOjM0MDI4MjM2Njg0MTcx"


def webhook(*messaging):
    return {"object": "instagram", "entry": [{"id": IG_ACCOUNT, "time": 1569262486134,
                                              "messaging": list(messaging)}]}


def event(**kind):
    return {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT},
            "timestamp": 1569262485349, **kind}


TEXT = webhook(event(message={"mid": MID, "text": "Is the blue jacket back in stock?"}))


def signed(payload, secret=NEW):
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return request(body, headers={"X-Hub-Signature-256": sig})


def parse(payload):
    return roundtrip(list(ADAPTER.parse(signed(payload), ACCOUNT)))


def test_handshake():
    req = request(method="GET", url="https://h.example/w?hub.mode=subscribe"
                  "&hub.verify_token=vt-ig&hub.challenge=42")
    assert ADAPTER.handshake(req, ACCOUNT).body == "42"


@pytest.mark.parametrize("secret", [NEW, OLD])
def test_signature_rotation(secret):
    ADAPTER.verify(signed(TEXT, secret), ACCOUNT)


@pytest.mark.parametrize("headers, status", [({}, 401),
                                             ({"x-hub-signature-256": "sha256=00"}, 403)])
def test_bad_or_missing_signature(headers, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(TEXT, headers=headers), ACCOUNT)
    assert e.value.status == status


def test_text_message_field_by_field():
    [ev] = parse(TEXT)
    check_envelope(ev, event_type="MessageReceived", adapter="instagram", key=MID,
                   channel="instagram", customer=IGSID, occurred_at=1569262485349)
    assert ev["channel_account_id"] == IG_ACCOUNT
    assert ev["sender"]["id"] == IGSID and ev["sender"]["channel"] == "instagram"
    assert ev["text"] == "Is the blue jacket back in stock?"
    assert ev["channel_message_id"] == MID


def test_share_and_image_attachments():
    [ev] = parse(webhook(event(message={"mid": MID, "attachments": [
        {"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/1"}},
        {"type": "share", "payload": {"url": "https://www.instagram.com/p/Cabc/"}},
    ]})))
    assert [(a["kind"], a["url"]) for a in ev["attachments"]] == [
        ("image", "https://lookaside.fbsbx.com/ig_messaging_cdn/1"),
        ("share", "https://www.instagram.com/p/Cabc/")]


def test_seen_is_a_read_status_per_mid():
    [ev] = parse(webhook(event(read={"mid": MID})))
    check_envelope(ev, event_type="DeliveryStatusChanged", adapter="instagram",
                   key=f"{MID}|read", channel="instagram", customer=IGSID,
                   occurred_at=1569262485349)
    assert ev["status"] == "read" and ev["channel_message_id"] == MID


def test_echo_and_deleted_are_skipped():
    assert parse(webhook(event(message={"mid": "m1", "text": "ours", "is_echo": True}),
                         event(message={"mid": "m2", "is_deleted": True}))) == []


def test_redelivery_same_id():
    a = ADAPTER.parse(signed(TEXT), ACCOUNT)[0]
    b = ADAPTER.parse(replace(signed(TEXT), received_at_ms=RECEIVED_AT + 1), ACCOUNT)[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def test_messenger_and_instagram_ids_differ_for_the_same_mid():
    from adapters.channels.messenger import ADAPTER as MESSENGER

    page = json.loads(json.dumps(TEXT).replace('"instagram"', '"page"'))
    m = MESSENGER.parse(request(page), account("messenger"))[0]
    i = ADAPTER.parse(request(TEXT), ACCOUNT)[0]
    assert m["envelope"]["event_id"] != i["envelope"]["event_id"]


def test_malformed_and_unmappable():
    with pytest.raises(Rejected):
        ADAPTER.parse(request(b"\xff\xfe"), ACCOUNT)
    with pytest.raises(Unmappable):
        ADAPTER.parse(request({"object": "page", "entry": []}), ACCOUNT)
