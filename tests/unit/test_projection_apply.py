"""The projections' pure functions: route and apply, no database, no broker."""

from __future__ import annotations

import itertools
import json
from functools import reduce

import pytest

from projections import customers, kpis, threads
from projections.engine import Table
from schemas.events import envelope, make

T0 = 1_767_254_400_000  # 2026-01-01T08:00Z
_ids = itertools.count()


def ev(event_type: str, at: int = T0, event_id: str | None = None, tenant: str = "acme", **fields):
    env = envelope(event_type, event_id=event_id or f"e{next(_ids):05d}", occurred_at=at,
                   tenant_id=tenant, partition_key="k", producer="test")
    return make(event_type, env, **fields)


def ident(channel="whatsapp", id_="33600000001", name=None):
    return {"channel": channel, "id": id_, "display_name": name, "phone_e164": None,
            "email": None, "login_id": None}


def received(at=T0, customer="c1", thread="th1", channel="whatsapp", sender=None, **kw):
    return ev("MessageReceived", at, channel=channel, channel_account_id="acct",
              sender=sender or ident(channel), channel_message_id=f"m{at}", raw_event_id="raw",
              customer_id=customer, thread_id=thread, **kw)


def sent(at=T0, customer="c1", thread="th1", channel="whatsapp", author="agent", cmid=None, **kw):
    return ev("MessageSent", at, channel=channel, channel_account_id="acct", recipient=ident(channel),
              message_id=f"o{at}", channel_message_id=cmid, author_type=author, author_id="ana",
              customer_id=customer, thread_id=thread, **kw)


def fold(projection, table: Table, key, events):
    """Apply ``events`` in order to one row, as the engine does."""
    return reduce(lambda row, e: projection.apply(table, row, e), events, table.blank(key))


# -- customers ---------------------------------------------------------------------------------
def test_customer_profile_from_messages_threads_and_enrichment():
    events = [
        received(T0, sender=ident(name="Ana Lima")),
        ev("ConversationStarted", T0, thread_id="th1", customer_id="c1", subject="order 42",
           first_message_event_id="x"),
        ev("MessageEnriched", T0 + 1, message_event_id="x", thread_id="th1", customer_id="c1",
           channel="whatsapp", language="fr", sentiment_score=-0.5, sentiment_label="negative"),
        received(T0 + 60_000, channel="email", sender=ident("email", "ana@example.com")),
        ev("ConversationStarted", T0 + 60_000, thread_id="th2", customer_id="c1", first_message_event_id="y"),
        ev("ConversationResolved", T0 + 90_000, thread_id="th1", customer_id="c1", resolved_by="agent"),
    ]
    row = fold(customers, customers.CUSTOMERS, ("acme", "c1"), events)
    assert row["name"] == "Ana Lima" and row["name_source"] == "channel"
    assert (row["first_contact_at"], row["last_contact_at"]) == (T0, T0 + 60_000)
    assert row["message_count"] == 2 and row["thread_count"] == 2
    assert row["open_threads"] == ["th2"] and row["open_thread_count"] == 1
    assert row["languages"] == ["fr"] and row["last_sentiment_label"] == "negative"
    assert row["updated_at"] == T0 + 90_000


def test_context_beats_channel_names_and_attributes_merge_by_event_time():
    ctx_old = ev("CustomerContextUpdated", T0, customer_id="c1", source="crm", name="Ana L.",
                 tier="gold", attributes={"orders": "3", "ltv": "120"})
    ctx_new = ev("CustomerContextUpdated", T0 + 10, customer_id="c1", source="shop", tier="vip",
                 attributes={"orders": "4"})
    msg = received(T0 + 20, sender=ident(name="ana_from_wa"))
    for order in itertools.permutations([ctx_old, ctx_new, msg]):
        row = fold(customers, customers.CUSTOMERS, ("acme", "c1"), order)
        assert row["name"] == "Ana L." and row["name_source"] == "context"
        assert row["tier"] == "vip"
        assert {k: v["value"] for k, v in row["attributes"].items()} == {"orders": "4", "ltv": "120"}
        assert row["context_sources"] == ["crm", "shop"]


