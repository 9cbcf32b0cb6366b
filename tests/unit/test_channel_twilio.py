"""Twilio adapter, with the official ``twilio`` SDK's RequestValidator as the signing client."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from adapters.base import Rejected, Unmappable
from adapters.channels.twilio import ADAPTER

try:
    from channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip

ACCOUNT = account("twilio", "AC0123456789abcdef0123456789abcdef")
URL = "https://hooks.example.com/webhooks/twilio/AC0123456789abcdef0123456789abcdef"
SID = "SM1f0e8ae6ade43cb3c0ce4525424e404f"
FORM = "application/x-www-form-urlencoded"

SMS = {  # the parameters of Twilio's incoming-message webhook example
    "ToCountry": "US", "ToState": "CA", "SmsMessageSid": SID, "NumMedia": "0",
    "ToCity": "SAN FRANCISCO", "FromZip": "94105", "SmsSid": SID, "FromState": "CA",
    "SmsStatus": "received", "FromCity": "SAN FRANCISCO", "Body": "Where is my parcel?",
    "FromCountry": "US", "To": "+14155552345", "ToZip": "94105", "NumSegments": "1",
    "MessageSid": SID, "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "+14155551234", "ApiVersion": "2010-04-01",
}


def post(params, token=NEW, url=URL, sign_url=None, algorithm=None, headers=None):
    sig = RequestValidator(token).compute_signature(sign_url or url, params, algorithm)
    h = {"Content-Type": FORM, "X-Twilio-Signature": sig, **(headers or {})}
    return request(urlencode(params), url=url, headers=h)


def parse(params):
    return roundtrip(list(ADAPTER.parse(post(params), ACCOUNT)))


# --- signature --------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [NEW, OLD], ids=["current", "previous (rotation)"])
def test_sdk_signed_request_verifies(token):
    req = post(SMS, token)
    assert RequestValidator(token).validate(URL, SMS, req.headers["x-twilio-signature"])
    ADAPTER.verify(req, ACCOUNT)


def test_parameter_order_does_not_matter():
    reordered = dict(reversed(list(SMS.items())))
    req = post(SMS)
    ADAPTER.verify(replace(req, body=urlencode(reordered).encode()), ACCOUNT)


def test_query_string_is_signed():
    url = URL + "?tenant=acme&x=1"
    ADAPTER.verify(post(SMS, url=url), ACCOUNT)
    with pytest.raises(Rejected):
        ADAPTER.verify(replace(post(SMS, url=url), url=URL + "?tenant=acme&x=2"), ACCOUNT)


@pytest.mark.parametrize("signed_as", [
    "https://hooks.example.com:443/webhooks/twilio/AC0123456789abcdef0123456789abcdef",
    URL,
])
def test_url_with_or_without_default_port(signed_as):
    ADAPTER.verify(post(SMS, sign_url=signed_as), ACCOUNT)


def test_hmac_sha256_shared_key():
    req = post(SMS, algorithm="HMAC_SHA256",
               headers={"X-Twilio-Webhooks-Signature-Settings":
                        "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"})
    ADAPTER.verify(req, ACCOUNT)


def test_json_body_with_body_sha256():
    body = json.dumps({"MessageSid": SID, "MessageStatus": "delivered", "To": "+14155551234",
                       "From": "+14155552345"})
    url = URL + "?bodySHA256=" + hashlib.sha256(body.encode()).hexdigest()
    sig = RequestValidator(NEW).compute_signature(url, {})
    assert RequestValidator(NEW).validate(url, body, sig)
    req = request(body, url=url, headers={"Content-Type": "application/json",
                                          "X-Twilio-Signature": sig})
    ADAPTER.verify(req, ACCOUNT)
    [ev] = roundtrip(list(ADAPTER.parse(req, ACCOUNT)))
    assert ev["status"] == "delivered"
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(replace(req, body=req.body.replace(b"delivered", b"failed")), ACCOUNT)
    assert "bodySHA256" in e.value.reason


@pytest.mark.parametrize("mutate, status", [
    (lambda r: replace(r, headers={"content-type": FORM}), 401),
    (lambda r: replace(r, body=r.body.replace(b"parcel", b"refund")), 403),
    (lambda r: replace(r, url=r.url.replace("hooks.", "evil.")), 403),
])
def test_bad_or_missing_signature(mutate, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(mutate(post(SMS)), ACCOUNT)
    assert e.value.status == status


def test_unknown_token_is_refused():
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(post(SMS, token="other-account-token"), ACCOUNT)
    assert e.value.status == 403


# --- mapping ----------------------------------------------------------------------------------------

def test_sms_field_by_field():
    [ev] = parse(SMS)
    check_envelope(ev, event_type="MessageReceived", adapter="twilio", key=SID, channel="sms",
                   customer="+14155551234", occurred_at=RECEIVED_AT)
    assert ev["sender"] == {"channel": "sms", "id": "+14155551234", "display_name": None,
                            "phone_e164": "+14155551234", "email": None, "login_id": None}
    assert ev["channel_account_id"] == "+14155552345"
    assert ev["channel_message_id"] == SID
    assert ev["text"] == "Where is my parcel?"
    assert ev["attachments"] == [] and ev["rich"] is None


def test_mms_media_are_references():
    media = "https://api.twilio.com/2010-04-01/Accounts/AC01/Messages/MM01/Media/ME0123"
    [ev] = parse({**SMS, "NumMedia": "2", "Body": "",
                  "MediaUrl0": media, "MediaContentType0": "image/jpeg",
                  "MediaUrl1": media + "b", "MediaContentType1": "application/pdf"})
    assert ev["text"] is None
    assert [(a["kind"], a["url"], a["mime_type"], a["media_id"]) for a in ev["attachments"]] == [
        ("image", media, "image/jpeg", "ME0123"),
        ("document", media + "b", "application/pdf", "ME0123b")]


def test_whatsapp_via_twilio():
    [ev] = parse({**SMS, "From": "whatsapp:+33612345678", "To": "whatsapp:+14155238886",
                  "WaId": "33612345678", "ProfileName": "Zo\u00e9", "ButtonText": "Yes",
                  "ButtonPayload": "CONFIRM_DELIVERY", "Body": "Yes"})
    check_envelope(ev, event_type="MessageReceived", adapter="twilio", key=SID,
                   channel="whatsapp", customer="33612345678", occurred_at=RECEIVED_AT)
    assert ev["sender"]["phone_e164"] == "+33612345678"
    assert ev["sender"]["display_name"] == "Zo\u00e9"
    assert ev["channel_account_id"] == "+14155238886"
    assert ev["rich"]["kind"] == "quick_reply" and ev["rich"]["payload"] == "CONFIRM_DELIVERY"


def test_whatsapp_location():
    [ev] = parse({**SMS, "From": "whatsapp:+33612345678", "To": "whatsapp:+14155238886",
                  "Body": "", "Latitude": "48.8566", "Longitude": "2.3522",
                  "Label": "Home", "Address": "Paris"})
    assert ev["rich"]["kind"] == "location" and ev["rich"]["title"] == "Home"


@pytest.mark.parametrize("twilio_status, status", [
    ("queued", "queued"), ("sent", "sent"), ("delivered", "delivered"),
    ("undelivered", "undelivered"), ("failed", "failed"), ("read", "read")])
def test_status_callbacks(twilio_status, status):
    params = {"MessageSid": SID, "MessageStatus": twilio_status, "SmsStatus": twilio_status,
              "AccountSid": "AC01", "From": "+14155552345", "To": "+14155551234",
              "ApiVersion": "2010-04-01"}
    if twilio_status in ("undelivered", "failed"):
        params["ErrorCode"] = "30003"
    [ev] = parse(params)
    check_envelope(ev, event_type="DeliveryStatusChanged", adapter="twilio",
                   key=f"{SID}|{twilio_status}", channel="sms", customer="+14155551234",
                   occurred_at=RECEIVED_AT)
    assert ev["status"] == status
    assert ev["recipient"]["phone_e164"] == "+14155551234"
    assert ev["channel_account_id"] == "+14155552345"
    assert ev["error_code"] == ("30003" if "ErrorCode" in params else None)


def test_whatsapp_read_status():
    [ev] = parse({"MessageSid": SID, "MessageStatus": "read", "From": "whatsapp:+14155238886",
                  "To": "whatsapp:+33612345678"})
    assert ev["channel"] == "whatsapp" and ev["recipient"]["id"] == "33612345678"


def test_redelivery_same_id_and_status_ids_differ():
    a = ADAPTER.parse(post(SMS), ACCOUNT)[0]
    b = ADAPTER.parse(replace(post(SMS), received_at_ms=RECEIVED_AT + 15_000), ACCOUNT)[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]
    assert a["envelope"]["occurred_at"] != b["envelope"]["occurred_at"]  # no provider time
    s = [ADAPTER.parse(post({"MessageSid": SID, "MessageStatus": x, "To": "+14155551234"}),
                       ACCOUNT)[0]["envelope"]["event_id"] for x in ("sent", "delivered")]
    assert len({a["envelope"]["event_id"], *s}) == 3


def test_alphanumeric_sender_has_no_phone():
    [ev] = parse({**SMS, "From": "ACMEBANK"})
    assert ev["sender"]["id"] == "ACMEBANK" and ev["sender"]["phone_e164"] is None


def test_malformed_form_is_a_400():
    req = replace(post(SMS), body=b"MessageSid=SM1&\xff\xfe")
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(req, ACCOUNT)
    assert e.value.status == 400


@pytest.mark.parametrize("params", [{}, {"Body": "hello", "From": "+14155551234"},
                                    {"MessageSid": SID, "Body": "no sender"}])
def test_unmappable(params):
    with pytest.raises(Unmappable):
        ADAPTER.parse(post(params), ACCOUNT)


def test_ack_is_empty_twiml():
    reply = ADAPTER.ack(post(SMS), [])
    assert reply.status == 200 and reply.content_type == "text/xml"
    assert "<Response></Response>" in reply.body
