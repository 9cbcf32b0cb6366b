"""The account a payload names, checked against the route's (issue 10, defect 3), per channel.

Each channel that carries its business account in the payload (WhatsApp ``phone_number_id``,
Messenger and Instagram ``recipient.id``, Twilio ``To``, LINE ``destination``, WeChat
``ToUserName``, RBM ``agentId``, e-mail recipients) is posted to tenant A's route, signed with
tenant A's credentials, three ways: naming A's own account (stored for A); naming another account
that verifies under the same credentials (one app serving several numbers: stored for that
account's tenant); naming tenant B's account (403, dead-lettered with the reason, nothing filed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from adapters.accounts import Accounts
from adapters.base import Account
from adapters.channels import Registry
from schemas import topics
from tests.unit.test_ingress_app import CODEC, NOW_MS, FakeProducer, make_app, make_settings, topic

PUBLIC = "https://hooks.example.com"
TS = NOW_MS // 1000 - 5
SHARED, OTHER = "shared-app-secret", "tenant-b-secret"
IDS = {  # channel -> (A's account, A's second account under the same credentials, B's account)
    "whatsapp": ("106540352242922", "106540352242999", "109876543210987"),
    "messenger": ("1029384756473829", "1029384756470000", "2029384756473829"),
    "instagram": ("17841405822304914", "17841405822300000", "27841405822304914"),
    "twilio": ("+33644600000", "+33644600001", "+14155550100"),
    "line": ("U4af4980629abcdef0123456789abcdef", "U4af4980629abcdef0123456789abc000",
             "Ub0000000000000000000000000000000"),
    "wechat": ("gh_3f2a1b4c5d6e", "gh_3f2a1b4c5000", "gh_b00000000000"),
    "rbm": ("acme-support", "acme-sales", "globex-support"),
    "email": ("support@acme.example", "sales@acme.example", "help@globex.example"),
}


def _accounts() -> Accounts:
    out = []
    for channel, (mine, second, theirs) in IDS.items():
        cred = {"verify_token": SHARED} if channel == "wechat" else {"secrets": (SHARED,)}
        other = {"verify_token": OTHER} if channel == "wechat" else {"secrets": (OTHER,)}
        out += [Account("acme", channel, mine, **cred), Account("acme2", channel, second, **cred),
                Account("globex", channel, theirs, **other)]
    return Accounts(out)


def _meta(obj: str) -> Callable[[str, str], tuple[str, bytes, dict[str, str]]]:
    def build(named: str, secret: str) -> tuple[str, bytes, dict[str, str]]:
        if obj == "whatsapp_business_account":
            value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": named},
                     "contacts": [{"profile": {"name": "Zoé"}, "wa_id": "33612345678"}],
                     "messages": [{"from": "33612345678", "id": "wamid.X1", "timestamp": str(TS),
                                   "type": "text", "text": {"body": "Bonjour"}}]}
            doc = {"object": obj, "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}]}
        else:
            doc = {"object": obj, "entry": [{"id": named, "time": TS * 1000, "messaging": [{
                "sender": {"id": "6543210987654321"}, "recipient": {"id": named}, "timestamp": TS * 1000,
                "message": {"mid": "m_X1", "text": "Bonjour"}}]}]}
        body = json.dumps(doc).encode()
        sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return "", body, {"X-Hub-Signature-256": sig, "Content-Type": "application/json"}
    return build


def _twilio(named: str, secret: str, route: str) -> tuple[str, bytes, dict[str, str]]:
    params = {"MessageSid": "SM" + "a" * 32, "AccountSid": "AC" + "1" * 32, "From": "+33698765432",
              "To": named, "Body": "Bonjour", "NumMedia": "0"}
    url = f"{PUBLIC}/webhooks/twilio/{route}"
    sig = RequestValidator(secret).compute_signature(url, params)
    return "", urlencode(params).encode(), {"X-Twilio-Signature": sig,
                                            "Content-Type": "application/x-www-form-urlencoded"}


def _line(named: str, secret: str) -> tuple[str, bytes, dict[str, str]]:
    body = json.dumps({"destination": named, "events": [{
        "type": "message", "message": {"type": "text", "id": "444573844083572737", "text": "Bonjour"},
        "webhookEventId": "01FZ74A0TDDPYRVKNK77XKC3ZR", "deliveryContext": {"isRedelivery": False},
        "timestamp": TS * 1000, "source": {"type": "user", "userId": "U80696558e1aa831e0ab3e2f0ac0d1e7b"},
        "mode": "active"}]}).encode()
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return "", body, {"x-line-signature": sig, "Content-Type": "application/json"}


def _wechat(named: str, secret: str) -> tuple[str, bytes, dict[str, str]]:
    body = (f"<xml><ToUserName><![CDATA[{named}]]></ToUserName><FromUserName><![CDATA[oUpF8uMu]]></FromUserName>"
            f"<CreateTime>{TS}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[你好]]></Content><MsgId>1234567890123456</MsgId></xml>").encode()
    nonce = "1514711492"
    sig = hashlib.sha1("".join(sorted([secret, str(TS), nonce])).encode()).hexdigest()
    return "?" + urlencode({"signature": sig, "timestamp": TS, "nonce": nonce}), body, {"Content-Type": "text/xml"}


def _rbm(named: str, secret: str) -> tuple[str, bytes, dict[str, str]]:
    inner = json.dumps({"senderPhoneNumber": "+33611112222", "messageId": "MxQ3dTc2dGxs",
                        "sendTime": "2024-11-12T08:26:35.000Z", "agentId": named, "text": "Bonjour"}).encode()
    body = json.dumps({"message": {"data": base64.b64encode(inner).decode(), "messageId": "1"}}).encode()
    sig = base64.b64encode(hmac.new(secret.encode(), inner, hashlib.sha512).digest()).decode()
    return "", body, {"X-Goog-Signature": sig, "Content-Type": "application/json"}


def _email(named: str, secret: str) -> tuple[str, bytes, dict[str, str]]:
    fields = [("from", "Zoé <zoe@example.fr>"), ("to", named), ("subject", "Commande"), ("text", "Bonjour"),
              ("headers", "Message-ID: <m1@example.fr>\nFrom: zoe@example.fr\n"),
              ("envelope", json.dumps({"to": [named], "from": "zoe@example.fr"}))]
    body = b"".join(f'--XyZ\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields) + b"--XyZ--\r\n"
    auth = "Basic " + base64.b64encode(f"parse:{secret}".encode()).decode()
    return "", body, {"Authorization": auth, "Content-Type": "multipart/form-data; boundary=XyZ"}


BUILDERS = {"whatsapp": _meta("whatsapp_business_account"), "messenger": _meta("page"),
            "instagram": _meta("instagram"), "line": _line, "wechat": _wechat, "rbm": _rbm, "email": _email}


async def _post(client, channel: str, named: str, secret: str = SHARED):
    route = IDS[channel][0]
    if channel == "twilio":
        query, body, headers = _twilio(named, secret, route)
    else:
        query, body, headers = BUILDERS[channel](named, secret)
    return await client.post(f"/webhooks/{channel}/{route}{query}", data=body, headers=headers)


def _app():
    registry = Registry(modules={c: f"adapters.channels.{c}" for c in IDS})
    return make_app(FakeProducer(), settings=make_settings(public_base_url=PUBLIC), registry=registry,
                    accounts=_accounts())


@pytest.mark.parametrize("channel", sorted(IDS))
async def test_the_routes_own_account_is_stored_for_its_tenant(client_for, channel: str) -> None:
    app, producer = _app()
    client = await client_for(app)
    resp = await _post(client, channel, IDS[channel][0])
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.MESSAGES))
    assert event["envelope"]["tenant_id"] == "acme" and event["channel_account_id"] == IDS[channel][0]


@pytest.mark.parametrize("channel", sorted(IDS))
async def test_another_tenants_account_in_the_payload_is_403_and_dead_lettered(client_for, channel: str) -> None:
    """Signed with tenant acme's credentials on acme's route, naming globex's account."""
    app, producer = _app()
    client = await client_for(app)
    resp = await _post(client, channel, IDS[channel][2])
    assert resp.status == 403, await resp.text()
    assert IDS[channel][2] in (await resp.json())["reason"]
    assert producer.decoded(topic(topics.MESSAGES)) == []
    [dead] = producer.decoded(topic(topics.DEAD_LETTER))
    assert dead["reason"] == "account_mismatch" and IDS[channel][2] in dead["error"]
    assert dead["headers"]["tenant_id"] == "acme"
    [raw] = producer.decoded(topic(topics.RAW_INGRESS))
    assert raw["envelope"]["event_id"] == dead["headers"]["raw_event_id"]


