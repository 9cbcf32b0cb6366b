"""The demo's requests, checked by the real adapters and agent-API models (no HTTP, no broker).

Every rendered webhook must verify with the example accounts' secrets and map to the event the
scenario means (same event time, sender, account; a redelivery to the same event id); every bad
request must be refused for its own reason; every agent-API body (presence, replies, resolve,
transfer, link, merge, context) must validate and carry the simulated time and the pipeline's ids.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from adapters import accounts as accounts_mod
from adapters.agent_events import (
    ContextBody,
    LinkBody,
    MergeBody,
    ReplyBody,
    ResolveBody,
    StatusBody,
    TransferBody,
    context_event,
    link_event,
    merge_event,
    reply_event,
    resolve_event,
    status_event,
    transfer_event,
)
from adapters.app import check_event
from adapters.base import Rejected, Request
from adapters.channels import Registry
from parley.app.demo import webhooks
from parley.app.demo.webhooks import HttpRequest, RenderContext
from parley.app.synthetic.scenario import (
    BadRequest,
    Context,
    Handshake,
    Inbound,
    Link,
    Merge,
    Presence,
    Receipt,
    Redelivery,
    Reply,
    Resolve,
    Scenario,
    Transfer,
    build_day,
)

ACCOUNTS = Path(__file__).resolve().parents[2] / "config" / "accounts.example.toml"
RECEIPT_CHANNELS = ("whatsapp", "messenger", "viber", "rbm", "webchat")
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
    for m in (s for s in day.agenda if isinstance(s, Inbound)):
        (event,) = _events(webhooks.render(m, cx), cx, received)
        assert event["envelope"]["event_type"] == "MessageReceived"
        assert event["envelope"]["tenant_id"] == "acme"
        assert event["envelope"]["occurred_at"] == m.at_ms, m.channel
        handle = m.customer.handle(m.channel)
        assert event["sender"]["id"] == (m.customer.phone if m.channel == "rbm" else handle)
        assert event["channel_account_id"] == cx.account(m.channel).account_id
        if not m.image or m.channel != "line":
            caption = [a["caption"] for a in event["attachments"]]
            assert m.text in (event["text"] or "") or m.text in caption
        ids.add(event["envelope"]["event_id"])
    assert len(ids) == sum(isinstance(s, Inbound) for s in day.agenda)


def test_identity_signals_travel(day: Scenario, cx: RenderContext) -> None:
    seen = {"whatsapp": False, "email": False, "webchat": False}
    for m in (s for s in day.agenda if isinstance(s, Inbound) and s.channel in seen):
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
    redeliveries = [s for s in day.agenda if isinstance(s, Redelivery)]
    assert redeliveries
    for r in redeliveries:
        again, first = webhooks.render(r, cx), webhooks.render(r.original, cx)
        if r.original.channel != "line":  # LINE sets deliveryContext.isRedelivery
            assert again.body == first.body and again.headers == first.headers
        (a,), (b,) = _events(again, cx, day.end_ms), _events(first, cx, day.end_ms)
        assert a["envelope"]["event_id"] == b["envelope"]["event_id"]


def _reply(day: Scenario, channel: str, n: int, author_type: str = "agent") -> Reply:
    """A reply as the actors make it: to the identity the pipeline saw the customer write from."""
    c = day.customers[n % len(day.customers)]
    recipient = {"id": c.phone if channel == "rbm" else c.handle(channel), "display_name": c.name}
    if channel in ("whatsapp", "rbm"):
        recipient["phone_e164"] = c.phone
    return Reply(at_ms=day.start_ms + 3600_000 + n * 1000, number=n, thread_id=f"thread-{n}",
                 customer_id=f"cust-{n}", channel=channel, recipient=recipient, author_type=author_type,
                 author_id="a-claire" if author_type == "agent" else "faq-bot", text="Bonjour", in_reply_to="ev-1")


def test_receipts_name_the_reply_they_are_about(day: Scenario, cx: RenderContext) -> None:
    for n, channel in enumerate(RECEIPT_CHANNELS):
        reply = _reply(day, channel, n)
        for status in ("delivered", "seen" if channel == "viber" else "read"):
            st = Receipt(at_ms=reply.at_ms + 5000, reply=reply, status=status)
            (event,) = _events(webhooks.render(st, cx), cx, day.end_ms)
            assert event["envelope"]["event_type"] == "DeliveryStatusChanged"
            assert event["status"] == {"seen": "read"}.get(st.status, st.status)
            if channel == "webchat":
                assert event["channel_message_id"] == webhooks.reply_message_id(reply, cx)
            elif not (channel == "messenger" and st.status == "read"):  # a watermark
                assert event["channel_message_id"] == webhooks.outbound_channel_id(reply, cx)


def test_handshakes_echo_the_challenge(day: Scenario, cx: RenderContext) -> None:
    for h in (s for s in day.agenda if isinstance(s, Handshake)):
        req = webhooks.render(h, cx)
        name, account_id, r = _as_adapter_request(req, day.end_ms)
        reply = Registry().get(name).handshake(r, cx.accounts.get(name, account_id))
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        assert reply.status == 200 and body == req.expect_body == h.challenge.encode()


def test_bad_requests_are_refused_for_their_own_reason(cx: RenderContext) -> None:
    s = build_day(5, 1.0, DAY)
    cx = RenderContext(s, cx.accounts, cx.agent_token)
    for b in (st for st in s.agenda if isinstance(st, BadRequest)):
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


def test_presence_bodies_validate_with_the_simulated_time(day: Scenario, cx: RenderContext) -> None:
    for step in (s for s in day.agenda if isinstance(s, Presence)):
        req = webhooks.render(step, cx)
        assert req.headers["Authorization"] == "Bearer test-agent-token"
        _, _, tenant, agent, what = req.path.split("/")
        event = status_event(tenant, agent, StatusBody.model_validate_json(req.body), req.body, 0)
        assert what == "status" and agent == step.agent.id
        assert event["envelope"]["occurred_at"] == step.at_ms
        assert event["queues"] == list(step.agent.queues) and event["capacity"] == step.capacity


def test_agent_commands_carry_the_pipeline_ids_and_the_simulated_time(day: Scenario,
                                                                      cx: RenderContext) -> None:
    at = day.start_ms + 7200_000
    c = day.customers[0]
    steps = [_reply(day, "whatsapp", 1), _reply(day, "messenger", 2, "bot"),
             Resolve(at_ms=at, thread_id="t-1", customer_id="c-1", channel="whatsapp", resolved_by="agent",
                     agent_id="a-claire"),
             Resolve(at_ms=at, thread_id="t-2", customer_id="c-2", channel="webchat", resolved_by="bot",
                     agent_id="faq-bot"),
             Transfer(at_ms=at, thread_id="t-1", customer_id="c-1", agent_id="a-hugo", to_queue="billing",
                      reason="billing_question"),
             Link(at_ms=at, agent_id="a-sofia", channel="messenger", identity=c.handle("messenger"), customer_id="c-1"),
             Merge(at_ms=at, agent_id="a-sofia", customer_id="c-1", merged_customer_id="c-2"),
             Context(at_ms=at, customer_id="c-1", customer=c, source="crm", tier="gold", lifecycle_stage="loyal")]
    for step in steps:
        req = webhooks.render(step, cx)
        parts = req.path.split("/")
        if isinstance(step, Reply):
            e = reply_event(parts[2], parts[3], ReplyBody.model_validate_json(req.body), 0)
            assert (e["thread_id"], e["customer_id"], e["author_type"]) == (step.thread_id, step.customer_id,
                                                                             step.author_type)
        elif isinstance(step, Resolve):
            e = resolve_event(parts[2], parts[3], parts[5], ResolveBody.model_validate_json(req.body), 0)
            assert (e["thread_id"], e["resolved_by"], parts[3]) == (step.thread_id, step.resolved_by, step.agent_id)
        elif isinstance(step, Transfer):
            e = transfer_event(parts[2], parts[3], parts[5], TransferBody.model_validate_json(req.body), 0)
            assert (e["thread_id"], e["to_queue"], e["from_agent_id"]) == ("t-1", "billing", "a-hugo")
        elif isinstance(step, Link):
            e = link_event(parts[2], parts[3], LinkBody.model_validate_json(req.body), 0)
            assert e["identity_key"] == f"channel:messenger:{c.handle('messenger')}" and e["customer_id"] == "c-1"
        elif isinstance(step, Merge):
            e = merge_event(parts[2], parts[3], MergeBody.model_validate_json(req.body), 0)
            assert (e["customer_id"], e["merged_customer_id"]) == ("c-1", "c-2")
        else:
            e = context_event(parts[2], parts[3], ContextBody.model_validate_json(req.body), 0)
            assert (e["customer_id"], e["tier"]) == ("c-1", "gold")
        assert e["envelope"]["occurred_at"] == step.at_ms and e["envelope"]["tenant_id"] == "acme"


def test_the_bot_asks_for_a_person_with_the_handoff_template(day: Scenario, cx: RenderContext) -> None:
    r = _reply(day, "webchat", 3, "bot")
    r = Reply(**{**r.__dict__, "template": "handoff"})
    e = reply_event("acme", "faq-bot", ReplyBody.model_validate_json(webhooks.render(r, cx).body), 0)
    assert e["template_name"] == "handoff" and e["author_type"] == "bot"


def test_another_day_or_seed_never_reuses_a_provider_id(cx: RenderContext) -> None:
    other = RenderContext(build_day(6, 0.3, DAY), cx.accounts, cx.agent_token)
    assert webhooks.wamid(cx, "in", 1) != webhooks.wamid(other, "in", 1)
