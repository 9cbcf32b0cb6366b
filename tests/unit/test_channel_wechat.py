"""WeChat Official Account adapter; signatures and parsing cross-checked with ``wechatpy``."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

import pytest
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner, check_signature

from adapters.base import Rejected, Unmappable
from adapters.channels.wechat import ADAPTER

try:
    from channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip
except ImportError:  # tests/unit collected as a package
    from .channel_support import NEW, OLD, RECEIVED_AT, account, check_envelope, request, roundtrip

OA, OPENID = "gh_7f083739789a", "oia2TjuEGTNoeX76QEjQNrcURxG8"
ACCOUNT = account("wechat", OA, secrets=(), verify_token=NEW)
ROTATING = account("wechat", OA, secrets=(OLD,), verify_token=NEW)


def xml(msg_type, *fields, create_time=1348831860, msg_id="1234567890123456"):
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields)
    mid = f"<MsgId>{msg_id}</MsgId>" if msg_id else ""
    return (f"<xml><ToUserName><![CDATA[{OA}]]></ToUserName>"
            f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>"
            f"{body}{mid}</xml>")


TEXT = xml("text", ("Content", "this is a test"))


NOW_S = str(RECEIVED_AT // 1000 - 2)  # the push was signed 2 s before we received it


def signed_url(token=NEW, timestamp=NOW_S, nonce="xxxxxx", **extra):
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    query = {"signature": signer.signature, "timestamp": timestamp, "nonce": nonce, **extra}
    return "https://hooks.example.com/webhooks/wechat/gh?" + urlencode(query)


def post(body, token=NEW):
    return request(body, url=signed_url(token), headers={"Content-Type": "text/xml"})


def parse(body):
    return roundtrip(list(ADAPTER.parse(post(body), ACCOUNT)))


def test_echostr_handshake():
    req = request(method="GET", url=signed_url(echostr="5837397749271929429"))
    check_signature(NEW, req.query["signature"], req.query["timestamp"], req.query["nonce"])
    reply = ADAPTER.handshake(req, ACCOUNT)
    assert (reply.status, reply.body) == (200, "5837397749271929429")


@pytest.mark.parametrize("url, status", [
    (signed_url(token="wrong", echostr="1"), 403),
    ("https://h.example/w?echostr=1&timestamp=1&nonce=2", 401),
    (signed_url(), 400),  # a GET without echostr
])
def test_handshake_refusals(url, status):
    with pytest.raises(Rejected) as e:
        ADAPTER.handshake(request(method="GET", url=url), ACCOUNT)
    assert e.value.status == status


@pytest.mark.parametrize("token", [NEW, OLD])
def test_signature_with_rotation(token):
    ADAPTER.verify(post(TEXT, token), ROTATING)


def test_bad_or_missing_signature():
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(TEXT), ACCOUNT)
    assert e.value.status == 401
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(post(TEXT, "other-token"), ACCOUNT)
    assert e.value.status == 403
    tampered = replace(post(TEXT), query={**post(TEXT).query, "nonce": "yyyyyy"})
    with pytest.raises(Rejected):
        ADAPTER.verify(tampered, ACCOUNT)


def test_text_message_field_by_field_and_wechatpy_agrees():
    sdk = parse_message(TEXT)
    [ev] = parse(TEXT)
    check_envelope(ev, event_type="MessageReceived", adapter="wechat", key=str(sdk.id),
                   channel="wechat", customer=sdk.source, occurred_at=sdk.time * 1000)
    assert ev["channel_message_id"] == "1234567890123456"
    assert ev["channel_account_id"] == sdk.target == OA
    assert ev["sender"] == {"channel": "wechat", "id": OPENID, "display_name": None,
                            "phone_e164": None, "email": None, "login_id": None}
    assert ev["text"] == sdk.content == "this is a test"


def test_image_and_voice_are_references():
    image = xml("image", ("PicUrl", "http://mmbiz.qpic.cn/pic.jpg"), ("MediaId", "media_id_1"))
    [ev] = parse(image)
    assert ev["attachments"][0] | {} == {
        "kind": "image", "media_id": "media_id_1", "url": "http://mmbiz.qpic.cn/pic.jpg",
        "mime_type": None, "size_bytes": None, "sha256": None, "caption": None,
        "filename": None}
    voice = xml("voice", ("MediaId", "media_id_2"), ("Format", "amr"),
                ("Recognition", "我的订单在哪里"))
    [v] = parse(voice)
    assert v["attachments"][0]["kind"] == "audio"
    assert v["attachments"][0]["mime_type"] == "audio/amr"
    assert v["text"] == "我的订单在哪里"


def test_location_and_link():
    [loc] = parse(xml("location", ("Location_X", "23.134521"), ("Location_Y", "113.358803"),
                      ("Scale", "20"), ("Label", "位置信息")))
    assert loc["rich"]["kind"] == "location" and loc["rich"]["title"] == "位置信息"
    [link] = parse(xml("link", ("Title", "Order 42"), ("Description", "d"),
                       ("Url", "https://shop.example/o/42")))
    assert (link["rich"]["kind"], link["rich"]["payload"]) == ("link", "https://shop.example/o/42")


def test_menu_click_is_keyed_by_user_and_time():
    click = xml("event", ("Event", "CLICK"), ("EventKey", "ORDER_STATUS"), msg_id=None)
    [ev] = parse(click)
    key = f"{OPENID}|1348831860"
    check_envelope(ev, event_type="MessageReceived", adapter="wechat", key=key,
                   channel="wechat", customer=OPENID, occurred_at=1348831860000)
    assert ev["rich"]["kind"] == "button" and ev["rich"]["payload"] == "ORDER_STATUS"


@pytest.mark.parametrize("raw, status", [("success", "delivered"),
                                         ("failed:user block", "failed"),
                                         ("failed: system failed", "failed")])
def test_template_send_result_is_a_status(raw, status):
    body = xml("event", ("Event", "TEMPLATESENDJOBFINISH"), ("Status", raw), msg_id=None,
               create_time=1395658920).replace("</xml>", "<MsgID>200163836</MsgID></xml>")
    [ev] = parse(body)
    check_envelope(ev, event_type="DeliveryStatusChanged", adapter="wechat",
                   key=f"200163836|{status}", channel="wechat", customer=OPENID,
                   occurred_at=1395658920000)
    assert ev["status"] == status and ev["channel_message_id"] == "200163836"
    assert ev["error_message"] == (None if status == "delivered" else raw)


def test_subscribe_is_skipped():
    assert parse(xml("event", ("Event", "subscribe"), msg_id=None)) == []


def test_redelivery_same_id():
    a = ADAPTER.parse(post(TEXT), ACCOUNT)[0]
    b = ADAPTER.parse(replace(post(TEXT), received_at_ms=RECEIVED_AT + 5000), ACCOUNT)[0]
    assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def test_ack_says_success():
    reply = ADAPTER.ack(post(TEXT), [])
    assert (reply.status, reply.body) == (200, "success")


@pytest.mark.parametrize("body", [
    "<xml><ToUserName>x</ToUserName>",
    "not xml at all",
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Content>&a;</Content></xml>',
])
def test_malformed_xml_and_dtds_are_400(body):
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(post(body), ACCOUNT)
    assert e.value.status == 400


@pytest.mark.parametrize("body", [
    "<xml><Foo>bar</Foo></xml>",
    xml("text", ("Content", "no MsgId"), msg_id=None),
    "<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[abc]]></Encrypt></xml>",
])
def test_unmappable(body):
    with pytest.raises(Unmappable):
        ADAPTER.parse(post(body), ACCOUNT)


# -- replayed signatures -------------------------------------------------------------------------

@pytest.mark.parametrize("age_s", [301, 30 * 86400, -301])
def test_a_signature_outside_five_minutes_of_receipt_is_refused(age_s):
    """A (signature, timestamp, nonce) triple seen once must not sign other bodies later."""
    old = str(RECEIVED_AT // 1000 - age_s)
    req = request(TEXT, url=signed_url(timestamp=old), headers={"Content-Type": "text/xml"})
    check_signature(NEW, req.query["signature"], old, req.query["nonce"])  # genuinely signed
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(req, ACCOUNT)
    assert e.value.status == 403 and "replayed" in e.value.reason
    with pytest.raises(Rejected):
        ADAPTER.handshake(request(method="GET", url=signed_url(timestamp=old, echostr="1")), ACCOUNT)


def test_the_bound_is_an_account_option_and_zero_lifts_it():
    old = str(RECEIVED_AT // 1000 - 3600)
    req = request(TEXT, url=signed_url(timestamp=old))
    ADAPTER.verify(req, account("wechat", OA, secrets=(), verify_token=NEW, max_signature_age_s=7200))
    ADAPTER.verify(req, account("wechat", OA, secrets=(), verify_token=NEW, max_signature_age_s=0))
    with pytest.raises(Rejected):
        ADAPTER.verify(request(TEXT, url=signed_url(timestamp="not-a-time")), ACCOUNT)


# -- safe mode (AES), with wechatpy as the real client ----------------------------------------------

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters: a 32-byte key
OLD_AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkj"
APP_ID = "wx5823bf96d3bd56c7"
SAFE = account("wechat", OA, secrets=(), verify_token=NEW, app_id=APP_ID,
               encoding_aes_keys=[AES_KEY, OLD_AES_KEY])


def safe_push(plain_xml, *, key=AES_KEY, app_id=APP_ID, token=NEW, nonce="1320562132"):
    """A safe-mode push as WeChat sends it: ciphertext and msg_signature made by wechatpy."""
    crypto = WeChatCrypto(token, key, app_id)
    sealed = crypto.encrypt_message(plain_xml, nonce, NOW_S)
    fields = {k: v for k, v in ((t, sealed.split(f"<{t}>")[1].split(f"</{t}>")[0])
                                for t in ("Encrypt", "MsgSignature"))}
    encrypt = fields["Encrypt"].removeprefix("<![CDATA[").removesuffix("]]>")
    msg_signature = fields["MsgSignature"].removeprefix("<![CDATA[").removesuffix("]]>")
    assert crypto.decrypt_message(sealed, msg_signature, NOW_S, nonce) == plain_xml  # wechatpy agrees
    body = f"<xml><ToUserName><![CDATA[{OA}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    url = signed_url(token=token, nonce=nonce, encrypt_type="aes", msg_signature=msg_signature,
                     openid=OPENID)
    return request(body, url=url, headers={"Content-Type": "text/xml"})


def test_safe_mode_verifies_the_msg_signature_and_decrypts():
    req = safe_push(TEXT)
    ADAPTER.verify(req, SAFE)
    [ev] = roundtrip(list(ADAPTER.parse(req, SAFE)))
    assert ev["text"] == "this is a test" and ev["sender"]["id"] == OPENID
    assert ev["channel_account_id"] == OA and ev["channel_message_id"] == "1234567890123456"


def test_safe_mode_with_the_previous_key_during_a_rotation():
    [ev] = ADAPTER.parse(safe_push(TEXT, key=OLD_AES_KEY), SAFE)
    assert ev["text"] == "this is a test"


def test_safe_mode_refuses_a_tampered_ciphertext_or_signature():
    req = safe_push(TEXT)
    tampered = replace(req, body=req.body.replace(b"<![CDATA[", b"<![CDATA[A", 2))
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(tampered, SAFE)
    assert e.value.status == 403
    wrong = replace(req, query={**req.query, "msg_signature": "0" * 40})
    with pytest.raises(Rejected):
        ADAPTER.verify(wrong, SAFE)
    missing = replace(req, query={k: v for k, v in req.query.items() if k != "msg_signature"})
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(missing, SAFE)
    assert e.value.status == 401


@pytest.mark.parametrize("acct", [
    account("wechat", OA, secrets=(), verify_token=NEW, app_id=APP_ID),  # no key configured
    account("wechat", OA, secrets=(), verify_token=NEW, app_id="wx-another-app", encoding_aes_keys=[AES_KEY]),
    account("wechat", OA, secrets=(), verify_token=NEW, app_id=APP_ID, encoding_aes_keys=[OLD_AES_KEY]),
])
def test_safe_mode_that_cannot_be_opened_is_unmappable(acct):
    req = safe_push(TEXT)
    ADAPTER.verify(req, acct)  # the token is right: the request is genuine, the configuration is not
    with pytest.raises(Unmappable):
        ADAPTER.parse(req, acct)
