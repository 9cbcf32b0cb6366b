"""The ingress pipeline over HTTP (aiohttp's test client) with an in-memory producer.

The producer's real behaviour against a broker is in tests/integration/test_ingress_*.py; here
the fake lets every branch (stored, dead-lettered, refused, 503) be checked without one. The
fakes are imported by the other ingress tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.accounts import Accounts
from adapters.app import build_app
from adapters.base import Account, Rejected, Reply, Request, Unmappable, secret_equals
from adapters.channels import Registry
from adapters.metrics import IngressMetrics
from adapters.producer import Record, Stored, Unavailable
from parley.settings import IngressSettings, KafkaSettings
from schemas import topics
from schemas.codec import Codec
from schemas.events import derive_id, envelope, make

NOW_MS = 1_731_400_000_000
CODEC = Codec()


class FakeProducer:
    """Records what would be produced; ``fail`` makes every send raise ``Unavailable``."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.fail: str | None = None
        self.records: list[Record] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_all(self, records: Sequence[Record]) -> list[Stored]:
        if not self.ready or self.fail:
            raise Unavailable(self.fail or "not connected to Kafka")
        out = []
        for r in records:
            self.records.append(r)
            out.append(Stored(r.topic, 0, len(self.records) - 1))
        return out

    def decoded(self, topic: str) -> list[dict[str, Any]]:
        return [CODEC.decode(r.value) for r in self.records if r.topic == topic]


class FakeAdapter:
    """A tiny channel: ``x-secret`` header; the JSON body's ``do`` chooses what parse does."""

    channel = "fake"
    max_body_bytes = 1024

    def handshake(self, req: Request, account: Account) -> Reply | None:
        if req.method == "GET" and "challenge" in req.query:
            if req.query.get("token") != account.verify_token:
                raise Rejected(403, "wrong verify token")
            return Reply(200, req.query["challenge"], "text/plain")
        return None

    def verify(self, req: Request, account: Account) -> None:
        if req.headers.get("x-boom") == "verify":
            raise RuntimeError("verify bug")
        if not secret_equals(account.secrets, req.headers.get("x-secret")):
            raise Rejected(401, "bad x-secret")

    def parse(self, req: Request, account: Account) -> Sequence[dict[str, Any]]:
        try:
            doc = json.loads(req.body)
        except ValueError as e:
            raise Rejected(400, f"malformed JSON: {e}") from None
        do = doc.get("do", "ok")
        if do == "unmappable":
            raise Unmappable("no idea what this is")
        if do == "boom":
            raise ZeroDivisionError("adapter bug")
        if do == "none":
            return []
        return [fake_event(account, req, doc.get("id", "m1"), doc.get("from", "u1"), do)]

    def ack(self, req: Request, events: Sequence[dict[str, Any]]) -> Reply:
        return Reply(200, json.dumps({"n": len(events)}), "application/json")


def fake_event(account: Account, req: Request, mid: str, sender: str, do: str = "ok") -> dict[str, Any]:
    tenant = "other" if do == "tenant" else account.tenant_id
    key = f"{account.tenant_id}|fake|{sender}" if do != "badkey" else f"{account.tenant_id}|{sender}"
    etype = "AgentStatusChanged" if do == "badtype" else "MessageReceived"
    env = envelope(etype, event_id=derive_id(tenant, "fake", mid), occurred_at=NOW_MS - 5000,
                   tenant_id=tenant, partition_key=key, producer="ingress/fake")
    if etype == "AgentStatusChanged":
        return make(etype, env, agent_id="a1", presence="online")
    event = make("MessageReceived", env, channel="fake", channel_account_id=account.account_id,
                 sender={"channel": "fake", "id": sender, "display_name": None, "phone_e164": None,
                         "email": None, "login_id": None},
                 channel_message_id=mid, text="hello", raw_event_id=req.raw_event_id)
    if do == "encode":
        event["text"] = 42  # not a string: the codec refuses it
    return event


FAKE_ACCOUNT = Account("acme", "fake", "acct1", secrets=("s-old", "s-new"), verify_token="vt")
WEBCHAT_ACCOUNT = Account("acme", "webchat", "acme-web", secrets=("web-token",),
                          options={"user_token_secrets": ["login-key"]})


