"""The agents' wiring called directly with dicts for tables (no broker), and the Faust codec."""

from __future__ import annotations

import json

from schemas.codec import Codec
from streams import testing as f
from streams.codec import AvroCodec, Poison
from streams.enrich import agents as enrich_agents
from streams.enrich.logic import Enrichment, Intent
from streams.identity import agents as identity_agents
from streams.routing import agents as routing_agents
from streams.routing import config
from streams.threads import agents as threads_agents
from streams.threads.logic import Rules

T = f.T0
WA = f.identity("whatsapp", "33612345678", phone="+33612345678")


class JsonTable(dict):
    """A dict that stores what a Faust table's changelog would carry: JSON, read back."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, json.loads(json.dumps(value)))


def test_codec_round_trips_dicts_passes_bytes_and_never_raises_on_garbage() -> None:
    codec = AvroCodec()
    event = f.received("acme", WA, "hello", T)
    data = codec.dumps(event)
    assert data == Codec().encode(event)
    assert codec.loads(data) == Codec().decode(data)
    assert codec.dumps(data) == data
    poison = codec.loads(b"\x07garbage")
    assert isinstance(poison, Poison) and poison.payload == b"\x07garbage" and "magic" in poison.error


def applied(apply, *args):
    """What an agent does once Kafka acknowledged the outputs: write the state; the outputs."""
    out, save = apply(*args)
    save()
    return out


def test_identity_then_threads_through_the_agents_tables() -> None:
    owners, customers, threads = JsonTable(), JsonTable(), JsonTable()
    out = applied(identity_agents._apply, f.received("acme", WA, "order 123456 late", T), owners, customers)
    msg = out[-1]
    assert msg["customer_id"] and "acme|phone:+33612345678" in owners
    threaded = applied(threads_agents._apply, msg, threads, Rules())
    assert [e["envelope"]["event_type"] for e in threaded] == ["ConversationStarted", "MessageReceived"]
    again = applied(identity_agents._apply, f.received("acme", WA, "about order 123456", T + 60_000, n=1),
                    owners, customers)
    assert applied(threads_agents._apply, again[-1], threads, Rules())[-1]["thread_id"] == threaded[-1]["thread_id"]


def test_no_state_is_written_before_the_outputs_are_acknowledged() -> None:
    """A crash between deciding and the acknowledgement re-processes the input on the old state,
    so the same outputs (same ids) are sent again instead of being lost."""
    owners, customers, threads = JsonTable(), JsonTable(), JsonTable()
    event = f.received("acme", WA, "order 123456 late", T)
    out, _ = identity_agents._apply(event, owners, customers)
    assert (len(owners), len(customers)) == (0, 0)  # "crash": save never ran
    again = applied(identity_agents._apply, event, owners, customers)
    assert [e["envelope"]["event_id"] for e in again] == [e["envelope"]["event_id"] for e in out]
    threaded, _ = threads_agents._apply(again[-1], threads, Rules())
    assert len(threads) == 0
    assert applied(threads_agents._apply, again[-1], threads, Rules()) == threaded
    assert threads_agents._apply(again[-1], threads, Rules())[0] == []  # applied: a repeat sends nothing


def test_enriched_event_fits_the_schema() -> None:
    msg = f.received("acme", WA, "refund", T, customer_id="c1", thread_id="t1")
    e = Enrichment("en", 0.9, -0.4, "negative", (Intent("refund", 0.8),), "builtin/1", False)
    out = enrich_agents.enriched_event(msg, e)
    Codec().encode(out)
    assert out["message_event_id"] == msg["envelope"]["event_id"]
    assert out["envelope"]["partition_key"] == msg["envelope"]["partition_key"]
    assert out["intents"] == [{"name": "refund", "confidence": 0.8}]


def test_routing_desk_storage_rebuilds_what_the_cache_holds() -> None:
    heads, waiting, threads, customers = JsonTable(), JsonTable(), JsonTable(), JsonTable()
    desks = routing_agents._Desks(heads, waiting)
    book = routing_agents._Book(config.RoutingConfig())
    events = [f.agent_status("acme", "a1", T - 1, capacity=1)]
    for i in range(4):  # one agent, four contacts: one assigned, three waiting
        m = f.received("acme", f.identity("sms", f"+3361000000{i}"), "hi", T + i, n=i, customer_id=f"c{i}",
                       thread_id=f"t{i}")
        started = f.thread_command("ConversationStarted", "acme", f"c{i}", f"t{i}", T + i, n=i,
                                   first_message_event_id=m["envelope"]["event_id"])
        events += [started, m, f.enriched(m)]
    out = []
    for e in events:
        out += applied(routing_agents._apply, e, book, desks, threads, customers)
    kinds = [e["envelope"]["event_type"] for e in out]
    assert kinds.count("ConversationAssigned") == 1 and kinds.count("ConversationQueued") == 4
    cached = desks.get("acme")
    assert len(cached.waiting) == 3 and len(waiting) == 3
    assert routing_agents._Desks(heads, waiting).get("acme") == cached  # rebuilt from the tables alone
    resolved = f.thread_command("ConversationResolved", "acme", "c0", "t0", T + 100, resolved_by="agent")
    out = applied(routing_agents._apply, resolved, book, desks, threads, customers)
    assert [e["customer_id"] for e in out] == ["c1"]
    assert len(waiting) == 2 and routing_agents._Desks(heads, waiting).get("acme") == desks.get("acme")
