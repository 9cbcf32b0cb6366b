"""Delivery and windows on the read side: outbound_deliveries in any order, the thread's window,
failures the agent sees, and receipts tied to the message through the provider's id."""

from __future__ import annotations

import itertools

import pytest

from egress import events
from egress.model import Plan
from projections import threads as thr
from projections.engine import Batcher, Decoded
from projections.store import open_store
from schemas import topics
from schemas.events import derive_id, envelope, make

T = 1_764_000_000_000
H = 3_600_000
PLAN = Plan(({"type": "text", "text": "hi"},), {"asked": ["text"], "sent": ["text"], "reasons": [], "parts": 1,
                                                "mode": "response"}, "response", "33600")


def make_sent(n: int = 1, channel: str = "whatsapp", at: int = T + H) -> dict:
    env = envelope("MessageSent", event_id=derive_id("sent", n), occurred_at=at, tenant_id="acme",
                   partition_key="acme|c1")
    return make("MessageSent", env, channel=channel, channel_account_id="acc", message_id=f"m{n}", author_type="agent",
                recipient={"channel": channel, "id": "33600", "display_name": None, "phone_e164": None, "email": None,
                           "login_id": None}, text="hi", customer_id="c1", thread_id="th1")


def make_received(channel: str = "whatsapp", at: int = T) -> dict:
    env = envelope("MessageReceived", event_id=derive_id("in", channel, at), occurred_at=at, tenant_id="acme",
                   partition_key="acme|c1")
    return make("MessageReceived", env, channel=channel, channel_account_id="acc", channel_message_id=f"in{at}",
                sender={"channel": channel, "id": "33600", "display_name": None, "phone_e164": None, "email": None,
                        "login_id": None}, text="hello", raw_event_id="r", customer_id="c1", thread_id="th1")


def outcome_chain(msg: dict) -> list[dict]:
    return [events.attempted(msg, PLAN, 1, False, "acme|c1", T + 2 * H),
            events.failed(msg, 1, "429", "rate", permanent=False, final=False, key="acme|c1", now_ms=T + 2 * H + 10),
            events.attempted(msg, PLAN, 2, False, "acme|c1", T + 2 * H + 500),
            events.sent(msg, PLAN, 2, ["wamid.1"], False, "acme|c1", T + 2 * H + 600)]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_send_status_is_the_same_in_any_order(order) -> None:
    chain = outcome_chain(make_sent())
    row = thr.OUTBOUND.blank(("acme", chain[0]["message_event_id"]))
    for i in order:
        row = thr.apply_outbound(row, chain[i])
    assert (row["status"], row["attempts"], row["channel_message_id"]) == ("sent", 2, "wamid.1")
    assert row["rendering"]["sent"] == ["text"] and row["first_attempt_at"] == T + 2 * H


def test_a_final_failure_counts_on_the_thread() -> None:
    msg = make_sent()
    f = events.failed(msg, 0, "window_closed", "closed at ...", permanent=True, final=True, key="acme|c1", now_ms=T)
    routes = thr.route(f)
    assert (thr.THREADS, ("acme", "th1")) in routes
    row = thr.apply(thr.THREADS, thr.THREADS.blank(("acme", "th1")), f)
    assert row["delivery_failures"] == 1 and row["last_delivery_failure"]["code"] == "window_closed"
    assert row["updated_at"] is None  # the egress's time is not the thread's activity


@pytest.mark.parametrize(("channel", "closes", "human"), [("whatsapp", T + 24 * H, None),
                                                          ("messenger", T + 24 * H, T + 7 * 24 * H),
                                                          ("wechat", T + 48 * H, None), ("telegram", None, None)])
def test_the_thread_shows_its_window(channel, closes, human) -> None:
    row = thr.THREADS.blank(("acme", "th1"))
    for e in (make_received(channel, T - 5 * H), make_received(channel, T)):
        row = thr.apply_thread(row, e)
    assert (row["window_channel"], row["window_last_inbound_at"]) == (channel, T)
    assert (row["window_closes_at"], row["window_human_agent_closes_at"]) == (closes, human)


def test_receipts_join_the_message_through_the_provider_id(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/p.db")
    store.migrate()
    msg = make_sent()
    receipt_env = envelope("DeliveryStatusChanged", event_id="rc1", occurred_at=T + 3 * H, tenant_id="acme",
                           partition_key="acme|whatsapp|33600")
    receipt = make("DeliveryStatusChanged", receipt_env, channel="whatsapp", channel_account_id="acc",
                   recipient=msg["recipient"], channel_message_id="wamid.1", status="read", raw_event_id="r")
    records = [(topics.MESSAGES, receipt), (topics.CONVERSATIONS, msg),
               *((topics.OUTBOUND, e) for e in outcome_chain(msg))]
    b = Batcher(store, thr.PROJECTION)
    b.apply([Decoded(t.name, 0, i, e) for i, (t, e) in enumerate(records)])
    b.commit()
    row = store.query("SELECT * FROM thread_messages WHERE event_id = ?", (msg["envelope"]["event_id"],))[0]
    assert (row["delivery_status"], row["send_status"], row["send_attempts"], row["provider_message_id"]) == \
        ("read", "sent", 2, "wamid.1")
    store.close()


async def test_the_api_sums_deliveries_per_channel(tmp_path, client_for) -> None:
    from parley.settings import ApiSettings
    from projections import api

    url = f"sqlite:///{tmp_path}/d.db"
    store = open_store(url)
    store.migrate()
    ok, refused = make_sent(1), make_sent(2)
    failed = events.failed(refused, 0, "window_closed", "closed", permanent=True, final=True, key="acme|c1", now_ms=T)
    records = [(topics.CONVERSATIONS, ok), (topics.CONVERSATIONS, refused), (topics.OUTBOUND, failed),
               *[(topics.OUTBOUND, e) for e in outcome_chain(ok)]]
    b = Batcher(store, thr.PROJECTION)
    b.apply([Decoded(t.name, 0, i, e) for i, (t, e) in enumerate(records)])
    b.commit()
    store.close()
    client = await client_for(api.make_app(ApiSettings(database_url=url)))
    resp = await client.get("/api/deliveries?tenant=acme")
    assert resp.status == 200
    [wa] = (await resp.json())["channels"]
    assert wa == {"channel": "whatsapp", "total": 2, "statuses": {"failed": 1, "sent": 1},
                  "failures": {"window_closed": 1}}
