"""The demo's requests, checked by the real adapters and agent-API models (no HTTP, no broker).

Every rendered webhook must verify with the example accounts' secrets and map to the event the
scenario means (same event time, sender, account; a redelivery to the same event id); every bad
request must be refused for its own reason; every agent-API body must validate.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from adapters import accounts as accounts_mod
from adapters.agent_events import ReplyBody, StatusBody, reply_event, status_event
from adapters.app import check_event
from adapters.base import Rejected, Request
from adapters.channels import Registry
from parley.demo import webhooks
from parley.demo.scenario import BadRequest, Handshake, Inbound, Presence, Receipt, Redelivery, \
    Reply, Scenario, build_day
from parley.demo.webhooks import HttpRequest, RenderContext

ACCOUNTS = Path(__file__).resolve().parents[2] / "config" / "accounts.example.toml"
DAY = date(2026, 11, 17)


@pytest.fixture(scope="module")
def day() -> Scenario:
    return build_day(5, 0.3, DAY)


@pytest.fixture(scope="module")
def cx(day: Scenario) -> RenderContext:
    return RenderContext(day, accounts_mod.load(ACCOUNTS), "test-agent-token")


def _as_adapter_request(req: HttpRequest, received_at_ms: int) -> tuple[str, str, Request]:
    url = urlsplit(req.path)
    _, _, adapter, account_id = url.path.split("/")
    return adapter, unquote(account_id), Request(
        method=req.method, url=f"http://127.0.0.1:8080{req.path}", path=url.path,
        query=dict(parse_qsl(url.query, keep_blank_values=True)),
        headers={k.lower(): v for k, v in req.headers.items()}, body=req.body,
        received_at_ms=received_at_ms, raw_event_id="raw-test")


def _events(req: HttpRequest, cx: RenderContext, received_at_ms: int) -> list[dict]:
    name, account_id, r = _as_adapter_request(req, received_at_ms)
    adapter, account = Registry().get(name), cx.accounts.get(name, account_id)
    assert account is not None, req.path
    assert len(req.body) <= adapter.max_body_bytes
    assert adapter.handshake(r, account) is None
    adapter.verify(r, account)
    events = list(adapter.parse(r, account))
    assert all(check_event(e, account) is None for e in events)  # nothing for the dead letters
    return events


def test_customer_messages_verify_and_map_to_their_event(day: Scenario, cx: RenderContext) -> None:
    received = day.end_ms + 3600_000  # replayed just after the day: web chat keeps sent_at
    ids = set()
    for m in (s for s in day.steps if isinstance(s, Inbound)):
        (event,) = _events(webhooks.render(m, cx), cx, received)
        assert event["envelope"]["event_type"] == "MessageReceived"
        assert event["envelope"]["tenant_id"] == "acme"
        if m.channel != "email":  # e-mail: receipt time (the adapter does not read Date)
            assert event["envelope"]["occurred_at"] == m.at_ms, m.channel
        handle = m.customer.handle(m.channel)
        assert event["sender"]["id"] == (m.customer.phone if m.channel == "rbm" else handle)
        assert event["channel_account_id"] == cx.account(m.channel).account_id
        if not m.image or m.channel != "line":
            caption = [a["caption"] for a in event["attachments"]]
            assert m.text in (event["text"] or "") or m.text in caption
        ids.add(event["envelope"]["event_id"])
    assert len(ids) == day.expected_received()


def test_identity_signals_travel(day: Scenario, cx: RenderContext) -> None:
    seen = {"whatsapp": False, "email": False, "webchat": False}
    for m in (s for s in day.steps if isinstance(s, Inbound) and s.channel in seen):
        (event,) = _events(webhooks.render(m, cx), cx, day.end_ms)
        sender = event["sender"]
        if m.channel == "whatsapp":
            assert sender["phone_e164"] == m.customer.phone
        elif m.channel == "email":
            assert sender["email"] == m.customer.email
        elif m.customer.logged_in:
            assert sender["email"] == m.customer.email and sender["login_id"]
        seen[m.channel] = True
    assert all(seen.values())


def test_a_redelivery_is_the_same_event(day: Scenario, cx: RenderContext) -> None:
    redeliveries = [s for s in day.steps if isinstance(s, Redelivery)]
    assert redeliveries
    for r in redeliveries:
        again, first = webhooks.render(r, cx), webhooks.render(r.original, cx)
        if r.original.channel != "line":  # LINE sets deliveryContext.isRedelivery
            assert again.body == first.body and again.headers == first.headers
        (a,), (b,) = _events(again, cx, day.end_ms), _events(first, cx, day.end_ms)
        assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def test_receipts_name_the_reply_they_are_about(day: Scenario, cx: RenderContext) -> None:
    receipts = [s for s in day.steps if isinstance(s, Receipt)]
    assert {r.reply.channel for r in receipts} >= {"whatsapp", "messenger", "viber", "webchat"}
    for st in receipts:
        (event,) = _events(webhooks.render(st, cx), cx, day.end_ms)
        assert event["envelope"]["event_type"] == "DeliveryStatusChanged"
        assert event["status"] == {"seen": "read"}.get(st.status, st.status)
        if st.reply.channel == "webchat":
            assert event["channel_message_id"] == webhooks.reply_message_id(st.reply, cx)
        elif not (st.reply.channel == "messenger" and st.status == "read"):  # a watermark
            assert event["channel_message_id"] == webhooks.outbound_channel_id(st.reply, cx)


def test_handshakes_echo_the_challenge(day: Scenario, cx: RenderContext) -> None:
    for h in (s for s in day.steps if isinstance(s, Handshake)):
        req = webhooks.render(h, cx)
        name, account_id, r = _as_adapter_request(req, day.end_ms)
        reply = Registry().get(name).handshake(r, cx.accounts.get(name, account_id))
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        assert reply.status == 200 and body == req.expect_body == h.challenge.encode()


def test_bad_requests_are_refused_for_their_own_reason(cx: RenderContext) -> None:
    s = build_day(5, 1.0, DAY)
    cx = RenderContext(s, cx.accounts, cx.agent_token)
    for b in (st for st in s.steps if isinstance(st, BadRequest)):
        req = webhooks.render(b, cx)
        assert req.expect == webhooks.BAD_EXPECT[b.flaw]
        name, account_id, r = _as_adapter_request(req, s.end_ms)
        adapter, account = Registry().get(name), cx.accounts.get(name, account_id)
        if b.flaw == "unknown_account":
            assert account is None
            continue
        if b.flaw == "oversize":
            assert len(req.body) > adapter.max_body_bytes
            continue
        with pytest.raises(Rejected) as refused:
            adapter.verify(r, account)
            adapter.parse(r, account)
        assert refused.value.status in req.expect, (b.flaw, name, refused.value.reason)


def test_agent_api_bodies_validate_with_the_simulated_time(day: Scenario,
                                                           cx: RenderContext) -> None:
    kinds = set()
    for step in day.steps:
        if not isinstance(step, Presence | Reply):
            continue
        req = webhooks.render(step, cx)
        assert req.headers["Authorization"] == "Bearer test-agent-token"
        _, _, tenant, agent, what = req.path.split("/")
        if what == "status":
            event = status_event(tenant, agent, StatusBody.model_validate_json(req.body),
                                 req.body, 0)
        else:
            event = reply_event(tenant, agent, ReplyBody.model_validate_json(req.body), 0)
            assert event["author_type"] == step.author_type
            kinds.add(step.author_type)
        assert event["envelope"]["occurred_at"] == step.at_ms
    assert kinds == {"agent", "bot"}


@pytest.mark.parametrize("kind", ["resolve", "context"])
def test_steps_the_ingress_cannot_take_are_skipped_and_said_so(kind: str, day: Scenario,
                                                              cx: RenderContext) -> None:
    steps = day.of_kind(kind)
    assert steps and all(webhooks.render(s, cx) is None for s in steps)
    assert webhooks.skip_reason(steps[0]) == webhooks.SKIPPED[kind]


def test_another_day_or_seed_never_reuses_a_provider_id(cx: RenderContext) -> None:
    other = RenderContext(build_day(6, 0.3, DAY), cx.accounts, cx.agent_token)
    assert webhooks.wamid(cx, "in", 1) != webhooks.wamid(other, "in", 1)