def test_profile_fields_do_not_depend_on_the_order_between_topics():
    """Events from different topics interleave differently in a live run and a rebuild."""
    events = [
        ev("IdentityLinked", T0, customer_id="c1", identity_key="phone:+33600000001", signal="same_phone"),
        ev("CustomerContextUpdated", T0 + 5, customer_id="c1", source="crm", tier="gold"),
        received(T0 + 7),
        ev("MessageEnriched", T0 + 8, message_event_id="m", customer_id="c1", channel="sms",
           language="en", sentiment_label="positive", sentiment_score=0.6),
        ev("MessageEnriched", T0 + 3, message_event_id="n", customer_id="c1", channel="sms",
           language="fr", sentiment_label="negative", sentiment_score=-0.6),
    ]
    rows = {json.dumps(fold(customers, customers.CUSTOMERS, ("acme", "c1"), p), sort_keys=True)
            for p in itertools.permutations(events)}
    assert len(rows) == 1


@pytest.mark.parametrize("first_is_link", [True, False])
def test_identity_belongs_to_the_latest_writer(first_is_link):
    key = "channel:whatsapp:33600000001"
    link = ev("IdentityLinked", T0 + 100, customer_id="c2", identity_key=key, signal="agent_manual")
    msg = received(T0, customer="c1")  # an earlier message still carried the old owner
    order = [link, msg] if first_is_link else [msg, link]
    row = reduce(lambda r, e: customers.apply_identity(r, e), order,
                 customers.IDENTITIES.blank(("acme", key)))
    assert row["customer_id"] == "c2" and row["signal"] == "agent_manual"
    assert (row["kind"], row["channel"], row["value"]) == ("channel", "whatsapp", "33600000001")
    assert row["first_seen_at"] == T0 == row["last_seen_at"]


def test_merge_routes_both_customers_and_moves_identities():
    merge = ev("IdentitiesMerged", T0, customer_id="c1", merged_customer_id="c2", signal="same_phone",
               identity_keys=["phone:+336", "channel:sms:+336"])
    targets = customers.route(merge)
    assert (customers.CUSTOMERS, ("acme", "c2")) in targets
    moved = [k for t, k in targets if t is customers.IDENTITIES]
    assert moved == [("acme", "phone:+336"), ("acme", "channel:sms:+336")]
    merged = customers.apply(customers.CUSTOMERS, customers.CUSTOMERS.blank(("acme", "c2")), merge)
    survivor = customers.apply(customers.CUSTOMERS, customers.CUSTOMERS.blank(("acme", "c1")), merge)
    assert merged["merged_into"] == "c1" and survivor["merged_into"] is None
    row = customers.apply(customers.IDENTITIES, customers.IDENTITIES.blank(("acme", "phone:+336")), merge)
    assert row["customer_id"] == "c1" and row["kind"] == "phone" and row["channel"] is None


def test_unlink_gives_the_identity_to_the_new_customer():
    key = "email:ana@example.com"
    link = ev("IdentityLinked", T0, customer_id="c1", identity_key=key, signal="verified_email")
    unlink = ev("IdentityUnlinked", T0 + 1, customer_id="c1", identity_key=key, new_customer_id="c9")
    assert (customers.CUSTOMERS, ("acme", "c9")) in customers.route(unlink)
    row = fold(customers, customers.IDENTITIES, ("acme", key), [link, unlink])
    assert row["customer_id"] == "c9" and row["signal"] == "unlinked"


def test_messages_without_a_customer_are_not_routed_to_profiles():
    assert customers.route(received(customer=None)) == []


def test_apply_never_mutates_its_input_row():
    row = customers.CUSTOMERS.blank(("acme", "c1"))
    before = repr(row)
    customers.apply(customers.CUSTOMERS, row, ev("ConversationStarted", thread_id="t", customer_id="c1",
                                                  first_message_event_id="x"))
    assert repr(row) == before


# -- threads -----------------------------------------------------------------------------------
def _life(event_type, **kw):
    return ev(event_type, T0, thread_id="th1", customer_id="c1", **kw)


@pytest.mark.parametrize("events, status, queue, assignee", [
    ([_life("ConversationStarted", first_message_event_id="m")], "open", None, None),
    ([_life("ConversationStarted", first_message_event_id="m"), _life("ConversationQueued", queue="billing")],
     "queued", "billing", None),
    ([_life("ConversationQueued", queue="billing"), _life("ConversationAssigned", agent_id="ana", queue=None)],
     "assigned", "billing", "ana"),
    ([_life("ConversationAssigned", agent_id="ana", queue="general"),
      _life("ConversationTransferred", from_agent_id="ana", to_queue="vip")], "queued", "vip", None),
    ([_life("ConversationAssigned", agent_id="ana", queue="general"),
      _life("ConversationTransferred", from_agent_id="ana", to_agent_id="bruno")], "assigned", "general", "bruno"),
    ([_life("ConversationAssigned", agent_id="ana", queue="general"),
      _life("ConversationResolved", resolved_by="agent", agent_id="ana")], "resolved", "general", "ana"),
    ([_life("ConversationResolved", resolved_by="agent"),
      _life("ConversationReopened", message_event_id="m2")], "open", None, None),
])
def test_thread_life_cycle(events, status, queue, assignee):
    row = fold(threads, threads.THREADS, ("acme", "th1"), events)
    assert (row["status"], row["queue"], row["assignee"]) == (status, queue, assignee)


