"""The first-party web/in-app chat adapter: bearer token, signed login tokens, mapping.

Login tokens are signed with PyJWT, as a business backend would, so the adapter's own HS256
check is exercised against a real JWT implementation.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import jwt
import pytest

from adapters.base import Account, Rejected, Request
from adapters.channels.webchat import ADAPTER, verify_user_token
from schemas.codec import Codec
from schemas.events import derive_id

NOW = 1_731_400_000_000
LOGIN_KEY = "login-key-0123456789abcdef0123456789"
LOGIN_KEY_NEXT = "login-key-next-0123456789abcdef012345"
ACCOUNT = Account("acme", "webchat", "acme-web", secrets=("tok-current", "tok-next"),
                  options={"user_token_secrets": [LOGIN_KEY, LOGIN_KEY_NEXT]})


def request(body: Any, token: str | None = "tok-current", received: int = NOW) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return Request("POST", "http://x/webhooks/webchat/acme-web", "/webhooks/webchat/acme-web", {}, headers,
                   raw, received, "raw-1")


def message(**overrides: Any) -> dict[str, Any]:
    return {"type": "message", "message_id": "m-1", "visitor_id": "v-42", "text": "Bonjour, ma commande ?",
            **overrides}


def login_token(claims: dict[str, Any], key: str = LOGIN_KEY, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


@pytest.mark.parametrize("token", ["tok-current", "tok-next"])
def test_both_tokens_verify_during_a_rotation(token: str) -> None:
    ADAPTER.verify(request(message(), token=token), ACCOUNT)


@pytest.mark.parametrize("header", [None, "tok-old"])
def test_a_missing_or_wrong_token_is_401(header: str | None) -> None:
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(message(), token=header), ACCOUNT)
    assert e.value.status == 401


def test_an_account_without_token_refuses_everything() -> None:
    with pytest.raises(Rejected) as e:
        ADAPTER.verify(request(message()), Account("acme", "webchat", "w", secrets=()))
    assert e.value.status == 403


def test_a_message_maps_to_message_received_field_by_field() -> None:
    body = message(sent_at=NOW - 2000, display_name="Zoé", reply_to="m-0", subject="Commande 1234",
                   attachments=[{"kind": "image", "url": "https://cdn.example/1.png", "mime_type": "image/png",
                                 "size_bytes": 4821}],
                   rich={"kind": "quick_reply", "payload": "ORDER_STATUS", "title": "Suivi", "data": {"b": 1}})
    [event] = ADAPTER.parse(request(body), ACCOUNT)
    env = event["envelope"]
    assert env["event_type"] == "MessageReceived" and env["tenant_id"] == "acme"
    assert env["event_id"] == derive_id("acme", "webchat", "acme-web", "v-42", "m-1")
    assert env["partition_key"] == "acme|webchat|v-42" and env["occurred_at"] == NOW - 2000
    assert env["producer"] == "ingress/webchat" and env["correlation_id"] == env["event_id"]
    assert event["sender"] == {"channel": "webchat", "id": "v-42", "display_name": "Zoé", "phone_e164": None,
                               "email": None, "login_id": None}
    assert event["text"] == "Bonjour, ma commande ?" and event["subject"] == "Commande 1234"
    assert event["attachments"][0]["url"] == "https://cdn.example/1.png"
    assert event["attachments"][0]["size_bytes"] == 4821
    assert event["rich"] == {"kind": "quick_reply", "payload": "ORDER_STATUS", "title": "Suivi",
                             "data_json": '{"b": 1}'}
    assert event["reply_to_channel_message_id"] == "m-0" and event["raw_event_id"] == "raw-1"
    Codec().encode(event)  # fits the schema


@pytest.mark.parametrize("sent_at, expected", [
    (None, NOW), (NOW - 1000, NOW - 1000), (NOW + 3_600_000, NOW), (NOW - 2 * 86_400_000, NOW),
])
def test_event_time_is_the_sdks_clock_bounded_by_receipt(sent_at, expected) -> None:
    [event] = ADAPTER.parse(request(message(sent_at=sent_at)), ACCOUNT)
    assert event["envelope"]["occurred_at"] == expected


@pytest.mark.parametrize("skew_s, sent_at, expected", [
    (0, NOW - 30 * 86_400_000, NOW - 30 * 86_400_000),  # bound lifted: a replayed past day
    (0, NOW + 1000, NOW),  # never later than receipt
    (60, NOW - 61_000, NOW), (60, NOW - 59_000, NOW - 59_000),
])
def test_the_account_sets_the_client_clock_bound(skew_s, sent_at, expected) -> None:
    account = replace(ACCOUNT, options={**ACCOUNT.options, "max_client_skew_s": skew_s})
    [event] = ADAPTER.parse(request(message(sent_at=sent_at)), account)
    assert event["envelope"]["occurred_at"] == expected


def test_a_status_maps_to_delivery_status_changed() -> None:
    body = {"type": "status", "message_id": "out-7", "visitor_id": "v-42", "status": "read", "at": NOW - 10}
    [event] = ADAPTER.parse(request(body), ACCOUNT)
    assert event["envelope"]["event_type"] == "DeliveryStatusChanged"
    assert event["envelope"]["event_id"] == derive_id("acme", "webchat", "acme-web", "v-42", "out-7", "status", "read")
    assert event["status"] == "read" and event["recipient"]["id"] == "v-42"
    assert event["channel_message_id"] == "out-7" and event["envelope"]["occurred_at"] == NOW - 10
    Codec().encode(event)


def test_a_batch_maps_every_event_and_the_ack_lists_them() -> None:
    body = {"events": [message(message_id="a"), message(message_id="b"),
                       {"type": "status", "message_id": "o", "visitor_id": "v-42", "status": "delivered"}]}
    events = ADAPTER.parse(request(body), ACCOUNT)
    assert [e["envelope"]["event_type"] for e in events] == ["MessageReceived"] * 2 + ["DeliveryStatusChanged"]
    reply = ADAPTER.ack(request(body), events)
    assert reply.status == 200 and json.loads(reply.body)["accepted"] == [e["envelope"]["event_id"] for e in events]


@pytest.mark.parametrize("body, reason", [
    (b"{oops", "malformed JSON"),
    (b"[1, 2]", "the body must be a JSON object"),
    ({"type": "typing", "visitor_id": "v"}, "unknown type 'typing'"),
    ({"visitor_id": "v"}, "missing field 'type'"),
    (message(text=None), "a message needs text, attachments or rich content"),
    (message(visitor_id="a|b"), "visitor_id"),
    (message(attachments=[{"kind": "image"}]), "never the bytes"),
    ({"events": []}, "events"),
    ({"type": "status", "message_id": "o", "visitor_id": "v", "status": "exploded"}, "status"),
])
def test_bad_bodies_are_400_with_a_reason(body, reason: str) -> None:
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(request(body), ACCOUNT)
    assert e.value.status == 400 and reason in e.value.reason


def test_a_signed_login_token_carries_the_verified_login_id_and_email() -> None:
    token = login_token({"sub": "cust-981", "email": "zoe@example.fr", "name": "Zoé M.", "exp": NOW // 1000 + 600})
    [event] = ADAPTER.parse(request(message(user_token=token)), ACCOUNT)
    assert event["sender"]["login_id"] == "cust-981" and event["sender"]["email"] == "zoe@example.fr"
    assert event["sender"]["display_name"] == "Zoé M."
    token = login_token({"sub": "cust-981"}, key=LOGIN_KEY_NEXT)  # the next key during a rotation
    [event] = ADAPTER.parse(request(message(user_token=token)), ACCOUNT)
    assert event["sender"]["login_id"] == "cust-981"


@pytest.mark.parametrize("token, reason", [
    (login_token({"sub": "c"}, key="someone-elses-key-0123456789abcdef"), "signature does not verify"),
    (login_token({"sub": "c", "exp": NOW // 1000 - 3600}), "expired"),
    (login_token({"sub": "c", "nbf": NOW // 1000 + 3600}), "not valid yet"),
    (login_token({"email": "x@example.com"}), "no valid 'sub'"),
    (jwt.encode({"sub": "c"}, LOGIN_KEY + LOGIN_KEY, algorithm="HS512"), "HS256"),
    ("not-a-jwt", "not a JWT"),
    ("eyJhbGciOiJIUzI1NiJ9.e30.!!!", "signature does not verify"),
])
def test_a_login_token_that_does_not_verify_is_401(token: str, reason: str) -> None:
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(request(message(user_token=token)), ACCOUNT)
    assert e.value.status == 401 and reason in e.value.reason


def test_alg_none_is_refused() -> None:
    token = jwt.encode({"sub": "c"}, key=None, algorithm="none")
    with pytest.raises(Rejected):
        verify_user_token(token, [LOGIN_KEY], NOW)


def test_a_login_token_without_configured_keys_is_401() -> None:
    account = Account("acme", "webchat", "w", secrets=("t",))
    with pytest.raises(Rejected) as e:
        ADAPTER.parse(request(message(user_token=login_token({"sub": "c"}))), account)
    assert "no user_token_secrets" in e.value.reason


def test_the_same_message_id_from_two_visitors_gives_two_events() -> None:
    [a] = ADAPTER.parse(request(message(visitor_id="v-1")), ACCOUNT)
    [b] = ADAPTER.parse(request(message(visitor_id="v-2")), ACCOUNT)
    assert a["envelope"]["event_id"] != b["envelope"]["event_id"]
