"""Fuzzing every route of the ingress: random methods, paths, headers and bodies.

Bodies are random bytes, random JSON built from the providers' own field names, forms and XML;
about half of the webhook requests carry a *valid* signature for the account (so the adapters'
parsers see the random payloads too, not just the verifiers). The producer fails at random, so
the deliberate 503 is exercised. The property: never a 5xx other than that 503 (or the /readyz
503), never the service's "internal error" answer, and the process keeps answering.
The same property runs against a real broker in tests/integration/test_ingress_kafka.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from adapters.accounts import load
from adapters.channels import REGISTRY, Registry
from tests.unit.test_ingress_app import FakeProducer, make_app, make_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "accounts.example.toml"
ACCOUNTS = load(EXAMPLE, environ={})
BY_ADAPTER = {a.channel: a for a in ACCOUNTS if a.tenant_id == "acme"}
PUBLIC = "https://hooks.example.com"

KEYS = ["object", "entry", "changes", "field", "value", "metadata", "phone_number_id", "contacts", "profile",
        "name", "wa_id", "messages", "statuses", "from", "id", "timestamp", "type", "text", "body", "image",
        "mime_type", "caption", "status", "recipient_id", "errors", "messaging", "sender", "recipient",
        "message", "mid", "attachments", "payload", "url", "is_echo", "delivery", "read", "watermark",
        "postback", "update_id", "message_id", "chat", "date", "photo", "file_id", "callback_query", "data",
        "destination", "events", "webhookEventId", "deliveryContext", "isRedelivery", "source", "userId",
        "replyToken", "event", "message_token", "media", "senderPhoneNumber", "messageId", "sendTime",
        "eventType", "userFile", "visitor_id", "sent_at", "user_token", "rich", "kind", "reply_to", "at",
        "presence", "capacity", "skills", "channel", "channel_account_id", "recipient", "template_name"]
WORDS = ["message", "status", "text", "image", "whatsapp_business_account", "page", "instagram", "user",
         "delivered", "read", "sent", "failed", "1731400000", "1731400000000", "wamid.HBgL", "v-1", "m-1",
         "online", "webchat", "whatsapp", "", "\u0000", "é" * 3, "a|b"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**63),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), st.sampled_from(WORDS))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=6)), max_leaves=40)


def _json_body(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


form_bodies = st.dictionaries(
    st.sampled_from(["MessageSid", "AccountSid", "From", "To", "Body", "NumMedia", "MediaUrl0",
                     "MediaContentType0", "MessageStatus", "WaId", "ProfileName", "ErrorCode", "from", "to",
                     "subject", "text", "headers", "envelope"]),
    st.one_of(st.text(max_size=20), st.sampled_from(["whatsapp:+33612345678", "+33612345678", "SM123", "2"])),
    max_size=8)
xml_bodies = st.builds(
    lambda tag, fields: f"<{tag}>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + f"</{tag}>",
    st.sampled_from(["xml", "x", "xml attr='1'"]),
    st.dictionaries(st.sampled_from(["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId",
                                     "Event", "PicUrl", "MediaId", "Encrypt"]), st.text(max_size=15), max_size=7))
rbm_bodies = json_values.map(lambda v: {"message": {"data": base64.b64encode(_json_body(v)).decode(),
                                                    "messageId": "1"}})


@st.composite
def bodies(draw) -> tuple[bytes, str, dict[str, str] | None]:
    """(body, content type, form fields when the body is a form)."""
    kind = draw(st.sampled_from(["bytes", "json", "json", "form", "xml", "rbm"]))
    if kind == "bytes":
        return (draw(st.binary(max_size=300)), draw(st.sampled_from(["application/octet-stream", "text/plain", ""])),
                None)
    if kind == "json":
        return _json_body(draw(json_values)), "application/json", None
    if kind == "rbm":
        return _json_body(draw(rbm_bodies)), "application/json", None
    if kind == "form":
        fields = draw(form_bodies)
        return urlencode(fields).encode(), "application/x-www-form-urlencoded", fields
    return draw(xml_bodies).encode(), "text/xml", None


def signed(adapter: str, body: bytes, fields: dict[str, str] | None,
           path: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query) that authenticate ``body`` for the example account of ``adapter``."""
    account = BY_ADAPTER[adapter]
    secret = (account.secrets or ("",))[0]

    def mac(digest: Any) -> bytes:
        return hmac.new(secret.encode(), body, digest).digest()

    if adapter in ("whatsapp", "messenger", "instagram"):
        return {"X-Hub-Signature-256": "sha256=" + mac(hashlib.sha256).hex()}, {}
    if adapter == "telegram":
        return {"X-Telegram-Bot-Api-Secret-Token": secret}, {}
    if adapter == "line":
        return {"x-line-signature": base64.b64encode(mac(hashlib.sha256)).decode()}, {}
    if adapter == "viber":
        return {"X-Viber-Content-Signature": mac(hashlib.sha256).hex()}, {}
    if adapter == "webchat":
        return {"Authorization": f"Bearer {secret}"}, {}
    if adapter == "email":
        return {"Authorization": "Basic " + base64.b64encode(f"parse:{secret}".encode()).decode()}, {}
    if adapter == "twilio":
        return {"X-Twilio-Signature": RequestValidator(secret).compute_signature(PUBLIC + path, fields or {})}, {}
    if adapter == "wechat":
        ts, nonce = "1731400000", "n0nce"
        sig = hashlib.sha1("".join(sorted([account.verify_token, ts, nonce])).encode()).hexdigest()
        return {}, {"signature": sig, "timestamp": ts, "nonce": nonce}
    if adapter == "rbm":
        try:
            data = base64.b64decode(json.loads(body)["message"]["data"])
        except (ValueError, KeyError, TypeError):  # not an RBM envelope: sign the bytes
            data = body
        sig = base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha512).digest()).decode()
        return {"X-Goog-Signature": sig}, {}
    return {}, {}


