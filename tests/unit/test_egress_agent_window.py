"""The agent API refuses a free-form reply outside its customer-service window (422, naming the
window's end and the account's templates); templates and in-window replies go through."""

from __future__ import annotations

from adapters.accounts import Accounts
from adapters.base import Account
from adapters.windows import WindowBook
from schemas.events import envelope, make
from tests.unit.test_ingress_agent_api import AUTH, REPLY
from tests.unit.test_ingress_app import FAKE_ACCOUNT, NOW_MS, make_app

H = 3_600_000
WA = Account("acme", "whatsapp", "106540352242922", secrets=("s",),
             options={"templates": [{"name": "order_update", "language": "fr", "parameters": 1}]})


def book_of(app) -> WindowBook:
    return next(f.__self__ for f in app.on_startup if isinstance(getattr(f, "__self__", None), WindowBook))


def window_record(at: int, identity: str = "33612345678") -> dict:
    env = envelope("ServiceWindow", event_id=f"w{at}", occurred_at=at, tenant_id="acme",
                   partition_key=f"acme|whatsapp|106540352242922|{identity}")
    return make("ServiceWindow", env, channel="whatsapp", channel_account_id="106540352242922",
                customer_identity=identity, inbound_at=[at])


async def test_outside_the_window_a_free_form_reply_is_refused_with_the_end_and_templates(client_for) -> None:
    app, producer = make_app(accounts=Accounts([FAKE_ACCOUNT, WA]))
    client = await client_for(app)
    book = book_of(app)
    book.apply(window_record(NOW_MS - 30 * H))
    book.loaded = True
    resp = await client.post("/agents/acme/ines/replies", json=REPLY, headers=AUTH)
    assert resp.status == 422, await resp.text()
    reason = (await resp.json())["reason"]
    assert "WhatsApp 24-hour customer-service window closed at" in reason and "order_update (fr)" in reason
    assert producer.records == []
    template = {**REPLY, "message_id": "out-t", "text": None, "kind": "template", "template_name": "order_update"}
    assert (await client.post("/agents/acme/ines/replies", json=template, headers=AUTH)).status == 200


async def test_inside_the_window_and_before_the_book_is_loaded_replies_go_through(client_for) -> None:
    app, producer = make_app(accounts=Accounts([FAKE_ACCOUNT, WA]))
    client = await client_for(app)
    book = book_of(app)
    assert (await client.post("/agents/acme/ines/replies", json=REPLY, headers=AUTH)).status == 200  # not loaded yet
    book.apply(window_record(NOW_MS - 2 * H))
    book.loaded = True
    again = {**REPLY, "message_id": "out-2"}
    assert (await client.post("/agents/acme/ines/replies", json=again, headers=AUTH)).status == 200
    telegram = {**REPLY, "message_id": "out-3", "channel": "telegram", "recipient": {"id": "42"}}
    assert (await client.post("/agents/acme/ines/replies", json=telegram, headers=AUTH)).status == 200
    assert len(producer.records) == 3


async def test_a_reply_carries_the_canonical_rich_message(client_for) -> None:
    from schemas import topics
    from tests.unit.test_ingress_app import topic

    app, producer = make_app(accounts=Accounts([FAKE_ACCOUNT, WA]))
    client = await client_for(app)
    book = book_of(app)
    book.apply(window_record(NOW_MS - 30 * H))
    book.loaded = True
    content = {"text": "Which size?", "buttons": [{"id": "s", "title": "S"}, {"id": "m", "title": "M"}],
               "location": {"latitude": 48.8, "longitude": 2.3, "name": "Shop"}}
    inside = {**REPLY, "message_id": "out-rich", "text": None, "content": content, "occurred_at": NOW_MS - 29 * H}
    assert (await client.post("/agents/acme/ines/replies", json=inside, headers=AUTH)).status == 200
    template = {**REPLY, "message_id": "out-tpl", "text": None,
                "content": {"template": {"name": "order_update", "language": "fr", "parameters": ["A-1"]}}}
    assert (await client.post("/agents/acme/ines/replies", json=template, headers=AUTH)).status == 200
    rich, tpl = producer.decoded(topic(topics.MESSAGES))
    assert [b["id"] for b in rich["content"]["buttons"]] == ["s", "m"] and rich["content"]["location"]["name"] == "Shop"
    assert tpl["kind"] == "template" and tpl["template_name"] == "order_update"
    assert tpl["content"]["template"]["parameters"] == ["A-1"]
    bad = {**REPLY, "message_id": "out-bad", "text": None, "content": {"buttons": [{"id": "", "title": "x"}]}}
    assert (await client.post("/agents/acme/ines/replies", json=bad, headers=AUTH)).status == 400
