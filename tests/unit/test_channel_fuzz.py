"""Property tests of every channel adapter's ``parse``: whatever a verified request holds, the
adapter returns events that encode strictly and keep the partition-key contract, or refuses with
``Rejected(400)`` / ``Unmappable``. Nothing else may escape (it would be a 5xx or a lost
request). Inputs are random JSON/XML/forms and random mutations of realistic payloads."""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.filepost import encode_multipart_formdata

from adapters.base import Rejected, Unmappable
from adapters.channels import email, instagram, line, messenger, rbm, telegram, twilio, viber, wechat, whatsapp
from schemas.codec import Codec

try:
    from channel_support import TENANT, account, request
except ImportError:  # tests/unit collected as a package
    from .channel_support import TENANT, account, request

CODEC = Codec()
EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "150"))  # per test; raise to soak
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                 st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)),
    max_leaves=20)

SEEDS: dict[str, Any] = {
    "whatsapp": {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {
            "metadata": {"phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": "wamid.A", "timestamp": "1749416383",
                          "type": "image", "image": {"id": "1", "mime_type": "image/jpeg"},
                          "context": {"id": "wamid.B"}}],
            "statuses": [{"id": "wamid.C", "status": "failed", "timestamp": "1",
                          "recipient_id": "16505551234", "errors": [{"code": 1}]}]}}]}]},
    "messenger": {"object": "page", "entry": [{"id": "1", "time": 1, "messaging": [
        {"sender": {"id": "6783"}, "recipient": {"id": "1"}, "timestamp": 1458692752478,
         "message": {"mid": "m_1", "text": "hi", "quick_reply": {"payload": "P"},
                     "attachments": [{"type": "location", "payload": {
                         "coordinates": {"lat": 1, "long": 2}}}]}},
        {"sender": {"id": "6783"}, "recipient": {"id": "1"}, "timestamp": 1,
         "delivery": {"mids": ["m_2"], "watermark": 5}},
        {"sender": {"id": "6783"}, "recipient": {"id": "1"}, "timestamp": 1,
         "postback": {"title": "t", "payload": "p"}}]}]},
    "telegram": {"update_id": 10000, "message": {
        "message_id": 1365, "date": 1731398400, "chat": {"id": 1111111, "type": "private"},
        "from": {"id": 1111111, "first_name": "Marie"}, "caption": "c",
        "photo": [{"file_id": "a", "file_size": 1}], "contact": {"phone_number": "336",
                                                                 "user_id": 1111111},
        "reply_to_message": {"message_id": 3}}},
    "line": {"destination": "Ub1", "events": [
        {"type": "message", "timestamp": 1462629479859, "webhookEventId": "01A",
         "source": {"type": "user", "userId": "U4af"},
         "message": {"id": "444", "type": "file", "fileName": "f", "fileSize": 3}},
        {"type": "postback", "timestamp": 1, "webhookEventId": "01B",
         "source": {"type": "user", "userId": "U4af"}, "postback": {"data": "d"}}]},
    "viber": {"event": "message", "timestamp": 1457764197627, "message_token": 4912661846655238145,
              "sender": {"id": "01234567890A=", "name": "John"},
              "message": {"type": "picture", "text": "t", "media": "http://x", "size": 3}},
    "rbm": {"senderPhoneNumber": "+12223334444", "messageId": "Mx", "agentId": "a",
            "sendTime": "2021-08-27T17:53:52.243Z",
            "userFile": {"category": "IMAGE", "payload": {"mimeType": "image/png",
                                                          "fileSizeBytes": "9", "fileUri": "u"}}},
}
SEEDS["instagram"] = {**SEEDS["messenger"], "object": "instagram"}
JSON_ADAPTERS = {"whatsapp": whatsapp, "messenger": messenger, "instagram": instagram,
                 "telegram": telegram, "line": line, "viber": viber}


