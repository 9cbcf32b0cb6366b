"""Each provider's requests (shapes from the vendors' documentation) and how its answers are
classified: sent with the provider's id, transient (retried, Retry-After honoured) or permanent."""

from __future__ import annotations

import orjson
import pytest

from egress.limits import Bucket, backoff
from egress.model import Plan, SendAccount
from egress.providers import line, meta, rbm, telegram, twilio, viber, wechat
from egress.state import Delivery, fold

TEXT = {"type": "text", "text": "Your parcel left today."}


def make_plan(*parts, recipient="33612345678", mode="response", keys=None):
    return Plan(tuple(parts), {"asked": [], "sent": [], "reasons": [], "parts": len(parts), "mode": mode}, mode,
                recipient, keys or (None,) * len(parts))


def acc(provider, **send):
    return SendAccount("acme", provider, "106540352242922", send)


EVENT = {"envelope": {"event_id": "ev-1"}, "message_id": "out-1"}


def test_whatsapp_requests() -> None:
    calls = meta.requests(acc("whatsapp", access_token="T"), make_plan(
        TEXT, {"type": "text", "text": "Pick", "buttons": [{"id": "y", "title": "Yes", "url": None}]},
        {"type": "template", "template": {"name": "order_update", "language": "fr", "parameters": ["A1"]}}), EVENT)
    assert calls[0].url == "/v21.0/106540352242922/messages" and calls[0].headers["Authorization"] == "Bearer T"
    assert calls[0].json == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "33612345678",
                             "type": "text", "text": {"body": "Your parcel left today.", "preview_url": False}}
    assert calls[1].json["interactive"]["action"]["buttons"][0] == {"type": "reply",
                                                                    "reply": {"id": "y", "title": "Yes"}}
    assert calls[2].json["template"] == {"name": "order_update", "language": {"code": "fr"}, "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "A1"}]}]}


def test_messenger_human_agent_tag_past_24_hours() -> None:
    plan = make_plan(TEXT, recipient="psid", mode="human_agent")
    call = meta.requests(acc("messenger", access_token="P"), plan, EVENT)[0]
    assert call.url == "/v21.0/me/messages"
    assert call.json == {"recipient": {"id": "psid"}, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
                         "message": {"text": "Your parcel left today."}}


def test_twilio_form_and_content_template() -> None:
    calls = twilio.requests(acc("twilio", account_sid="AC1", auth_token="tok"), make_plan(
        TEXT, {"type": "template", "template": {"name": "x", "language": "en", "parameters": ["A"],
                                                "provider_id": "HX1", "body": ""}},
        recipient="whatsapp:+33612345678"), EVENT)
    assert calls[0].url == "/2010-04-01/Accounts/AC1/Messages.json"
    assert calls[0].headers["Authorization"].startswith("Basic ")
    assert ("To", "whatsapp:+33612345678") in calls[0].form and ("From", "whatsapp:106540352242922") in calls[0].form
    assert ("ContentSid", "HX1") in calls[1].form and ("ContentVariables", '{"1":"A"}') in calls[1].form


def test_telegram_inline_keyboard_and_location() -> None:
    calls = telegram.requests(acc("telegram", bot_token="7:A"), make_plan(
        {"type": "text", "text": "Pick", "buttons": [{"id": "y", "title": "Yes", "url": None}]},
        {"type": "location", "location": {"latitude": 1.5, "longitude": 2.5}}, recipient="42"), EVENT)
    assert calls[0].url == "/bot7:A/sendMessage"
    assert calls[0].json["reply_markup"] == {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}
    assert calls[1].url == "/bot7:A/sendLocation" and calls[1].json["latitude"] == 1.5


def test_line_packs_five_messages_per_call_with_one_retry_key_each() -> None:
    parts = [dict(TEXT, text=f"t{i}") for i in range(7)]
    calls = line.requests(acc("line", channel_access_token="L"), make_plan(*parts, recipient="U1", keys=("k1", "k2")),
                          EVENT)
    assert [len(c.json["messages"]) for c in calls] == [5, 2]
    assert [c.headers["X-Line-Retry-Key"] for c in calls] == ["k1", "k2"]


def test_rbm_message_id_is_the_key() -> None:
    call = rbm.requests(acc("rbm", agent_id="ag"), make_plan(
        {"type": "text", "text": "Pick", "quick_replies": [{"id": "y", "title": "Yes", "url": None}]},
        recipient="+33612345678", keys=("key-1",)), EVENT)[0]
    assert call.url == "/v1/phones/%2B33612345678/agentMessages?messageId=key-1&agentId=ag" and call.token == "rbm"
    assert call.json == {"contentMessage": {"text": "Pick",
                                            "suggestions": [{"reply": {"text": "Yes", "postbackData": "y"}}]}}


def test_viber_and_wechat_bodies() -> None:
    v = viber.requests(acc("viber", auth_token="V", sender_name="Acme"), make_plan(TEXT, recipient="u=="), EVENT)[0]
    assert v.headers == {"X-Viber-Auth-Token": "V"}
    assert v.json["sender"] == {"name": "Acme"} and v.json["type"] == "text"
    w = wechat.requests(acc("wechat"), make_plan(TEXT, recipient="oOpen"), EVENT)[0]
    assert w.json == {"touser": "oOpen", "msgtype": "text", "text": {"content": "Your parcel left today."}}
    assert "{token}" in w.url and w.token == "wechat"


def j(doc) -> bytes:
    return orjson.dumps(doc)


@pytest.mark.parametrize(("module", "status", "headers", "body", "want"), [
    (meta, 200, {}, j({"messages": [{"id": "wamid.X"}]}), ("sent", "wamid.X")),
    (meta, 200, {}, j({"recipient_id": "p", "message_id": "m_1"}), ("sent", "m_1")),
    (meta, 429, {"Retry-After": "3"}, j({"error": {"code": 130429, "message": "rate"}}), ("transient", 3.0)),
    (meta, 400, {}, j({"error": {"code": 131047, "message": "Re-engagement"}}), ("permanent", "131047")),
    (meta, 400, {}, j({"error": {"code": 10, "error_subcode": 2018278, "message": "window"}}),
     ("permanent", "2018278")),
    (meta, 500, {}, b"<html>", ("transient", None)),
    (meta, 200, {}, b"<html>oops</html>", ("permanent", "provider_garbage")),
    (twilio, 201, {}, j({"sid": "SM1"}), ("sent", "SM1")),
    (twilio, 429, {}, j({"code": 20429, "message": "Too Many Requests"}), ("transient", None)),
    (twilio, 400, {}, j({"code": 63016, "message": "outside window"}), ("permanent", "63016")),
    (telegram, 200, {}, j({"ok": True, "result": {"message_id": 7}}), ("sent", "7")),
    (telegram, 429, {}, j({"ok": False, "error_code": 429, "parameters": {"retry_after": 5}}), ("transient", 5.0)),
    (telegram, 403, {}, j({"ok": False, "error_code": 403, "description": "blocked"}), ("permanent", "403")),
    (line, 200, {}, j({"sentMessages": [{"id": "1"}]}), ("sent", "1")),
    (line, 409, {}, j({"message": "The retry key is already accepted", "sentMessages": [{"id": "1"}]}), ("sent", "1")),
    (line, 429, {}, j({"message": "You have reached your monthly limit."}), ("permanent", "quota")),
    (viber, 200, {}, j({"status": 0, "message_token": 99}), ("sent", "99")),
    (viber, 200, {}, j({"status": 12, "status_message": "tooManyRequests"}), ("transient", 1.0)),
    (viber, 200, {}, j({"status": 6, "status_message": "notSubscribed"}), ("permanent", "6")),
    (wechat, 200, {}, j({"errcode": 0, "errmsg": "ok", "msgid": 5}), ("sent", "5")),
    (wechat, 200, {}, j({"errcode": 45015, "errmsg": "response out of time limit"}), ("permanent", "45015")),
    (wechat, 200, {}, j({"errcode": 42001, "errmsg": "access_token expired"}), ("transient", 0.0)),
    (rbm, 200, {}, j({"name": "phones/+3/agentMessages/k"}), ("sent", "k")),
    (rbm, 404, {}, j({"error": {"code": 404, "status": "NOT_FOUND"}}), ("permanent", "NOT_FOUND")),
    (rbm, 429, {}, j({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}), ("transient", None)),
])
def test_classify(module, status, headers, body, want) -> None:
    r = module.classify(status, headers, body)
    kind = "sent" if r.ok else "permanent" if r.permanent else "transient"
    assert kind == want[0], r
    if kind == "sent":
        assert r.ids[0] == want[1]
    elif kind == "permanent":
        assert r.code == want[1] and r.reason
    else:
        assert r.retry_after_s == want[1]


def test_rbm_409_is_the_earlier_send() -> None:
    from egress.providers.base import Call

    r = rbm.classify(409, {}, j({"error": {"code": 409, "status": "ALREADY_EXISTS"}}), Call(key="k-1"))
    assert r.ok and r.duplicate and r.ids == ("k-1",)


def test_backoff_grows_with_full_jitter_and_honours_retry_after() -> None:
    assert backoff(1, None, 1.0, 0.5, 60) == 0.5 and backoff(4, None, 1.0, 0.5, 60) == 4.0
    assert backoff(20, None, 1.0, 0.5, 60) == 60 and backoff(3, None, 0.0, 0.5, 60) == 0.01
    assert 3.0 <= backoff(1, 3.0, 0.5) <= 3.3


def test_bucket_paces_and_a_block_holds_every_call() -> None:
    now = [100.0]
    b = Bucket(10, 2, clock=lambda: now[0])
    assert b.wait_s() == 0 and b.wait_s() == 0 and b.wait_s() == pytest.approx(0.1)
    now[0] += 1.0
    b.block(5)
    assert b.wait_s() == pytest.approx(5)


def test_fold_deliveries() -> None:
    def ev(kind, attempt, **kw):
        return {"envelope": {"event_type": kind}, "attempt": attempt, **kw}

    d = fold(None, ev("OutboundAttempted", 1))
    assert d.in_doubt and not d.final
    d = fold(d, ev("OutboundFailed", 1, final=False))
    assert not d.in_doubt and d.final is None
    d = fold(fold(d, ev("OutboundAttempted", 2)), ev("OutboundSent", 2, channel_message_id="x"))
    assert d == Delivery(2, 2, "sent", "x")


async def test_a_lane_halves_its_window_on_rate_limits_and_grows_it_back() -> None:
    from egress.lanes import Lane

    lane = Lane(SendAccount("acme", "telegram", "bot", {}, rate_per_s=100, burst=10), concurrency=8)
    for _ in range(8):
        await lane.acquire()
    assert lane.in_flight == 8
    lane.throttled()
    lane.throttled()
    assert lane.window == 2
    for _ in range(8):
        lane.release()
    for _ in range(2):
        await lane.acquire()
    assert lane.in_flight == 2  # a third would wait for a free slot
    for _ in range(10):
        lane.succeeded()
    assert lane.window == 8
