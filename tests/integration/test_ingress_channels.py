"""Every channel through the running ingress into the real broker: real-shaped, signed payloads.

Signatures are made the way each provider makes them (the official SDKs where they exist:
``twilio``'s RequestValidator signs; ``line-bot-sdk``, ``viberbot`` and ``wechatpy`` check that
our test signatures are the ones they expect), sent over HTTP to the example accounts, and the
events are read back from Kafka, decoded and checked. Handshakes are answered and store nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from schemas import topics
from tests.integration.test_ingress_kafka import Running, read

pytestmark = pytest.mark.integration

PUBLIC = "https://hooks.example.com"
T_S = int(time.time()) - 60  # provider timestamps a minute ago (unix s)
META_SECRET = "demo-meta-app-secret"


def _hmac(key: str, data: bytes, digest=hashlib.sha256) -> bytes:
    return hmac.new(key.encode(), data, digest).digest()


def whatsapp() -> tuple[str, bytes, dict[str, str]]:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "33644600001", "phone_number_id": "106540352242922"},
             "contacts": [{"profile": {"name": "Zoé Martin"}, "wa_id": "33612345678"}],
             "messages": [{"from": "33612345678", "id": "wamid.HBgLMzM2MTIzNDU2NzgVAgASGBQzQUY", "timestamp": str(T_S),
                           "type": "text", "text": {"body": "Bonjour, ma commande 4512 ?"}}]}
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "WABA_ID", "changes": [{"value": value, "field": "messages"}]}]}).encode()
    return "/webhooks/whatsapp/106540352242922", body, {
        "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + _hmac(META_SECRET, body).hex()}


def messenger() -> tuple[str, bytes, dict[str, str]]:
    body = json.dumps({"object": "page", "entry": [{"id": "1029384756473829", "time": T_S * 1000, "messaging": [{
        "sender": {"id": "6543210987654321"}, "recipient": {"id": "1029384756473829"}, "timestamp": T_S * 1000,
        "message": {"mid": "m_AbCdEf123", "text": "Where is my parcel?"}}]}]}).encode()
    return "/webhooks/messenger/1029384756473829", body, {
        "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + _hmac(META_SECRET, body).hex()}


def twilio_sms() -> tuple[str, bytes, dict[str, str]]:
    path = "/webhooks/twilio/+33644600000"
    params = {"MessageSid": "SM0123456789abcdef0123456789abcdef", "AccountSid": "AC" + "1" * 32,
              "From": "+33698765432", "To": "+33644600000", "Body": "Je veux annuler ma commande", "NumMedia": "0"}
    signature = RequestValidator("demo-twilio-auth-token").compute_signature(PUBLIC + path, params)
    return path, urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                             "X-Twilio-Signature": signature}


def telegram() -> tuple[str, bytes, dict[str, str]]:
    body = json.dumps({"update_id": 10000, "message": {
        "message_id": 1365, "date": T_S, "text": "Hello",
        "from": {"id": 1111111, "is_bot": False, "first_name": "Alex", "username": "alex"},
        "chat": {"id": 1111111, "type": "private", "first_name": "Alex"}}}).encode()
    return "/webhooks/telegram/7012345678", body, {
        "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": "demo-telegram-secret-token"}


def line() -> tuple[str, bytes, dict[str, str]]:
    from linebot.v3 import WebhookParser

    body = json.dumps({"destination": "U4af4980629abcdef0123456789abcdef", "events": [{
        "type": "message", "mode": "active", "timestamp": T_S * 1000, "webhookEventId": "01FZ74A0TDDPYRVKNK77XKC3ZR",
        "deliveryContext": {"isRedelivery": False}, "replyToken": "b60d432864f44d079f6d8efe86cf404b",
        "source": {"type": "user", "userId": "U80696558e1aa831e0ab3e2f0ac0d1e7b"},
        "message": {"id": "444573844083572737", "type": "text", "text": "こんにちは", "quoteToken": "q3Plxr4AgKd"}}]})
    signature = base64.b64encode(_hmac("demo-line-channel-secret", body.encode())).decode()
    WebhookParser("demo-line-channel-secret").parse(body, signature)  # the SDK accepts our signature
    return "/webhooks/line/U4af4980629abcdef0123456789abcdef", body.encode(), {
        "Content-Type": "application/json", "x-line-signature": signature}


def viber() -> tuple[str, bytes, dict[str, str]]:
    from viberbot import Api, BotConfiguration

    body = json.dumps({"event": "message", "timestamp": T_S * 1000, "message_token": 4912661846655238145,
                       "sender": {"id": "01234567890A=", "name": "John McClane", "language": "en", "country": "UK"},
                       "message": {"type": "text", "text": "a message to the service"}}).encode()
    signature = _hmac("demo-viber-auth-token", body).hex()
    assert Api(BotConfiguration("demo-viber-auth-token", "acme", "")).verify_signature(body, signature)
    return "/webhooks/viber/acmesupport", body, {"Content-Type": "application/json",
                                                 "X-Viber-Content-Signature": signature}


def wechat_query() -> dict[str, str]:
    from wechatpy.utils import check_signature

    ts, nonce = str(T_S), "1514711492"
    signature = hashlib.sha1("".join(sorted(["demo-wechat-token", ts, nonce])).encode()).hexdigest()
    check_signature("demo-wechat-token", signature, ts, nonce)  # raises if wechatpy disagrees
    return {"signature": signature, "timestamp": ts, "nonce": nonce}


def wechat() -> tuple[str, bytes, dict[str, str]]:
    body = (f"<xml><ToUserName><![CDATA[gh_3f2a1b4c5d6e]]></ToUserName>"
            f"<FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>"
            f"<CreateTime>{T_S}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[我的订单在哪里]]></Content><MsgId>1234567890123456</MsgId></xml>").encode()
    return "/webhooks/wechat/gh_3f2a1b4c5d6e?" + urlencode(wechat_query()), body, {"Content-Type": "text/xml"}


def rbm() -> tuple[str, bytes, dict[str, str]]:
    inner = json.dumps({"senderPhoneNumber": "+33611112222", "messageId": "MxQ3dTc2dGxsRzSfE1v8Nk4w",
                        "sendTime": time.strftime("%Y-%m-%dT%H:%M:%S.123456Z", time.gmtime(T_S)),
                        "agentId": "acme-support", "text": "Bonjour"}).encode()
    body = json.dumps({"message": {"data": base64.b64encode(inner).decode(), "messageId": "1",
                                   "publishTime": "2026-11-23T09:00:00Z"},
                       "subscription": "projects/rbm/subscriptions/acme"}).encode()
    signature = base64.b64encode(_hmac("demo-rbm-client-token", inner, hashlib.sha512)).decode()
    return "/webhooks/rbm/acme-support", body, {"Content-Type": "application/json", "X-Goog-Signature": signature}


def email() -> tuple[str, aiohttp.FormData, dict[str, str]]:
    form = aiohttp.FormData()
    headers = ("Message-ID: <CAF=1234@mail.example.fr>\nFrom: Zoé Martin <zoe@example.fr>\n"
               "Subject: Commande 4512\nIn-Reply-To: <out-77@acme.example>\n")
    for name, value in [("from", "Zoé Martin <zoe@example.fr>"), ("to", "support@acme.example"),
                        ("subject", "Commande 4512"), ("text", "Toujours rien reçu."), ("headers", headers),
                        ("envelope", json.dumps({"to": ["support@acme.example"], "from": "zoe@example.fr"})),
                        ("attachments", "1")]:
        form.add_field(name, value)
    form.add_field("attachment1", b"%PDF-1.4 facture", filename="facture.pdf", content_type="application/pdf")
    auth = "Basic " + base64.b64encode(b"parse:demo-email-parse-password").decode()
    return "/webhooks/email/support@acme.example", form, {"Authorization": auth}


CASES = {
    "whatsapp": (whatsapp, "acme|whatsapp|33612345678", "wamid.HBgLMzM2MTIzNDU2NzgVAgASGBQzQUY"),
    "messenger": (messenger, "acme|messenger|6543210987654321", "m_AbCdEf123"),
    "twilio": (twilio_sms, "acme|sms|+33698765432", "SM0123456789abcdef0123456789abcdef"),
    "telegram": (telegram, "acme|telegram|1111111", "1111111:1365"),
    "line": (line, "acme|line|U80696558e1aa831e0ab3e2f0ac0d1e7b", "444573844083572737"),
    "viber": (viber, "acme|viber|01234567890A=", "4912661846655238145"),
    "wechat": (wechat, "acme|wechat|oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "1234567890123456"),
    "rbm": (rbm, "acme|rbm|+33611112222", "MxQ3dTc2dGxsRzSfE1v8Nk4w"),
    "email": (email, "acme|email|zoe@example.fr", "<CAF=1234@mail.example.fr>"),
}


async def test_every_channel_reaches_kafka_once_however_often_it_is_delivered(applied_topics) -> None:
    answers: dict[str, tuple[int, str]] = {}
    async with Running(applied_topics, public_base_url=PUBLIC) as ing:
        await ing.ready()
        for name, (build, _, _) in CASES.items():
            for _ in range(2):  # the provider redelivers
                path, body, headers = build()
                async with ing.http.post(path, data=body, headers=headers) as resp:
                    answers[name] = (resp.status, await resp.text())
    assert all(status == 200 for status, _ in answers.values()), answers
    assert answers["wechat"][1] == "success" and "<Response" in answers["twilio"][1]
    got = await read(applied_topics, topics.MESSAGES, len(CASES))
    by_channel_message: dict[str, list[dict[str, Any]]] = {}
    for record, event in got:
        assert record.key.decode() == event["envelope"]["partition_key"]
        assert event["envelope"]["tenant_id"] == "acme" and event["envelope"]["recorded_at"] is not None
        by_channel_message.setdefault(event["channel_message_id"], []).append(event)
    for name, (_, key, channel_message_id) in CASES.items():
        events = by_channel_message.get(channel_message_id)
        assert events and len(events) == 1, (name, sorted(by_channel_message))  # the redelivery is not stored
        assert events[0]["envelope"]["partition_key"] == key, name
        assert events[0]["envelope"]["event_type"] == "MessageReceived", name
    whatsapp_event = by_channel_message["wamid.HBgLMzM2MTIzNDU2NzgVAgASGBQzQUY"][0]
    assert whatsapp_event["text"] == "Bonjour, ma commande 4512 ?"
    assert whatsapp_event["sender"]["phone_e164"] == "+33612345678"
    assert whatsapp_event["envelope"]["occurred_at"] == T_S * 1000
    email_event = by_channel_message["<CAF=1234@mail.example.fr>"][0]
    assert email_event["subject"] == "Commande 4512" and email_event["sender"]["email"] == "zoe@example.fr"
    assert email_event["attachments"][0]["mime_type"] == "application/pdf"
    assert email_event["attachments"][0]["media_id"] is None or "%PDF" not in email_event["attachments"][0]["media_id"]
    raws = await read(applied_topics, topics.RAW_INGRESS, len(CASES))
    ids = [e["envelope"]["event_id"] for _, e in raws]
    assert len(ids) == len(set(ids))  # byte-identical redeliveries: one raw record (e-mail's boundary differs)


async def test_handshakes_are_answered_and_store_nothing(applied_topics) -> None:
    async with Running(applied_topics, public_base_url=PUBLIC) as ing:
        await ing.ready()
        async with ing.http.get("/webhooks/whatsapp/106540352242922", params={
                "hub.mode": "subscribe", "hub.verify_token": "demo-meta-verify-token",
                "hub.challenge": "1158201444"}) as r:
            assert (r.status, await r.text()) == (200, "1158201444")
        async with ing.http.get("/webhooks/whatsapp/106540352242922", params={
                "hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}) as r:
            assert r.status == 403
        async with ing.http.get("/webhooks/wechat/gh_3f2a1b4c5d6e", params={**wechat_query(), "echostr": "e-42"}) as r:
            assert (r.status, await r.text()) == (200, "e-42")
        body = json.dumps({"clientToken": "demo-rbm-client-token", "secret": "s-1234"})
        async with ing.http.post("/webhooks/rbm/acme-support", data=body) as r:
            assert (r.status, await r.text()) == (200, "s-1234")
    assert await read(applied_topics, topics.RAW_INGRESS, 0, settle_s=0.5) == []


async def test_bad_signatures_are_refused_per_channel(applied_topics) -> None:
    async with Running(applied_topics, public_base_url=PUBLIC) as ing:
        await ing.ready()
        for name, (build, _, _) in CASES.items():
            path, body, headers = build()
            if name == "wechat":
                path = path.replace("signature=", "signature=0")
            elif name == "email":
                headers = {"Authorization": "Basic " + base64.b64encode(b"parse:wrong").decode()}
            else:
                headers = {k: (v[:-4] + "AAA=" if k != "Content-Type" else v) for k, v in headers.items()}
            async with ing.http.post(path, data=body, headers=headers) as resp:
                assert resp.status in (401, 403), (name, resp.status, await resp.text())
    assert await read(applied_topics, topics.RAW_INGRESS, 0, settle_s=0.5) == []