def make_settings(**overrides: Any) -> IngressSettings:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit.")
    return IngressSettings(kafka=kafka, agent_tokens=["agent-token"], **overrides)


def make_app(producer: FakeProducer | None = None, *, settings: IngressSettings | None = None,
             registry: Registry | None = None, accounts: Accounts | None = None):
    registry = registry or Registry(modules={"webchat": "adapters.channels.webchat",
                                             "missing": "adapters.channels.does_not_exist"},
                                    adapters={"fake": FakeAdapter()})
    accounts = accounts or Accounts([FAKE_ACCOUNT, WEBCHAT_ACCOUNT,
                                     Account("acme", "missing", "m1", secrets=("x",))])
    producer = producer or FakeProducer()
    app = build_app(settings or make_settings(), accounts=accounts, registry=registry, producer=producer,
                    metrics=IngressMetrics(), clock_ms=lambda: NOW_MS)
    return app, producer


def topic(t: topics.Topic) -> str:
    return topics.named("unit.", t)


async def post_fake(client: TestClient, doc: dict | bytes, secret: str = "s-new", **headers: str):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return await client.post("/webhooks/fake/acct1", data=body, headers={"x-secret": secret, **headers})


async def test_a_verified_request_stores_raw_then_events_and_answers_the_adapters_ack(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await post_fake(client, {"id": "m1", "from": "u7"})
    assert resp.status == 200 and await resp.json() == {"n": 1}
    raw_record, event_record = producer.records
    assert raw_record.topic == topic(topics.RAW_INGRESS) and event_record.topic == topic(topics.MESSAGES)
    raw = CODEC.decode(raw_record.value)
    body = json.dumps({"id": "m1", "from": "u7"}).encode()
    assert raw["envelope"]["event_id"] == derive_id("acme", "fake", "acct1", "raw", hashlib.sha256(body).hexdigest())
    assert raw["body"] == body and raw["verified"] is True and raw["method"] == "POST"
    assert raw["headers"]["x-secret"] == "s-new" and raw_record.key == b"acme|fake|acct1"
    event = CODEC.decode(event_record.value)
    assert event_record.key == b"acme|fake|u7" == event["envelope"]["partition_key"].encode()
    assert event["raw_event_id"] == raw["envelope"]["event_id"]
    assert event["envelope"]["recorded_at"] == NOW_MS and event_record.timestamp_ms == NOW_MS - 5000
    assert dict(event_record.headers) == {"event_type": b"MessageReceived"}


async def test_both_secrets_verify_during_a_rotation_and_a_wrong_one_is_401(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    assert (await post_fake(client, {"id": "a"}, secret="s-old")).status == 200
    assert (await post_fake(client, {"id": "b"}, secret="s-new")).status == 200
    resp = await post_fake(client, {"id": "c"}, secret="nope")
    assert resp.status == 401 and (await resp.json())["reason"] == "bad x-secret"
    assert len(producer.records) == 4  # nothing stored for the refused one


async def test_a_redelivery_builds_the_same_ids(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    for _ in range(2):
        assert (await post_fake(client, {"id": "m9", "from": "u1"})).status == 200
    ids = [CODEC.decode(r.value)["envelope"]["event_id"] for r in producer.records]
    assert ids[0] == ids[2] and ids[1] == ids[3]


@pytest.mark.parametrize("path, status, reason", [
    ("/webhooks/nope/acct1", 404, "unknown adapter 'nope'"),
    ("/webhooks/fake/other", 404, "unknown account 'other' for adapter 'fake'"),
    ("/webhooks/missing/m1", 404, "adapter 'missing' is not available on this server"),
])
async def test_unknown_routes_are_404_with_a_reason(client_for, path: str, status: int, reason: str) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.post(path, data=b"{}", headers={"x-secret": "s-new"})
    assert resp.status == status and (await resp.json())["reason"] == reason
    assert producer.records == []


async def test_a_missing_module_does_not_break_the_other_adapters(client_for) -> None:
    app, _ = make_app()
    client = await client_for(app)
    assert (await client.post("/webhooks/missing/m1", data=b"{}")).status == 404
    assert (await post_fake(client, {"id": "x"})).status == 200


async def test_a_body_over_the_adapters_limit_is_413(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await post_fake(client, b"x" * 1025)
    assert resp.status == 413 and "exceeds the limit of 1024" in (await resp.json())["reason"]

    async def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(3):
            yield b"y" * 500

    resp = await client.post("/webhooks/fake/acct1", data=chunks(), headers={"x-secret": "s-new"})
    assert resp.status == 413 and producer.records == []


async def test_the_record_size_cap_applies_below_the_adapters_limit(client_for) -> None:
    app, _ = make_app(settings=make_settings(max_record_bytes=100))
    client = await client_for(app)
    resp = await post_fake(client, {"id": "x", "pad": "p" * 200})
    assert resp.status == 413


async def test_handshake_is_answered_without_storing_and_other_gets_are_405(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await client.get("/webhooks/fake/acct1", params={"challenge": "c-123", "token": "vt"})
    assert resp.status == 200 and await resp.text() == "c-123"
    resp = await client.get("/webhooks/fake/acct1", params={"challenge": "c-123", "token": "wrong"})
    assert resp.status == 403
    resp = await client.get("/webhooks/fake/acct1")
    assert resp.status == 405
    assert producer.records == []


async def test_malformed_input_is_400_and_nothing_is_stored(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await post_fake(client, b"{not json")
    assert resp.status == 400 and (await resp.json())["reason"].startswith("malformed JSON")
    assert producer.records == []


@pytest.mark.parametrize("do, reason, error", [
    ("unmappable", "unmappable", "no idea what this is"),
    ("boom", "parse_error", "ZeroDivisionError: adapter bug"),
    ("tenant", "invalid_event", "tenant 'other' is not the account's 'acme'"),
    ("badkey", "invalid_event", "partition key 'acme|u1', expected 'acme|fake|u1'"),
    ("badtype", "invalid_event", "'AgentStatusChanged' is not a message event"),
    ("encode", "schema_invalid", "MessageReceived"),
])
async def test_verified_but_unmappable_goes_to_the_dead_letters_with_a_2xx(client_for, do, reason, error) -> None:
    app, producer = make_app()
    client = await client_for(app)
    body = json.dumps({"do": do}).encode()
    resp = await post_fake(client, body)
    assert resp.status == 200 and await resp.json() == {"n": 0}
    assert [r.topic for r in producer.records] == [topic(topics.RAW_INGRESS), topic(topics.DEAD_LETTER)]
    raw = CODEC.decode(producer.records[0].value)
    dead = CODEC.decode(producer.records[1].value)
    assert dead["reason"] == reason and error in dead["error"]
    assert dead["payload"] == body and dead["stage"] == "ingress/fake"
    assert dead["headers"]["raw_event_id"] == raw["envelope"]["event_id"]
    assert dead["source_topic"] == topic(topics.RAW_INGRESS)
    assert dict(producer.records[1].headers)["parley.error.reason"] == reason.encode()


async def test_an_exception_in_verify_is_401_not_500(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await post_fake(client, {"id": "x"}, **{"x-boom": "verify"})
    assert resp.status == 401 and producer.records == []


async def test_kafka_unavailable_is_503_with_retry_after(client_for) -> None:
    producer = FakeProducer()
    producer.fail = "Kafka did not acknowledge within 5.0s"
    app, _ = make_app(producer)
    client = await client_for(app)
    resp = await post_fake(client, {"id": "x"})
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    assert "not stored" in (await resp.json())["reason"]


async def test_health_readiness_and_metrics(client_for) -> None:
    producer = FakeProducer(ready=False)
    app, _ = make_app(producer)
    client = await client_for(app)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 503
    assert (await post_fake(client, {"id": "x"})).status == 503
    producer.ready = True
    assert (await client.get("/readyz")).status == 200
    await post_fake(client, {"id": "x"})
    await post_fake(client, {"id": "y"}, secret="bad")
    await client.post("/webhooks/zzz-random/1", data=b"")
    text = await (await client.get("/metrics")).text()
    assert 'parley_ingress_requests_total{adapter="fake",route="webhook",status="200"} 1.0' in text
    assert 'parley_ingress_rejections_total{adapter="fake",reason="unauthorized"} 1.0' in text
    assert 'parley_ingress_rejections_total{adapter="fake",reason="unavailable"} 1.0' in text
    assert 'parley_ingress_rejections_total{adapter="unknown",reason="unknown_adapter"} 1.0' in text
    assert 'parley_ingress_events_total{adapter="fake",event_type="MessageReceived"} 1.0' in text
    assert 'parley_ingress_produce_seconds_count{outcome="acked"} 1.0' in text


async def test_the_url_given_to_adapters_is_the_public_one_when_configured(client_for) -> None:
    seen: list[str] = []

    class Spy(FakeAdapter):
        def verify(self, req: Request, account: Account) -> None:
            seen.append(req.url)

    registry = Registry(modules={}, adapters={"fake": Spy()})
    settings = make_settings(public_base_url="https://hooks.example.com/")
    app, _ = make_app(settings=settings, registry=registry)
    client = await client_for(app)
    await client.post("/webhooks/fake/acct1?a=1&b=2", data=b"{}")
    app2, _ = make_app(registry=registry)
    client2 = await client_for(app2)
    await client2.post("/webhooks/fake/acct1?a=1", data=b"{}")
    assert seen[0] == "https://hooks.example.com/webhooks/fake/acct1?a=1&b=2"
    assert seen[1].startswith("http://127.0.0.1:") and seen[1].endswith("/webhooks/fake/acct1?a=1")


async def test_credentials_are_redacted_in_the_raw_record(client_for) -> None:
    app, producer = make_app()
    client = await client_for(app)
    resp = await post_fake(client, {"id": "x"}, Authorization="Bearer abc",
                           **{"X-Telegram-Bot-Api-Secret-Token": "tg"})
    assert resp.status == 200
    resp = await client.post("/webhooks/fake/acct1?token=s3cret&sig=1", data=b"{}", headers={"x-secret": "s-new"})
    assert resp.status == 200
    raws = producer.decoded(topic(topics.RAW_INGRESS))
    assert raws[0]["headers"]["authorization"] == "<redacted>"
    assert raws[0]["headers"]["x-telegram-bot-api-secret-token"] == "<redacted>"
    assert raws[1]["query"] == "token=%3Credacted%3E&sig=1"


async def test_an_adapter_reply_that_is_not_2xx_after_storage_becomes_200(client_for) -> None:
    class Odd(FakeAdapter):
        def ack(self, req, events):
            return Reply(500, "odd")

    app, _ = make_app(registry=Registry(modules={}, adapters={"fake": Odd()}))
    client = await client_for(app)
    resp = await post_fake(client, {"id": "x"})
    assert resp.status == 200 and await resp.text() == "odd"


class UrlRecordingAdapter(FakeAdapter):
    """The fake channel, noting the URL each request was verified against."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def verify(self, req: Request, account: Account) -> None:
        self.urls.append(req.url)
        super().verify(req, account)


async def test_the_url_a_provider_signed_follows_its_host_and_path_though_urls_are_remembered(client_for) -> None:
    adapter = UrlRecordingAdapter()
    app, _ = make_app(registry=Registry(modules={}, adapters={"fake": adapter}))
    client = await client_for(app)
    for host, query in [("a.example", ""), ("b.example:8443", ""), ("a.example", "?x=1"), ("a.example", "")]:
        body = json.dumps({"id": f"m-{host}{query}", "from": "u7"}).encode()
        resp = await client.post(f"/webhooks/fake/acct1{query}", data=body, headers={"x-secret": "s-new", "Host": host})
        assert resp.status == 200
    assert adapter.urls == ["http://a.example/webhooks/fake/acct1", "http://b.example:8443/webhooks/fake/acct1",
                            "http://a.example/webhooks/fake/acct1?x=1", "http://a.example/webhooks/fake/acct1"]
