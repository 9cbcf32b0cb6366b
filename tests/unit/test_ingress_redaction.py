"""No credential in any raw record or log line, for every channel; replayed WeChat signatures and
malformed Twilio forms refused for what they are (issue 10, defect 2 and the Twilio 400)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from urllib.parse import urlencode

import pytest
import structlog
from twilio.request_validator import RequestValidator

from adapters.accounts import Accounts
from adapters.base import Account
from adapters.channels import Registry
from schemas import topics
from tests.unit.test_ingress_account_check import PUBLIC, TS
from tests.unit.test_ingress_app import NOW_MS, FakeProducer, make_app, make_settings, topic

SECRET = "s3cr3t-token-value"
ACCOUNTS = Accounts([
    Account("acme", "whatsapp", "1065", secrets=(SECRET,)),
    Account("acme", "twilio", "+33644600000", secrets=(SECRET,)),
    Account("acme", "telegram", "bot1", secrets=(SECRET,)),
    Account("acme", "line", "Uline", secrets=(SECRET,)),
    Account("acme", "viber", "viber1", secrets=(SECRET,)),
    Account("acme", "wechat", "gh_1", verify_token=SECRET),
    Account("acme", "rbm", "agent1", secrets=(SECRET,)),
    Account("acme", "email", "support@acme.example", secrets=(SECRET,)),
    Account("acme", "webchat", "web1", secrets=(SECRET,), options={"user_token_secrets": ["login-key"]}),
])
NONCE = "n0nce-1514711492"


def _hex(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def _b64(body: bytes, digest=hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body, digest).digest()).decode()


def _jwt(claims: dict) -> str:
    def part(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    head = part({"alg": "HS256", "typ": "JWT"}) + "." + part(claims)
    sig = hmac.new(b"login-key", head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(sig).decode().rstrip("=")


def requests() -> dict[str, tuple[str, bytes, dict[str, str], list[str]]]:
    """channel -> (path with query, body, headers, the credential strings that must not be stored)."""
    out = {}
    wa = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{
        "field": "messages", "value": {"metadata": {"phone_number_id": "1065"}, "messages": [{
            "from": "33612345678", "id": "wamid.R1", "timestamp": str(TS), "type": "text",
            "text": {"body": "hi"}}]}}]}]}).encode()
    out["whatsapp"] = ("/webhooks/whatsapp/1065", wa, {"X-Hub-Signature-256": "sha256=" + _hex(wa)}, [_hex(wa)])
    params = {"MessageSid": "SM1", "From": "+33698765432", "To": "+33644600000", "Body": "hi"}
    tsig = RequestValidator(SECRET).compute_signature(f"{PUBLIC}/webhooks/twilio/+33644600000", params)
    out["twilio"] = ("/webhooks/twilio/+33644600000", urlencode(params).encode(),
                     {"X-Twilio-Signature": tsig, "Content-Type": "application/x-www-form-urlencoded"}, [tsig])
    tg = json.dumps({"update_id": 1, "message": {"message_id": 1, "date": TS, "chat": {"id": 7},
                                                 "from": {"id": 7}, "text": "hi"}}).encode()
    out["telegram"] = ("/webhooks/telegram/bot1", tg, {"X-Telegram-Bot-Api-Secret-Token": SECRET}, [SECRET])
    line = json.dumps({"destination": "Uline", "events": [{
        "type": "message", "webhookEventId": "E1", "timestamp": TS * 1000, "source": {"userId": "U1"},
        "message": {"type": "text", "id": "1", "text": "hi"}}]}).encode()
    out["line"] = ("/webhooks/line/Uline", line, {"x-line-signature": _b64(line)}, [_b64(line)])
    vb = json.dumps({"event": "message", "timestamp": TS * 1000, "message_token": 5,
                     "sender": {"id": "v1"}, "message": {"type": "text", "text": "hi"}}).encode()
    out["viber"] = ("/webhooks/viber/viber1", vb, {"X-Viber-Content-Signature": _hex(vb)}, [_hex(vb)])
    wsig = hashlib.sha1("".join(sorted([SECRET, str(TS), NONCE])).encode()).hexdigest()
    wx = (f"<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>{TS}</CreateTime>"
          f"<MsgType>text</MsgType><Content>hi</Content><MsgId>9</MsgId></xml>").encode()
    out["wechat"] = ("/webhooks/wechat/gh_1?" + urlencode({"signature": wsig, "timestamp": TS, "nonce": NONCE}),
                     wx, {"Content-Type": "text/xml"}, [wsig, NONCE])
    inner = json.dumps({"senderPhoneNumber": "+33611112222", "messageId": "M1", "agentId": "agent1",
                        "text": "hi"}).encode()
    rbm = json.dumps({"message": {"data": base64.b64encode(inner).decode()}}).encode()
    out["rbm"] = ("/webhooks/rbm/agent1", rbm, {"X-Goog-Signature": _b64(inner, hashlib.sha512)},
                  [_b64(inner, hashlib.sha512)])
    basic = base64.b64encode(f"parse:{SECRET}".encode()).decode()
    mail = (b'--B\r\nContent-Disposition: form-data; name="from"\r\n\r\nzoe@example.fr\r\n'
            b'--B\r\nContent-Disposition: form-data; name="to"\r\n\r\nsupport@acme.example\r\n'
            b'--B\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--B--\r\n')
    out["email"] = ("/webhooks/email/support@acme.example?token=" + SECRET, mail,
                    {"Authorization": "Basic " + basic, "Content-Type": "multipart/form-data; boundary=B"},
                    [basic, SECRET])
    token = _jwt({"sub": "cust-1", "exp": NOW_MS // 1000 + 3600})
    web = json.dumps({"type": "message", "message_id": "m1", "visitor_id": "v1", "text": "hi",
                      "user_token": token}).encode()
    out["webchat"] = ("/webhooks/webchat/web1", web, {"Authorization": f"Bearer {SECRET}",
                                                      "Content-Type": "application/json"}, [SECRET, token])
    return out


@pytest.fixture
def captured_logs():
    """Every structlog event of the test, rendered as the JSON logger would."""
    lines: list[str] = []
    old = structlog.get_config()

    def keep(_logger, _name, event):
        lines.append(json.dumps(event, default=str))
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.processors.format_exc_info, keep],
                        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
                        cache_logger_on_first_use=False)
    yield lines
    structlog.configure(**old)


@pytest.mark.parametrize("channel", sorted(requests()))
async def test_no_credential_is_stored_or_logged(client_for, captured_logs, channel: str) -> None:
    path, body, headers, secrets = requests()[channel]
    app, producer = make_app(FakeProducer(), settings=make_settings(public_base_url=PUBLIC),
                             registry=Registry(), accounts=ACCOUNTS)
    client = await client_for(app)
    resp = await client.post(path, data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert producer.decoded(topic(topics.MESSAGES)), "the request maps to an event"
    stored = b"".join(r.value + r.key + b"".join(v for _, v in r.headers) for r in producer.records)
    for secret in secrets:
        assert secret.encode() not in stored, (channel, secret)
        assert quote_all(secret) not in stored, (channel, secret)
        assert not any(secret in line for line in captured_logs), (channel, secret)
    [raw] = producer.decoded(topic(topics.RAW_INGRESS))
    assert raw["verified"] is True


def quote_all(s: str) -> bytes:
    from urllib.parse import quote
    return quote(s, safe="").encode()


async def test_a_webchat_login_token_is_redacted_but_its_login_kept(client_for) -> None:
    path, body, headers, _ = requests()["webchat"]
    app, producer = make_app(FakeProducer(), registry=Registry(), accounts=ACCOUNTS)
    client = await client_for(app)
    assert (await client.post(path, data=body, headers=headers)).status == 200
    [raw] = producer.decoded(topic(topics.RAW_INGRESS))
    assert json.loads(raw["body"])["user_token"] == "<redacted>"
    [event] = producer.decoded(topic(topics.MESSAGES))
    assert event["sender"]["login_id"] == "cust-1"


async def test_a_wechat_signature_from_a_month_ago_is_refused(client_for) -> None:
    """Defect 2: a signature/timestamp/nonce triple 30 days old signed any body, forever."""
    old = TS - 30 * 86400
    wsig = hashlib.sha1("".join(sorted([SECRET, str(old), NONCE])).encode()).hexdigest()
    body = (b"<xml><ToUserName>gh_1</ToUserName><FromUserName>o-anyone</FromUserName><CreateTime>1</CreateTime>"
            b"<MsgType>text</MsgType><Content>forged</Content><MsgId>66</MsgId></xml>")
    app, producer = make_app(FakeProducer(), registry=Registry(), accounts=ACCOUNTS)
    client = await client_for(app)
    query = urlencode({"signature": wsig, "timestamp": old, "nonce": NONCE})
    resp = await client.post(f"/webhooks/wechat/gh_1?{query}", data=body, headers={"Content-Type": "text/xml"})
    assert resp.status == 403 and "replayed" in (await resp.json())["reason"]
    assert producer.records == []


async def test_a_twilio_form_that_is_not_utf8_is_400_not_401(client_for) -> None:
    app, producer = make_app(FakeProducer(), settings=make_settings(public_base_url=PUBLIC), registry=Registry(),
                             accounts=ACCOUNTS)
    client = await client_for(app)
    resp = await client.post("/webhooks/twilio/+33644600000", data=b"Body=%FF&From=x",
                             headers={"X-Twilio-Signature": "c2lnbmF0dXJl",
                                      "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 400 and "malformed form body" in (await resp.json())["reason"]
    assert producer.records == []


async def test_the_log_capture_sees_the_ingress_logs(client_for, captured_logs) -> None:
    """Guards the test above: its log assertions would pass vacuously on an empty capture."""
    app, _ = make_app(FakeProducer(), registry=Registry(), accounts=ACCOUNTS)
    client = await client_for(app)
    path, body, headers, _ = requests()["whatsapp"]
    await client.post(path, data=body, headers={**headers, "X-Hub-Signature-256": "sha256=00"})
    assert any("ingress.rejected" in line for line in captured_logs)
