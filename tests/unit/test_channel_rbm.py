"""Google RBM adapter: pushes shaped after Google's webhook guide and UserMessage/UserEvent docs.

No official Python SDK signs RBM webhooks: X-Goog-Signature is computed here with stdlib hmac
(SHA-512 over the base64-decoded ``message.data``, base64-encoded), as the guide's Node.js
example does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace

import pytest

from adapters.base import Rejected, Unmappable
from adapters.channels.rbm import ADAPTER

try:
    from channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip

AGENT = "growing-tree-bank-nbdjkl6t_agent@rbm.goog"
ACCOUNT = account("rbm", "growing-tree-bank")
PHONE = "+12223334444"
MID = "MxFfLd6tCSQ8aNgcAo4xKT1A"


def inner(**content):
    return {"senderPhoneNumber": PHONE, "messageId": MID, "sendTime": "2021-08-27T17:53:52.243Z",
            "agentId": AGENT, **content}


def push(data: dict, token=NEW, raw: bytes | None = None):
    payload = raw if raw is not None else json.dumps(data).encode()
    body = {"message": {"attributes": {"message_type": "USER_MESSAGE"},
                        "data": base64.b64encode(payload).decode(),
                        "messageId": "2808283917355404", "publishTime": "2021-08-27T17:53:52.396Z"},
            "subscription": "projects/rbm-growing-tree-bank/subscriptions/rbm-agent-subscription"}
    sig = base64.b64encode(hmac.new(token.encode(), payload, hashlib.sha512).digest()).decode()
    return request(body, headers={"X-Goog-Signature": sig})


def parse(data):
    return roundtrip(list(ADAPTER.parse(push(data), ACCOUNT)))


TEXT = inner(text="Hello, what are your opening hours?")


def test_client_token_handshake():
    req = request({"clientToken": NEW, "secret": "1234567890"})
    reply = ADAPTER.handshake(req, ACCOUNT)
    assert (reply.status, reply.body) == (200, "1234567890")
    assert ADAPTER.handshake(request({"clientToken": OLD, "secret": "9"}), ACCOUNT).body == "9"
    with pytest.raises(Rejected) as e:
        ADAPTER.handshake(request({"clientToken": "SJENCPGJESMGUFPY", "secret": "1"}), ACCOUNT)
    assert e.value.status == 403


def test_a_push_is_not_a_handshake():
    assert ADAPTER.handshake(push(TEXT), ACCOUNT) is None
    assert ADAPTER.handshake(request(b"not json"), ACCOUNT) is None


@pytest.mark.parametrize("token", [NEW, OLD])
def test_signature_over_decoded_data_with_rotation(token):
    ADAPTER.verify(push(TEXT, token), ACCOUNT)


def test_bad_or_missing_signature():
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(replace(push(TEXT), headers={}), ACCOUNT)
    assert e.value.status == 401
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(push(TEXT, "another-client-token"), ACCOUNT)
    assert e.value.status == 403
    # the signature covers the decoded data, not the envelope's base64 text
    good = push(TEXT)
    body = json.loads(good.body)
    body["message"]["data"] = base64.b64encode(json.dumps(inner(text="evil")).encode()).decode()
    with pytest.raises(Rejected):
        ADAPTER.verify(replace(good, body=json.dumps(body).encode()), ACCOUNT)


def test_text_message_field_by_field():
    [ev] = parse(TEXT)
    check_envelope(ev, event_type="MessageReceived", adapter="rbm", key=MID, channel="rbm",
                   customer=PHONE, occurred_at=1630086832243)
    assert ev["sender"] == {"channel": "rbm", "id": PHONE, "display_name": None,
                            "phone_e164": PHONE, "email": None, "login_id": None}
    assert ev["channel_account_id"] == AGENT
    assert ev["channel_message_id"] == MID
    assert ev["text"] == "Hello, what are your opening hours?"


def test_user_file_is_a_reference():
    [ev] = parse(inner(userFile={
        "category": "IMAGE",
        "thumbnail": {"mimeType": "image/jpeg", "fileSizeBytes": 1024,
                      "fileUri": "https://rcs-copper-us.googleapis.com/thumb", "fileName": "t.jpg"},
        "payload": {"mimeType": "image/jpeg", "fileSizeBytes": "98304",
                    "fileUri": "https://rcs-copper-us.googleapis.com/file", "fileName": "p.jpg"}}))
    assert ev["attachments"] == [{
        "kind": "image", "media_id": None, "url": "https://rcs-copper-us.googleapis.com/file",
        "mime_type": "image/jpeg", "size_bytes": 98304, "sha256": None, "caption": None,
        "filename": "p.jpg"}]


def test_suggestion_response_and_location():
    [ev] = parse(inner(suggestionResponse={"postbackData": "check_balance",
                                           "text": "Check balance", "type": "REPLY"}))
    assert (ev["rich"]["kind"], ev["rich"]["payload"], ev["text"]) == \
        ("quick_reply", "check_balance", "Check balance")
    [loc] = parse(inner(location={"latitude": 37.422, "longitude": -122.0841}))
    assert loc["rich"]["kind"] == "location"


@pytest.mark.parametrize("event_type, status", [("DELIVERED", "delivered"), ("READ", "read")])
def test_user_events_are_statuses(event_type, status):
    [ev] = parse({"senderPhoneNumber": PHONE, "eventType": event_type, "eventId": "Mxxyz",
                  "messageId": "our-message-1", "sendTime": "2021-08-27T17:53:53.5Z",
                  "agentId": AGENT})
    check_envelope(ev, event_type="DeliveryStatusChanged", adapter="rbm",
                   key=f"our-message-1|{status}", channel="rbm", customer=PHONE,
                   occurred_at=1630086833500)
    assert ev["status"] == status and ev["channel_message_id"] == "our-message-1"


def test_typing_is_skipped():
    assert parse({"senderPhoneNumber": PHONE, "eventType": "IS_TYPING", "eventId": "e",
                  "sendTime": "2021-08-27T17:53:53Z", "agentId": AGENT}) == []


@pytest.mark.parametrize("send_time, expected", [
    ("2014-10-02T15:01:23Z", 1412262083000),
    ("2014-10-02T15:01:23.045123456Z", 1412262083045),
    ("2014-10-02T15:01:23+05:30", 1412242283000),
    ("not a time", RECEIVED_AT),
])
def test_send_time_parsing(send_time, expected):
    [ev] = parse({**TEXT, "sendTime": send_time})
    assert ev["envelope"]["occurred_at"] == expected


def test_redelivery_same_id():
    a = ADAPTER.parse(push(TEXT), ACCOUNT)[0]
    b = ADAPTER.parse(replace(push(TEXT), received_at_ms=RECEIVED_AT + 600_000), ACCOUNT)[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def test_malformed_inputs_are_400():
    with pytest.raises(Rejected):
        ADAPTER.parse(request(b"{"), ACCOUNT)
    with pytest.raises(Rejected):
        ADAPTER.parse(request({"message": {"data": "%%% not base64"}}), ACCOUNT)
    with pytest.raises(Rejected):
        ADAPTER.parse(push({}, raw=b"{not json"), ACCOUNT)


@pytest.mark.parametrize("data", [{"foo": 1}, inner(), {"senderPhoneNumber": PHONE}])
def test_unmappable(data):
    with pytest.raises(Unmappable):
        ADAPTER.parse(push(data), ACCOUNT)
