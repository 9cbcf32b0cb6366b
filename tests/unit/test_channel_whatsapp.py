"""WhatsApp Cloud API adapter: payloads shaped after Meta's webhook reference examples."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import replace

import pytest

from adapters.base import Rejected, Unmappable
from adapters.channels.whatsapp import ADAPTER

try:
    from channel_support import NEW, OLD, RAW_ID, RECEIVED_AT, TENANT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RAW_ID, RECEIVED_AT, TENANT, account, check_envelope, request, roundtrip

ACCOUNT = account("whatsapp", "106540352242922", verify_token="meatyhamhock")
WAMID = "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="


def value(**extra):
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        **extra,
    }


def webhook(*values, field="messages"):
    return {"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398",
        "changes": [{"value": v, "field": field} for v in values],
    }]}


TEXT = webhook(value(
    contacts=[{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
    messages=[{"from": "16505551234", "id": WAMID, "timestamp": "1749416383", "type": "text",
               "text": {"body": "Does it come in another color?"}}],
))


def signed(payload, secret=NEW, headers=None):
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return request(body, headers={"X-Hub-Signature-256": sig, **(headers or {})})


def parse(payload):
    return roundtrip(list(ADAPTER.parse(signed(payload), ACCOUNT)))


# --- handshake and signature ----------------------------------------------------------------------

def test_handshake_answers_the_challenge():
    req = request(method="GET", url="https://h.example/w?hub.mode=subscribe"
                  "&hub.verify_token=meatyhamhock&hub.challenge=1158201444")
    reply = ADAPTER.handshake(req, ACCOUNT)
    assert (reply.status, reply.body) == (200, "1158201444")


@pytest.mark.parametrize("query, status", [
    ("hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", 403),
    ("hub.mode=subscribe&hub.challenge=1", 403),
    ("hub.mode=unsubscribe&hub.verify_token=meatyhamhock&hub.challenge=1", 400),
    ("", 400),
])
def test_handshake_refusals(query, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.handshake(request(method="GET", url=f"https://h.example/w?{query}"), ACCOUNT)
    assert e.value.status == status


def test_post_is_not_a_handshake():
    assert ADAPTER.handshake(signed(TEXT), ACCOUNT) is None


@pytest.mark.parametrize("secret", [NEW, OLD], ids=["current", "previous (rotation)"])
def test_good_signature_under_either_secret(secret):
    ADAPTER.verify(signed(TEXT, secret), ACCOUNT)


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 403),
    ({"X-Hub-Signature-256": "md5=abc"}, 403),
    ({"X-Hub-Signature-256": "deadbeef"}, 403),
])
def test_bad_or_missing_signature(headers, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(json.dumps(TEXT), headers=headers), ACCOUNT)
    assert e.value.status == status
    assert "X-Hub-Signature-256" in e.value.reason


def test_signature_is_over_the_raw_bytes():
    req = signed(TEXT)
    tampered = request(req.body.replace(b"color", b"colour"), headers=dict(req.headers))
    with pytest.raises(Rejected):
        ADAPTER.verify(tampered, ACCOUNT)


def test_unknown_secret_is_refused():
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(signed(TEXT, "someone-else"), ACCOUNT)
    assert e.value.status == 403


# --- mapping --------------------------------------------------------------------------------------

def test_text_message_field_by_field():
    [ev] = parse(TEXT)
    check_envelope(ev, event_type="MessageReceived", adapter="whatsapp", key=WAMID,
                   channel="whatsapp", customer="16505551234", occurred_at=1749416383000)
    assert ev["channel_account_id"] == "106540352242922"
    assert ev["sender"] == {"channel": "whatsapp", "id": "16505551234",
                            "display_name": "Sheena Nelson", "phone_e164": "+16505551234",
                            "email": None, "login_id": None}
    assert ev["channel_message_id"] == WAMID
    assert ev["text"] == "Does it come in another color?"
    assert ev["attachments"] == [] and ev["rich"] is None and ev["subject"] is None
    assert ev["reply_to_channel_message_id"] is None
    assert ev["raw_event_id"] == RAW_ID
    assert ev["customer_id"] is None and ev["thread_id"] is None


def test_image_is_a_reference_with_media_id():
    [ev] = parse(webhook(value(
        contacts=[{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        messages=[{"from": "16505551234", "id": WAMID, "timestamp": "1744344496", "type": "image",
                   "image": {"caption": "Broken lid", "mime_type": "image/jpeg",
                             "sha256": "SfInY0gGpsOEJ4RUcJdYIkTZZ0ys9sK2Vg3Aeep5kY4=",
                             "id": "1003383421387256"},
                   "context": {"from": "15550783881", "id": "wamid.PREVIOUS"}}],
    )))
    assert ev["text"] is None
    assert ev["attachments"] == [{
        "kind": "image", "media_id": "1003383421387256", "url": None, "mime_type": "image/jpeg",
        "size_bytes": None, "sha256": "SfInY0gGpsOEJ4RUcJdYIkTZZ0ys9sK2Vg3Aeep5kY4=",
        "caption": "Broken lid", "filename": None}]
    assert ev["reply_to_channel_message_id"] == "wamid.PREVIOUS"


def test_document_keeps_its_filename():
    [ev] = parse(webhook(value(messages=[{
        "from": "16505551234", "id": WAMID, "timestamp": "1744344496", "type": "document",
        "document": {"filename": "invoice-42.pdf", "mime_type": "application/pdf",
                     "sha256": "abc", "id": "2003"}}])))
    assert ev["attachments"][0]["kind"] == "document"
    assert ev["attachments"][0]["filename"] == "invoice-42.pdf"
    assert ev["sender"]["display_name"] is None  # no contacts block


@pytest.mark.parametrize("message, kind, payload, title, text", [
    ({"type": "interactive", "interactive": {"type": "button_reply",
                                             "button_reply": {"id": "track", "title": "Track"}}},
     "button", "track", "Track", "Track"),
    ({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {
        "id": "refund", "title": "Refund", "description": "Get your money back"}}},
     "list_reply", "refund", "Refund", "Refund"),
    ({"type": "button", "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"}},
     "quick_reply", "STOP_PROMOS", "Stop promotions", "Stop promotions"),
    ({"type": "location", "location": {"latitude": 48.8566, "longitude": 2.3522,
                                       "name": "Paris store", "address": "1 rue X"}},
     "location", None, "Paris store", None),
    ({"type": "reaction", "reaction": {"message_id": "wamid.OURS", "emoji": "\U0001f44d"}},
     "reaction", "\U0001f44d", None, None),
    ({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann Lee"},
                                        "phones": [{"phone": "+1 650 555 0000"}]}]},
     "contact", None, "Ann Lee", None),
    ({"type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]},
     "unsupported", None, None, None),
])
def test_rich_content(message, kind, payload, title, text):
    msg = {"from": "16505551234", "id": WAMID, "timestamp": "1744344496", **message}
    [ev] = parse(webhook(value(messages=[msg])))
    assert (ev["rich"]["kind"], ev["rich"]["payload"], ev["rich"]["title"]) == (kind, payload, title)
    assert ev["text"] == text
    json.loads(ev["rich"]["data_json"])


def test_location_data():
    msg = {"from": "16505551234", "id": WAMID, "timestamp": "1", "type": "location",
           "location": {"latitude": 48.8566, "longitude": 2.3522}}
    [ev] = parse(webhook(value(messages=[msg])))
    assert json.loads(ev["rich"]["data_json"]) == {"latitude": 48.8566, "longitude": 2.3522}


@pytest.mark.parametrize("status", ["sent", "delivered", "read"])
def test_status_callbacks(status):
    [ev] = parse(webhook(value(statuses=[{
        "id": WAMID, "status": status, "timestamp": "1750263773", "recipient_id": "16505551234",
        "conversation": {"id": "4e8ab2b8", "origin": {"type": "service"}},
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "service"}}])))
    check_envelope(ev, event_type="DeliveryStatusChanged", adapter="whatsapp",
                   key=f"{WAMID}|{status}", channel="whatsapp", customer="16505551234",
                   occurred_at=1750263773000)
    assert ev["status"] == status
    assert ev["channel_message_id"] == WAMID
    assert ev["recipient"]["phone_e164"] == "+16505551234"
    assert ev["channel_account_id"] == "106540352242922"
    assert ev["error_code"] is None


def test_failed_status_carries_the_error():
    [ev] = parse(webhook(value(statuses=[{
        "id": WAMID, "status": "failed", "timestamp": "1750263773", "recipient_id": "16505551234",
        "errors": [{"code": 131047, "title": "Re-engagement message",
                    "message": "Re-engagement message",
                    "error_data": {"details": "Message failed to send because more than 24 "
                                              "hours have passed since the customer last replied"}}],
    }])))
    assert ev["status"] == "failed"
    assert ev["error_code"] == "131047"
    assert ev["error_message"].startswith("Message failed to send because more than 24 hours")


def test_each_status_of_a_message_has_its_own_id():
    events = parse(webhook(value(statuses=[
        {"id": WAMID, "status": s, "timestamp": "1", "recipient_id": "16505551234"}
        for s in ("sent", "delivered", "read")])))
    assert len({e["envelope"]["event_id"] for e in events}) == 3


def test_redelivery_yields_the_same_event_id():
    first = parse(TEXT)
    later = replace(signed(TEXT), received_at_ms=RECEIVED_AT + 3_600_000, raw_event_id="raw-2")
    again = ADAPTER.parse(later, ACCOUNT)
    assert first[0]["envelope"]["event_id"] == again[0]["envelope"]["event_id"]
    other = copy.deepcopy(TEXT)
    other["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = "wamid.OTHER"
    assert parse(other)[0]["envelope"]["event_id"] != first[0]["envelope"]["event_id"]


def test_event_ids_are_scoped_by_tenant():
    other_tenant = replace(ACCOUNT, tenant_id="globex")
    a = ADAPTER.parse(signed(TEXT), ACCOUNT)[0]["envelope"]["event_id"]
    b = ADAPTER.parse(signed(TEXT), other_tenant)[0]["envelope"]["event_id"]
    assert a != b


def test_batch_of_entries_and_messages_yields_every_event():
    payload = webhook(
        value(messages=[{"from": "16505551234", "id": f"wamid.{i}", "timestamp": "1",
                         "type": "text", "text": {"body": f"m{i}"}} for i in range(3)]),
        value(statuses=[{"id": "wamid.X", "status": "read", "timestamp": "2",
                         "recipient_id": "447700900123"}]),
    )
    payload["entry"].append(copy.deepcopy(payload["entry"][0]))
    payload["entry"][1]["changes"] = payload["entry"][1]["changes"][:1]
    for m in payload["entry"][1]["changes"][0]["value"]["messages"]:
        m["id"] += "b"
    events = parse(payload)
    assert [e["envelope"]["event_type"] for e in events] == \
        ["MessageReceived"] * 3 + ["DeliveryStatusChanged"] + ["MessageReceived"] * 3
    assert len({e["envelope"]["event_id"] for e in events}) == 7


def test_username_user_without_phone_falls_back_to_bsuid():
    [ev] = parse(webhook(value(
        contacts=[{"profile": {"name": "Sam", "username": "@sam"}, "user_id": "US.1349120865"}],
        messages=[{"from_user_id": "US.1349120865", "id": WAMID, "timestamp": "1",
                   "type": "text", "text": {"body": "hi"}}])))
    assert ev["sender"]["id"] == "US.1349120865"
    assert ev["sender"]["phone_e164"] is None
    assert ev["sender"]["display_name"] == "Sam"


@pytest.mark.parametrize("messages", [
    [{"from": "1", "id": "wamid.S", "timestamp": "1", "type": "system",
      "system": {"body": "changed number"}}],
    [],
])
def test_non_customer_messages_and_other_fields_are_skipped(messages):
    assert parse(webhook(value(messages=messages))) == []
    assert parse(webhook({"phone_number": "x", "event": "VERIFIED_ACCOUNT"},
                         field="account_update")) == []


def test_malformed_json_is_a_400():
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(request(b'{"object": "whatsapp_business_account", "entry": ['), ACCOUNT)
    assert e.value.status == 400 and "malformed JSON" in e.value.reason


@pytest.mark.parametrize("payload", [
    {"object": "page", "entry": []},
    {"hello": "world"},
    [1, 2, 3],
    {"object": "whatsapp_business_account"},
    webhook(value(messages=[{"from": "16505551234", "timestamp": "1", "type": "text",
                             "text": {"body": "no id"}}])),
    webhook(value(messages=[{"from": "16505551234", "id": "w", "timestamp": "1", "type": "text",
                             "text": {"body": ["not", "a", "string"]}}])),
])
def test_unrecognisable_payloads_are_unmappable(payload):
    with pytest.raises(Unmappable):
        ADAPTER.parse(request(payload), ACCOUNT)


def test_timestamp_falls_back_to_receipt_time():
    msg = {"from": "16505551234", "id": WAMID, "type": "text", "text": {"body": "x"}}
    [ev] = parse(webhook(value(messages=[msg])))
    assert ev["envelope"]["occurred_at"] == RECEIVED_AT


def test_tenant_is_the_accounts():
    [ev] = parse(TEXT)
    assert ev["envelope"]["tenant_id"] == TENANT


def test_ack_is_an_empty_200():
    assert ADAPTER.ack(signed(TEXT), []).status == 200