def test_thread_status_follows_event_time_not_arrival_across_producers():
    """Routing queued the contact (at the message's time); the agent resolved it later; the
    resolve reached the topic first. Every arrival order gives the same row."""
    events = [
        ev("ConversationStarted", T0, thread_id="th1", customer_id="c1", first_message_event_id="m"),
        ev("ConversationQueued", T0 + 1000, thread_id="th1", customer_id="c1", queue="orders", priority=0),
        ev("ConversationAssigned", T0 + 5000, thread_id="th1", customer_id="c1", agent_id="ana", queue="orders"),
        ev("ConversationResolved", T0 + 60_000, thread_id="th1", customer_id="c1", resolved_by="agent",
           agent_id="ana"),
    ]
    rows = {json.dumps(fold(threads, threads.THREADS, ("acme", "th1"), order), sort_keys=True)
            for order in itertools.permutations(events)}
    assert len(rows) == 1
    row = json.loads(rows.pop())
    assert (row["status"], row["queue"], row["assignee"], row["resolved_at"]) == \
        ("resolved", "orders", "ana", T0 + 60_000)


def test_a_reopen_after_the_resolve_wins_in_any_order():
    resolved = ev("ConversationResolved", T0, thread_id="th1", customer_id="c1", resolved_by="agent")
    reopened = ev("ConversationReopened", T0 + 1000, thread_id="th1", customer_id="c1", message_event_id="m2")
    for order in ([resolved, reopened], [reopened, resolved]):
        row = fold(threads, threads.THREADS, ("acme", "th1"), order)
        assert (row["status"], row["resolved_at"], row["reopened_count"]) == ("open", None, 1)


def test_thread_counts_messages_across_channels_in_order():
    events = [
        _life("ConversationStarted", first_message_event_id="m", subject="order 42"),
        received(T0, channel="whatsapp"),
        sent(T0 + 30_000),
        received(T0 + 60_000, channel="email", sender=ident("email", "ana@example.com")),
        ev("MessageEnriched", T0 + 60_001, message_event_id="x", thread_id="th1", channel="email",
           sentiment_label="negative", sentiment_score=-0.4),
    ]
    row = fold(threads, threads.THREADS, ("acme", "th1"), events)
    assert (row["message_count"], row["inbound_count"], row["outbound_count"]) == (3, 2, 1)
    assert row["channels"] == ["email", "whatsapp"]
    assert (row["first_message_at"], row["last_message_at"]) == (T0, T0 + 60_000)
    assert row["last_outbound_at"] == T0 + 30_000 and row["subject"] == "order 42"
    assert row["last_sentiment_label"] == "negative"


def test_message_rows_are_the_messages():
    m = received(T0, text="Bonjour", subject="Commande")
    row = threads.apply(threads.MESSAGES, threads.MESSAGES.blank((m["envelope"]["event_id"],)), m)
    assert row["direction"] == "in" and row["author_type"] == "customer" and row["text"] == "Bonjour"
    assert threads.apply(threads.MESSAGES, row, m) == row  # idempotent
    s = sent(T0 + 1, author="bot", cmid="wamid.1")
    row = threads.apply(threads.MESSAGES, threads.MESSAGES.blank((s["envelope"]["event_id"],)), s)
    assert (row["direction"], row["author_type"], row["channel_message_id"]) == ("out", "bot", "wamid.1")


def _status(status, at):
    return ev("DeliveryStatusChanged", at, channel="whatsapp", channel_account_id="acct",
              recipient=ident(), channel_message_id="wamid.1", status=status, raw_event_id="r")


def test_delivery_status_only_moves_forward_whatever_the_arrival_order():
    events = [_status("sent", T0), _status("delivered", T0 + 1000), _status("read", T0 + 5000)]
    for order in itertools.permutations(events):
        row = fold(threads, threads.DELIVERIES, ("acme", "whatsapp", "wamid.1"), order)
        assert (row["status"], row["status_at"]) == ("read", T0 + 5000)
        assert [h[1] for h in row["history"]] == ["sent", "delivered", "read"]


