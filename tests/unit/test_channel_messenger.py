"""Messenger adapter: payloads shaped after the Messenger Platform webhook reference examples."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace

import pytest

from adapters.base import Rejected, Unmappable
from adapters.channels.messenger import ADAPTER

try:
    from channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip

PAGE, PSID = "106214628094391", "6783451208364107"
ACCOUNT = account("messenger", PAGE, verify_token="vt-messenger")
MID = "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"


def webhook(*messaging):
    return {"object": "page", "entry": [{"id": PAGE, "time": 1458692752478,
                                         "messaging": list(messaging)}]}


def event(**kind):
    return {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": 1458692752478, **kind}


TEXT = webhook(event(message={"mid": MID, "text": "hello, world!"}))


def signed(payload, secret=NEW):
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return request(body, headers={"X-Hub-Signature-256": sig})


def parse(payload):
    return roundtrip(list(ADAPTER.parse(signed(payload), ACCOUNT)))


def test_handshake():
    req = request(method="GET", url="https://h.example/w?hub.mode=subscribe"
                  "&hub.verify_token=vt-messenger&hub.challenge=CHALLENGE_ACCEPTED")
    assert ADAPTER.handshake(req, ACCOUNT).body == "CHALLENGE_ACCEPTED"
    with pytest.raises(Rejected) as e:
        ADAPTER.handshake(replace(req, query={**req.query, "hub.verify_token": "x"}), ACCOUNT)
    assert e.value.status == 403


@pytest.mark.parametrize("secret", [NEW, OLD])
def test_signature_rotation(secret):
    ADAPTER.verify(signed(TEXT, secret), ACCOUNT)


@pytest.mark.parametrize("headers, status", [
    ({}, 401), ({"X-Hub-Signature-256": "sha256=" + "ab" * 32}, 403)])
def test_bad_or_missing_signature(headers, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(TEXT, headers=headers), ACCOUNT)
    assert e.value.status == status


def test_text_message_field_by_field():
    [ev] = parse(TEXT)
    check_envelope(ev, event_type="MessageReceived", adapter="messenger", key=MID,
                   channel="messenger", customer=PSID, occurred_at=1458692752478)
    assert ev["channel_account_id"] == PAGE
    assert ev["sender"] == {"channel": "messenger", "id": PSID, "display_name": None,
                            "phone_e164": None, "email": None, "login_id": None}
    assert ev["channel_message_id"] == MID
    assert ev["text"] == "hello, world!"
    assert ev["attachments"] == [] and ev["rich"] is None


def test_quick_reply_and_reply_to():
    [ev] = parse(webhook(event(message={
        "mid": MID, "text": "Track my order", "quick_reply": {"payload": "TRACK_ORDER"},
        "reply_to": {"mid": "m_previous"}})))
    assert ev["rich"]["kind"] == "quick_reply"
    assert ev["rich"]["payload"] == "TRACK_ORDER"
    assert ev["rich"]["title"] == "Track my order"
    assert ev["reply_to_channel_message_id"] == "m_previous"


def test_attachments_are_references():
    [ev] = parse(webhook(event(message={"mid": MID, "attachments": [
        {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/t1/photo.jpg"}},
        {"type": "file", "payload": {"url": "https://cdn.fbsbx.com/v/t59/invoice.pdf"}},
        {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/sticker.png",
                                      "sticker_id": 369239263222822}},
    ]})))
    assert [(a["kind"], a["url"]) for a in ev["attachments"]] == [
        ("image", "https://scontent.xx.fbcdn.net/v/t1/photo.jpg"),
        ("file", "https://cdn.fbsbx.com/v/t59/invoice.pdf"),
        ("sticker", "https://scontent.xx.fbcdn.net/sticker.png"),
    ]
    assert ev["text"] is None


def test_location_attachment_is_rich_content():
    [ev] = parse(webhook(event(message={"mid": MID, "attachments": [{
        "type": "location", "title": "Pinned Location",
        "payload": {"coordinates": {"lat": 52.3765533, "long": 9.7389123}}}]})))
    assert ev["rich"]["kind"] == "location"
    assert json.loads(ev["rich"]["data_json"])["latitude"] == 52.3765533
    assert ev["attachments"] == []


def test_postback():
    [ev] = parse(webhook(event(postback={"title": "Talk to an agent", "payload": "HUMAN",
                                         "mid": "m_postback_1"})))
    assert ev["rich"] == {"kind": "postback", "payload": "HUMAN", "title": "Talk to an agent",
                          "data_json": "{}"}
    assert ev["channel_message_id"] == "m_postback_1"
    assert ev["text"] == "Talk to an agent"


def test_delivery_yields_one_status_per_mid():
    events = parse(webhook(event(delivery={"mids": ["m_1", "m_2"], "watermark": 1458668856253})))
    assert [(e["channel_message_id"], e["status"]) for e in events] == \
        [("m_1", "delivered"), ("m_2", "delivered")]
    check_envelope(events[0], event_type="DeliveryStatusChanged", adapter="messenger",
                   key="m_1|delivered", channel="messenger", customer=PSID,
                   occurred_at=1458692752478)
    assert events[0]["recipient"]["id"] == PSID


def test_read_with_only_a_watermark():
    [ev] = parse(webhook(event(read={"watermark": 1458668856253})))
    assert ev["status"] == "read"
    assert ev["channel_message_id"] == "watermark:1458668856253"
    check_envelope(ev, event_type="DeliveryStatusChanged", adapter="messenger",
                   key=f"{PSID}|watermark:1458668856253|read", channel="messenger",
                   customer=PSID, occurred_at=1458692752478)


def test_echoes_and_unknown_events_are_skipped():
    echo = event(message={"mid": "m_echo", "text": "our reply", "is_echo": True,
                          "app_id": 1517776481860111})
    reaction = event(reaction={"mid": MID, "action": "react", "emoji": "\u2764",
                               "reaction": "love"})
    assert parse(webhook(echo, reaction)) == []
    assert parse({"object": "page", "entry": [{"id": PAGE, "time": 1, "standby": []}]}) == []


def test_batched_entries():
    payload = webhook(event(message={"mid": "m_a", "text": "a"}),
                      event(message={"mid": "m_b", "text": "b"}))
    payload["entry"].append({"id": PAGE, "time": 2,
                             "messaging": [event(message={"mid": "m_c", "text": "c"})]})
    assert [e["channel_message_id"] for e in parse(payload)] == ["m_a", "m_b", "m_c"]


def test_redelivery_same_id():
    a = ADAPTER.parse(signed(TEXT), ACCOUNT)[0]
    b = ADAPTER.parse(replace(signed(TEXT), received_at_ms=RECEIVED_AT + 5000), ACCOUNT)[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def test_malformed_and_unmappable():
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(request(b"{not json"), ACCOUNT)
    assert e.value.status == 400
    for payload in ({"object": "instagram", "entry": []}, {"object": "page"}, "text"):
        with pytest.raises(Unmappable):
            ADAPTER.parse(request(payload if isinstance(payload, dict) else '"text"'), ACCOUNT)
    with pytest.raises(Unmappable):  # a message without its mid
        ADAPTER.parse(request(webhook(event(message={"text": "x"}))), ACCOUNT)
