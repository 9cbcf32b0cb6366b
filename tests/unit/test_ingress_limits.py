"""The ingress's documented limits on what an event carries (adapters/limits.py), and the HTTP
path of a body far beyond them (issue 10, defect 1): answered 2xx, the raw record whole, the event
cut with a reference, every record within its topic's max.message.bytes."""

from __future__ import annotations

import hashlib
import hmac
import json

from hypothesis import given
from hypothesis import strategies as st

from adapters import limits
from adapters.accounts import Accounts
from adapters.base import Account
from adapters.channels import Registry
from adapters.producer import BROKER_DEFAULT_MAX_MESSAGE_BYTES, Record
from schemas import topics
from schemas.events import derive_id, envelope, make
from tests.unit.test_ingress_app import CODEC, FakeProducer, make_app, topic


@given(st.text(max_size=300), st.integers(min_value=0, max_value=400))
def test_cut_keeps_whole_characters_within_the_limit(text: str, limit: int) -> None:
    out = limits.cut(text, limit)
    assert len(out.encode("utf-8", "surrogatepass")) <= limit
    assert text.startswith(out)
    if len(text.encode("utf-8", "surrogatepass")) <= limit:
        assert out is text


def _message(**fields) -> dict:
    env = envelope("MessageReceived", event_id=derive_id("t", "m"), occurred_at=1, tenant_id="t",
                   partition_key="t|email|a@b.c", producer="test")
    sender = {"channel": "email", "id": "a@b.c", "display_name": None, "phone_e164": None, "email": None,
              "login_id": None}
    return make("MessageReceived", env, channel="email", channel_account_id="x", sender=sender,
                channel_message_id="m", raw_event_id="r", **fields)


def test_a_message_within_the_limits_is_untouched() -> None:
    ev = _message(text="Bonjour", subject="Commande")
    assert limits.fit(ev, "raw:r") == _message(text="Bonjour", subject="Commande")
    assert ev["truncated_fields"] == [] and ev["content_ref"] is None


def test_everything_over_a_limit_is_cut_named_and_referenced() -> None:
    att = {"kind": "image", "media_id": None, "url": "https://x/" + "u" * 5000, "mime_type": None,
           "size_bytes": None, "sha256": None, "caption": "c" * 2000, "filename": None}
    rich = {"kind": "contact", "payload": "p" * 5000, "title": None, "data_json": json.dumps({"v": "d" * 70000})}
    ev = _message(text="é" * 40000, subject="s" * 3000, attachments=[att] * 60, rich=rich,
                  references=[f"<{i}@x>" for i in range(150)])
    limits.fit(ev, "parley.ingress.raw:r")
    assert len(ev["text"].encode()) <= limits.TEXT_BYTES and ev["text"] == "é" * (limits.TEXT_BYTES // 2)
    assert ev["truncated_fields"] == sorted(["attachments", "attachments.caption", "attachments.url", "references",
                                             "rich.data_json", "rich.payload", "subject", "text"])
    assert ev["content_ref"] == "parley.ingress.raw:r"
    assert len(ev["attachments"]) == limits.MAX_ATTACHMENTS and ev["attachments"][0]["url"] is None
    assert ev["references"][-1] == "<149@x>" and len(ev["references"]) == limits.MAX_REFERENCES
    assert json.loads(ev["rich"]["data_json"]) == {"truncated": True}
    assert len(CODEC.encode(ev)) < BROKER_DEFAULT_MAX_MESSAGE_BYTES // 2


def test_the_worst_case_message_fits_the_broker_default() -> None:
    """Every field at its limit: the event still fits Kafka's default max.message.bytes."""
    big = "\U0001F600" * 100_000
    att = {"kind": "document", "media_id": big, "url": big, "mime_type": big, "size_bytes": 1, "sha256": big,
           "caption": big, "filename": big}
    ev = _message(text=big, subject=big, attachments=[att] * 100, references=[big[:255]] * 500,
                  rich={"kind": "x", "payload": big, "title": big, "data_json": big})
    ev["sender"]["display_name"] = big
    limits.fit(ev, "r")
    record = Record("t", b"k" * 200, CODEC.encode(ev))
    assert record.size() < BROKER_DEFAULT_MAX_MESSAGE_BYTES


class SizedProducer(FakeProducer):
    """A fake with the live limits of a catalogue applied on a default broker."""

    def limit(self, topic_name: str) -> int:
        return topics.RAW_MAX_BYTES if topic_name.endswith(("ingress.raw", "deadletter")) \
            else BROKER_DEFAULT_MAX_MESSAGE_BYTES

    def fits(self, record: Record) -> bool:
        return record.size() <= self.limit(record.topic)


async def test_a_1_5_mb_whatsapp_text_is_stored_whole_in_raw_and_cut_in_the_event(client_for) -> None:
    secret = "meta-secret"
    value = {"metadata": {"phone_number_id": "1065"}, "contacts": [{"wa_id": "33612345678"}],
             "messages": [{"from": "33612345678", "id": "wamid.BIG", "timestamp": "1731399990", "type": "text",
                           "text": {"body": "A" * 1_500_000}}]}
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"changes": [{"field": "messages", "value": value}]}]}).encode()
    producer = SizedProducer()
    app, _ = make_app(producer, registry=Registry(modules={"whatsapp": "adapters.channels.whatsapp"}),
                      accounts=Accounts([Account("acme", "whatsapp", "1065", secrets=(secret,))]))
    client = await client_for(app)
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    resp = await client.post("/webhooks/whatsapp/1065", data=body, headers={"X-Hub-Signature-256": sig})
    assert resp.status == 200, await resp.text()
    assert all(producer.fits(r) for r in producer.records)
    [raw] = producer.decoded(topic(topics.RAW_INGRESS))
    [event] = producer.decoded(topic(topics.MESSAGES))
    assert raw["body"] == body
    assert event["text"] == "A" * limits.TEXT_BYTES and event["truncated_fields"] == ["text"]
    assert event["content_ref"] == f"{topic(topics.RAW_INGRESS)}:{raw['envelope']['event_id']}"