def test_latest_enrichment_of_a_message_wins():
    a = ev("MessageEnriched", T0, message_event_id="m", channel="sms", sentiment_label="neutral")
    b = ev("MessageEnriched", T0 + 5, message_event_id="m", channel="sms", sentiment_label="negative",
           intents=[{"name": "refund", "confidence": 0.9}])
    for order in ([a, b], [b, a]):
        row = fold(threads, threads.ENRICHMENTS, ("acme", "m"), order)
        assert row["sentiment_label"] == "negative" and row["intents"][0]["name"] == "refund"


def test_threads_take_delivery_statuses_only_from_the_messages_topic():
    p = threads.PROJECTION
    assert p.accepts("parley.messages", "DeliveryStatusChanged")
    assert not p.accepts("parley.messages", "MessageReceived")
    assert p.accepts("parley.conversations", "MessageReceived")


# -- kpis --------------------------------------------------------------------------------------
def _contact(status, at, **kw):
    base = dict(contact_id="k1", thread_id="th1", customer_id="c1", channel="sms", queue="general",
                interval_start=T0, started_at=T0)
    return ev("ContactMeasured", at, **{**base, "status": status, **kw})


def test_a_contact_measure_replaces_the_row():
    a = _contact("waiting", T0)
    b = _contact("answered", T0 + 9, first_human_reply_at=T0 + 9, frt_ms=9, agent_id="ana")
    row = fold(kpis, kpis.CONTACTS, ("acme", "k1"), [a, b])
    assert (row["status"], row["frt_ms"], row["agent_id"]) == ("answered", 9, "ana")
    assert row["event_id"] == b["envelope"]["event_id"]
    assert fold(kpis, kpis.CONTACTS, ("acme", "k1"), [b, b]) == fold(kpis, kpis.CONTACTS, ("acme", "k1"), [b])


def test_fields_the_kpi_schemas_gain_later_land_in_extra():
    e = _contact("waiting", T0)
    e["bot_reply_at"] = T0 + 3  # an optional field added after this projection was written
    row = kpis.apply(kpis.CONTACTS, kpis.CONTACTS.blank(("acme", "k1")), e)
    assert row["extra"]["bot_reply_at"] == T0 + 3


def test_agent_interval_concurrency_is_time_weighted():
    e = ev("AgentIntervalStat", T0, agent_id="ana", interval_start=T0, online_ms=600_000,
           open_conversation_ms=900_000, idle_ms=60_000, peak_concurrency=3,
           time_at_level_ms={"0": 60_000, "1": 240_000, "2": 300_000})
    row = kpis.apply(kpis.AGENT_INTERVALS, kpis.AGENT_INTERVALS.blank(("acme", "ana", T0)), e)
    assert row["concurrency"] == 1.5 and row["peak_concurrency"] == 3
    assert row["time_at_level_ms"] == {"0": 60_000, "1": 240_000, "2": 300_000}


def test_interval_stats_are_keyed_by_interval_dimension_and_value():
    e = ev("IntervalStat", T0, interval_start=T0, dimension="channel", dimension_value="sms",
           metrics={"offered": 3.0, "sl_300": 0.5})
    assert kpis.route(e) == [(kpis.INTERVALS, ("acme", T0, "channel", "sms"))]
    row = kpis.apply(kpis.INTERVALS, kpis.INTERVALS.blank(("acme", T0, "channel", "sms")), e)
    assert row["metrics"] == {"offered": 3.0, "sl_300": 0.5}


def test_agent_status_keeps_the_last_announcement():
    e = ev("AgentStatusChanged", T0, agent_id="ana", presence="online", capacity=3,
           skills=["refund", "billing"], display_name="Ana")
    row = kpis.apply(kpis.AGENTS, kpis.AGENTS.blank(("acme", "ana")), e)
    off = ev("AgentStatusChanged", T0 + 1, agent_id="ana", presence="offline", capacity=3)
    row = kpis.apply(kpis.AGENTS, row, off)
    assert (row["presence"], row["display_name"], row["skills"]) == ("offline", "Ana", [])


@pytest.mark.parametrize("table, key, empty", [
    (kpis.CONTACTS, ("acme", "k1"), lambda: _contact("void", T0 + 1)),
    (kpis.INTERVALS, ("acme", T0, "overall", "all"),
     lambda: ev("IntervalStat", T0 + 1, interval_start=T0, dimension="overall", dimension_value="all",
                metrics={})),
    (kpis.AGENT_INTERVALS, ("acme", "ana", T0),
     lambda: ev("AgentIntervalStat", T0 + 1, agent_id="ana", interval_start=T0, online_ms=0)),
])
def test_an_empty_measure_deletes_the_row(table, key, empty):
    assert kpis.apply(table, table.blank(key), empty()) is None