def check(adapter: Any, req: Any, channel: str) -> None:
    acct = account(channel)
    try:
        events = adapter.ADAPTER.parse(req, acct)
    except Rejected as e:
        assert 400 <= e.status < 500 and e.reason
        return
    except Unmappable:
        return
    for ev in events:
        CODEC.encode(ev)
        env = ev["envelope"]
        who = ev.get("sender") or ev["recipient"]
        assert env["tenant_id"] == TENANT
        assert env["partition_key"] == f"{TENANT}|{ev['channel']}|{who['id']}"


@st.composite
def mutated(draw, seed: Any) -> Any:
    """``seed`` with one node replaced by random JSON (or deleted from its parent)."""
    doc = json.loads(json.dumps(seed))
    paths = list(_paths(doc))
    path = draw(st.sampled_from(paths))
    if not path:
        return draw(json_value)
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_value)
    return doc


def _paths(node: Any, prefix: tuple = ()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


@pytest.mark.parametrize("name", sorted(JSON_ADAPTERS))
@FUZZ
@given(data=st.data())
def test_json_adapters_never_crash(name, data):
    doc = data.draw(st.one_of(json_value, mutated(SEEDS[name]), mutated(SEEDS[name])))
    check(JSON_ADAPTERS[name], request(json.dumps(doc)), name)


@FUZZ
@given(body=st.binary(max_size=200))
def test_json_adapters_on_random_bytes(body):
    for name, module in JSON_ADAPTERS.items():
        check(module, request(body), name)


@FUZZ
@given(inner=st.one_of(json_value, mutated(SEEDS["rbm"]), mutated(SEEDS["rbm"])),
       outer=json_value)
def test_rbm_never_crashes(inner, outer):
    data = base64.b64encode(json.dumps(inner).encode()).decode()
    check(rbm, request({"message": {"data": data}}), "rbm")
    check(rbm, request(json.dumps(outer)), "rbm")


TWILIO_NAMES = ["MessageSid", "SmsSid", "From", "To", "Body", "NumMedia", "MediaUrl0",
                "MediaContentType0", "MessageStatus", "ErrorCode", "WaId", "ProfileName",
                "ButtonPayload", "Latitude", "Longitude", "OriginalRepliedMessageSid"]


@FUZZ
@given(params=st.dictionaries(st.sampled_from(TWILIO_NAMES), st.text(max_size=30)),
       junk=st.binary(max_size=60))
def test_twilio_never_crashes(params, junk):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    check(twilio, request(urlencode(params), headers=form), "twilio")
    check(twilio, request(junk, headers=form), "twilio")
    check(twilio, request(junk, headers={"Content-Type": "application/json"}), "twilio")


WECHAT_TAGS = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "Content",
               "MediaId", "PicUrl", "Format", "Location_X", "Location_Y", "Event", "EventKey",
               "MsgID", "Status", "Encrypt"]
xml_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(WECHAT_TAGS), xml_text),
       msg_type=st.sampled_from(["text", "image", "voice", "location", "link", "event", "x"]),
       junk=st.binary(max_size=80))
def test_wechat_never_crashes(fields, msg_type, junk):
    from xml.sax.saxutils import escape

    body = "<xml>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in
                             {"MsgType": msg_type, **fields}.items()) + "</xml>"
    check(wechat, request(body), "wechat")
    check(wechat, request(junk), "wechat")


EMAIL_NAMES = ["from", "to", "subject", "text", "html", "headers", "charsets", "email",
               "envelope", "attachment-info"]


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(EMAIL_NAMES), st.text(max_size=60)),
       files=st.dictionaries(st.sampled_from(["attachment1", "attachment2"]),
                             st.binary(max_size=30)),
       junk=st.binary(max_size=80))
def test_email_never_crashes(fields, files, junk):
    body, ctype = encode_multipart_formdata(
        [*fields.items(), *((k, ("f.bin", v, "application/octet-stream"))
                            for k, v in files.items())])
    check(email, request(body, headers={"Content-Type": ctype}), "email")
    check(email, request(junk, headers={"Content-Type": ctype}), "email")