header_values = st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
                          st.sampled_from(["sha256=", "Bearer ", "Bearer agent-token", "Basic !!", "sha256=00"]))
random_headers = st.dictionaries(
    st.sampled_from(["X-Hub-Signature-256", "X-Twilio-Signature", "X-Telegram-Bot-Api-Secret-Token",
                     "x-line-signature", "X-Viber-Content-Signature", "X-Goog-Signature", "Authorization",
                     "Content-Type", "X-Forwarded-For", "X-Anything"]),
    header_values, max_size=4)


def weighted(draw, choices: list[tuple[int, Any]]) -> Any:
    """A value drawn with the given weights (a value may itself be a strategy)."""
    n = draw(st.integers(0, sum(w for w, _ in choices) - 1))
    for w, value in choices:
        if n < w:
            return draw(value) if isinstance(value, st.SearchStrategy) else value
        n -= w
    raise AssertionError


@st.composite
def requests(draw) -> tuple[str, str, dict[str, str], dict[str, str], bytes]:
    """(method, path, headers, query, body) over every route of the service."""
    route = weighted(draw, [(75, "webhook"), (15, "agent"), (5, "ops"), (5, "random")])
    method = weighted(draw, [(85, "POST"), (7, "GET"),
                             (8, st.sampled_from(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))])
    body, ctype, fields = draw(bodies())
    headers = dict(draw(random_headers))
    query = draw(st.dictionaries(st.sampled_from(["hub.mode", "hub.verify_token", "hub.challenge", "echostr",
                                                  "signature", "timestamp", "nonce", "token", "bodySHA256"]),
                                 st.text(max_size=12), max_size=4))
    if ctype:
        headers.setdefault("Content-Type", ctype)
    if route == "webhook":
        adapter = draw(st.sampled_from(sorted(REGISTRY)))
        account = weighted(draw, [(90, BY_ADAPTER[adapter].account_id), (10, "not-an-account")])
        path = f"/webhooks/{adapter}/{account}"
        if weighted(draw, [(60, True), (40, False)]):
            extra_headers, extra_query = signed(adapter, body, fields, path)
            headers.update(extra_headers)
            query = extra_query or query
            if adapter == "twilio":
                query = {}
    elif route == "agent":
        if weighted(draw, [(60, True), (40, False)]):
            body = _json_body(draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)))
        tenant = draw(st.sampled_from(["acme", "globex", "nobody"]))
        agent = draw(st.sampled_from(["ines", "a b", "-x"]))
        path = f"/agents/{tenant}/{agent}/{draw(st.sampled_from(['status', 'replies']))}"
        if weighted(draw, [(70, True), (30, False)]):
            headers["Authorization"] = "Bearer agent-token"
    elif route == "ops":
        path = draw(st.sampled_from(["/healthz", "/readyz", "/metrics"]))
    else:
        path = "/" + "/".join(draw(st.lists(st.text(alphabet="abcdefwebhooks%._-", min_size=1, max_size=10),
                                            min_size=1, max_size=4)))
    return method, path, headers, query, body


@pytest.fixture(scope="module")
def served():
    loop = asyncio.new_event_loop()
    producer = FakeProducer()
    app, _ = make_app(producer, settings=make_settings(public_base_url=PUBLIC), registry=Registry(),
                      accounts=ACCOUNTS)
    client = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    yield loop, client, producer
    loop.run_until_complete(client.close())
    loop.close()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests(), kafka_fails=st.integers(0, 3).map(lambda n: n == 3))
def test_no_route_answers_a_5xx_other_than_the_deliberate_503(served, req, kafka_fails) -> None:
    loop, client, producer = served
    method, path, headers, query, body = req
    producer.fail = "fuzz: Kafka is down" if kafka_fails else None

    async def call() -> tuple[int, bytes]:
        async with client.request(method, path, headers=headers, params=query, data=body) as resp:
            return resp.status, await resp.read()

    status, payload = loop.run_until_complete(call())
    if status >= 500:
        assert status == 503, (status, payload)
        assert b"internal error" not in payload, payload
        assert kafka_fails or path == "/readyz", (method, path, payload)
    assert loop.run_until_complete(client.get("/healthz")).status == 200
