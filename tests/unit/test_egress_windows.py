"""Service windows in event time, templates and the plan's refusals (pure)."""

from __future__ import annotations

import pytest

from egress import windows
from egress.model import Plan, Refusal, SendAccount
from egress.plan import address, plan
from egress.templates import Template, TemplateError, validate
from schemas.events import envelope, make

H = 3_600_000
T = 1_764_000_000_000


@pytest.mark.parametrize(("channel", "age_h", "author", "mode"), [
    ("whatsapp", 1, "agent", "response"), ("whatsapp", 23.9, "agent", "response"),
    ("whatsapp", 24, "agent", "template"),
    ("messenger", 23, "bot", "response"), ("messenger", 30, "agent", "human_agent"),
    ("messenger", 30, "bot", "closed"),
    ("messenger", 24 * 7 + 1, "agent", "closed"), ("instagram", 100, "agent", "human_agent"),
    ("wechat", 47, "agent", "response"), ("wechat", 49, "agent", "template"), ("telegram", 1000, "agent", "none"),
])
def test_window_modes(channel, age_h, author, mode) -> None:
    w = windows.window_at(channel, (T,), T + int(age_h * H), author)
    assert w.mode == mode


def test_the_window_uses_the_last_customer_message_before_the_reply() -> None:
    times = (T, T + 48 * H)  # a message 48 h later does not open the window for a reply at T + 30 h
    assert windows.window_at("whatsapp", times, T + 30 * H).mode == "template"
    assert windows.window_at("whatsapp", times, T + 49 * H).mode == "response"


def test_never_written_is_closed() -> None:
    assert windows.window_at("whatsapp", (), T).mode == "template"


def test_remember_keeps_the_latest_eight() -> None:
    times: tuple[int, ...] = ()
    for i in range(20):
        times = windows.remember(times, T + i)
    assert times == tuple(T + i for i in range(12, 20))
    assert windows.remember(times, T + 19) == times


def test_closed_reason_names_the_end_and_the_templates() -> None:
    w = windows.window_at("whatsapp", (T,), T + 30 * H)
    reason = windows.closed_reason(w, ["order_update (en)"])
    assert "2025-11-25T16:00:00Z" in reason and "order_update (en)" in reason and "template" in reason


TEMPLATES = (Template("order_update", "en", "utility", 2, "Order {{1}} ships {{2}}"),
             Template("order_update", "fr", "utility", 2, "Commande {{1}} part {{2}}"))


@pytest.mark.parametrize(("name", "lang", "params", "code"), [
    ("nope", "en", [], "template_unknown"), ("order_update", "de", ["a", "b"], "template_language"),
    ("order_update", "en", ["a"], "template_parameters"), ("order_update", "en", ["a", " "], "template_parameters"),
])
def test_template_validation(name, lang, params, code) -> None:
    with pytest.raises(TemplateError) as e:
        validate(TEMPLATES, name, lang, params)
    assert e.value.code == code


def test_template_fill() -> None:
    assert validate(TEMPLATES, "order_update", "fr", ["A1", "lundi"]).fill(["A1", "lundi"]) == "Commande A1 part lundi"


def make_sent(channel="whatsapp", rid="33612345678", at=T + H, **fields):
    env = envelope("MessageSent", event_id="ev-1", occurred_at=at, tenant_id="acme", partition_key="acme|c1")
    recipient = {"channel": channel, "id": rid, "display_name": None, "phone_e164": None, "email": None,
                 "login_id": None}
    return make("MessageSent", env, channel=channel, channel_account_id="acc", recipient=recipient, message_id="m1",
                author_type="agent", **{"text": "hi", **fields})


WA = SendAccount("acme", "whatsapp", "acc", {"access_token": "t"}, TEMPLATES)


@pytest.mark.parametrize(("event", "account", "times", "code"), [
    (make_sent(), None, (T,), "unknown_account"),
    (make_sent(rid="not-a-number"), WA, (T,), "invalid_recipient"),
    (make_sent(at=T + 25 * H), WA, (T,), "window_closed"),
    (make_sent(kind="template", template_name="ghost"), WA, (), "template_unknown"),
])
def test_plan_refusals(event, account, times, code) -> None:
    out = plan(event, account, times)
    assert isinstance(out, Refusal) and out.code == code, out


def test_a_template_goes_outside_the_window() -> None:
    content = {"text": None, "media": [], "buttons": [], "quick_replies": [], "list": None, "cards": [],
               "location": None, "subject": None,
               "template": {"name": "order_update", "language": "fr", "parameters": ["A", "B"]}}
    out = plan(make_sent(at=T + 100 * H, content=content), WA, (T,))
    assert isinstance(out, Plan) and out.mode == "template" and out.parts[0]["template"]["language"] == "fr"


def test_keys_are_stable_and_only_for_keyed_providers() -> None:
    line = SendAccount("acme", "line", "acc", {})
    a, b = plan(make_sent("line", "U1"), line, ()), plan(make_sent("line", "U1"), line, ())
    assert a.keys == b.keys and a.keys[0]
    assert plan(make_sent(), WA, (T,)).keys == (None,)


@pytest.mark.parametrize(("provider", "channel", "recipient", "want"), [
    ("twilio", "sms", {"id": "+33612345678"}, "+33612345678"),
    ("twilio", "whatsapp", {"id": "33612345678", "phone_e164": "+33612345678"}, "whatsapp:+33612345678"),
    ("whatsapp", "whatsapp", {"id": "+33612345678"}, "33612345678"),
    ("email", "email", {"id": "a@b.example"}, "a@b.example"), ("email", "email", {"id": "nope"}, None),
    ("telegram", "telegram", {"id": "-100123"}, "-100123"), ("telegram", "telegram", {"id": "bob"}, None),
])
def test_addresses(provider, channel, recipient, want) -> None:
    assert address(provider, channel, recipient) == want