@pytest.mark.parametrize("channel", sorted(IDS))
async def test_an_account_under_the_same_credentials_is_filed_under_its_own_tenant(client_for, channel: str) -> None:
    """One Meta app (one secret) serving several numbers posts to one URL: route by the payload."""
    app, producer = _app()
    client = await client_for(app)
    resp = await _post(client, channel, IDS[channel][1])
    assert resp.status == 200, await resp.text()
    [event] = producer.decoded(topic(topics.MESSAGES))
    assert event["envelope"]["tenant_id"] == "acme2" and event["channel_account_id"] == IDS[channel][1]
    assert event["envelope"]["partition_key"].startswith("acme2|")


async def test_an_unconfigured_account_in_the_payload_is_refused(client_for) -> None:
    app, producer = _app()
    client = await client_for(app)
    resp = await _post(client, "whatsapp", "999999999999999")
    assert resp.status == 403 and "not this route's" in (await resp.json())["reason"]
    assert [CODEC.decode(r.value)["reason"] for r in producer.records if r.topic == topic(topics.DEAD_LETTER)] \
        == ["account_mismatch"]


async def test_aliases_and_domains_match_the_route(client_for) -> None:
    accounts = Accounts([Account("acme", "twilio", "+33644600000", secrets=(SHARED,),
                                 options={"aliases": ["+33644600009"]}),
                         Account("acme", "email", "@acme.example", secrets=(SHARED,))])
    registry = Registry(modules={"twilio": "adapters.channels.twilio", "email": "adapters.channels.email"})
    app, producer = make_app(FakeProducer(), settings=make_settings(public_base_url=PUBLIC), registry=registry,
                             accounts=accounts)
    client = await client_for(app)
    _, body, headers = _twilio("+33644600009", SHARED, "+33644600000")
    assert (await client.post("/webhooks/twilio/+33644600000", data=body, headers=headers)).status == 200
    _, body, headers = _email("billing@acme.example", SHARED)
    assert (await client.post("/webhooks/email/@acme.example", data=body, headers=headers)).status == 200
    events = producer.decoded(topic(topics.MESSAGES))
    assert [e["envelope"]["tenant_id"] for e in events] == ["acme", "acme"]
    _, body, headers = _email("help@globex.example", SHARED)
    assert (await client.post("/webhooks/email/@acme.example", data=body, headers=headers)).status == 403
