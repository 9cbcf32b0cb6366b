"""Identity decisions (streams/identity/logic.py), without a broker: the customer of a message
(pure, per channel identity) and the tenant's identity graph (fed by sightings and commands)."""

from __future__ import annotations

import json
import random

import pytest

from parley.app.synthetic import events as f
from schemas.codec import Codec
from streams.identity import logic
from streams.identity.logic import Customer, Graph

T = f.T0
WA = f.identity("whatsapp", "33612345678", phone="+33612345678")
SMS = f.identity("sms", "+33612345678", phone="+33612345678")
MAIL = f.identity("email", "zoe@example.com", email="Zoe@Example.com")
WEB = f.identity("webchat", "w-1", login="user-9", email="zoe@example.com")
MSGR = f.identity("messenger", "psid-1")


class Stages:
    """The two identity decisions driven as the stages drive them: each message gets its
    customer; the keys an identity shows for the first time go to the graph as a sighting."""

    def __init__(self) -> None:
        self.sighted: dict[str, set[str]] = {}
        self.owners: dict[str, str] = {}
        self.customers: dict[str, Customer] = {}

    def feed(self, *events: dict) -> list[dict]:
        out: list[dict] = []
        for e in events:
            if e["envelope"]["event_type"] in logic.MESSAGE_TYPES:
                out += self._message(e)
            else:
                out += self._graph(e)
        return out

    def _message(self, msg: dict) -> list[dict]:
        cid = logic.customer_of(msg)
        keys = logic.sighted_keys(msg)
        out = []
        if keys:
            ident = logic.identity_of(msg)
            known = self.sighted.setdefault(f"{ident['channel']}|{ident['id']}", set())
            if any(k.key not in known for k in keys):
                known.update(k.key for k in keys)
                out = self._graph(json.loads(json.dumps(logic.sighting(msg, cid, keys))))
        return [*out, logic.with_customer(msg, cid)]

    def _graph(self, e: dict) -> list[dict]:
        t = e["envelope"]["tenant_id"]
        graph = logic.load(e, lambda k: self.owners.get(f"{t}|{k}"), lambda c: self.customers.get(f"{t}|{c}"))
        after, produced = logic.step(graph, e)
        owners, customers = logic.changes(graph, after)
        self.owners.update({f"{t}|{k}": v for k, v in owners.items()})
        self.customers.update({f"{t}|{k}": v for k, v in customers.items()})
        return produced

    def graph(self, tenant: str = "acme") -> Graph:
        cut = len(tenant) + 1
        return Graph({k[cut:]: v for k, v in self.owners.items() if k.startswith(tenant + "|")},
                     {k[cut:]: v for k, v in self.customers.items() if k.startswith(tenant + "|")})

    def profile_of(self, key: str) -> str | None:
        return self.graph().owner(key)

    def customer(self, cid: str) -> Customer:
        return self.graph().customers[cid]


def kinds(events: list[dict]) -> list[str]:
    return [e["envelope"]["event_type"] for e in events]


def the_message(events: list[dict]) -> dict:
    (msg,) = [e for e in events if e["envelope"]["event_type"] in logic.MESSAGE_TYPES]
    return msg


@pytest.mark.parametrize("raw, expected", [
    ("+33612345678", "+33612345678"),
    ("33612345678", "+33612345678"),
    ("0033 6 12 34 56 78", "+33612345678"),
    ("whatsapp:+14155550100", "+14155550100"),
    ("+1 (415) 555-0100", "+14155550100"),
    ("12345", None),
    ("not a phone", None),
    (None, None),
])
def test_normalise_phone(raw, expected) -> None:
    assert logic.normalise_phone(raw) == expected


@pytest.mark.parametrize("ident, expected", [
    (WA, ["phone:+33612345678", "channel:whatsapp:33612345678"]),
    (f.identity("whatsapp", "33612345678"), ["phone:+33612345678", "channel:whatsapp:33612345678"]),
    (SMS, ["phone:+33612345678", "channel:sms:+33612345678"]),
    (MAIL, ["email:zoe@example.com", "channel:email:zoe@example.com"]),
    (WEB, ["login:user-9", "email:zoe@example.com", "channel:webchat:w-1"]),
    (MSGR, ["channel:messenger:psid-1"]),
    (f.identity("telegram", "12345678901"), ["channel:telegram:12345678901"]),  # not a phone channel
    (f.identity("telegram", "77", phone="+33612345678"), ["channel:telegram:77", "phone:+33612345678"]),
    (f.identity("webchat", "w-2", phone="+33612345678"), ["channel:webchat:w-2", "phone:+33612345678"]),
])
def test_identity_keys_own_key_first(ident, expected) -> None:
    """The own key of an identity is its address on its channel; a phone given on a non-phone
    channel, or an e-mail given in a chat, is evidence for the graph, never the customer."""
    assert [k.key for k in logic.identity_keys(ident)] == expected


def test_the_customer_of_a_message_is_a_function_of_its_identity() -> None:
    first, later = f.received("acme", WA, "hello", T), f.received("acme", WA, "again", T + 99, n=7)
    assert logic.customer_of(first) == logic.customer_of(later) == logic.new_customer_id("acme", "phone:+33612345678")
    assert logic.customer_of(f.received("acme", SMS, "hi", T)) == logic.customer_of(first)  # one number
    assert logic.customer_of(f.received("globex", WA, "hi", T)) != logic.customer_of(first)  # tenants apart
    reply = f.sent("acme", WA, "hello", T + 5, customer_id="given")
    assert logic.customer_of(reply) == "given"  # the agent API's customer is kept


def test_first_contact_links_every_key_to_the_customer() -> None:
    s = Stages()
    msg = f.received("acme", WA, "hello", T)
    out = s.feed(msg)
    assert kinds(out) == ["IdentityLinked", "IdentityLinked", "MessageReceived"]
    cid = logic.new_customer_id("acme", "phone:+33612345678")
    assert {e["identity_key"] for e in out[:2]} == {"phone:+33612345678", "channel:whatsapp:33612345678"}
    assert all(e["signal"] == "first_contact" and e["customer_id"] == cid for e in out[:2])
    out_msg = the_message(out)
    assert out_msg["customer_id"] == cid
    assert out_msg["envelope"]["event_id"] == msg["envelope"]["event_id"]  # same event, now keyed by customer
    assert out_msg["envelope"]["partition_key"] == f"acme|{cid}"
    link = out[0]["envelope"]
    assert link["causation_id"] == msg["envelope"]["event_id"]
    assert link["correlation_id"] == msg["envelope"]["correlation_id"]
    assert link["partition_key"] == f"acme|{cid}"
    for e in out:
        Codec().encode(e)  # every output fits its schema


def test_same_phone_on_another_channel_links_its_channel_key() -> None:
    s = Stages()
    first = the_message(s.feed(f.received("acme", WA, "hi", T)))
    out = s.feed(f.received("acme", SMS, "it's me again", T + 1000, n=1))
    assert kinds(out) == ["IdentityLinked", "MessageReceived"]
    assert (out[0]["identity_key"], out[0]["signal"]) == ("channel:sms:+33612345678", "same_phone")
    assert the_message(out)["customer_id"] == first["customer_id"]


def test_keys_already_shown_are_not_sighted_again() -> None:
    s = Stages()
    s.feed(f.received("acme", WA, "hi", T))
    state = (dict(s.owners), dict(s.customers))
    again = s.feed(f.received("acme", WA, "hi", T + 1, n=1))
    assert kinds(again) == ["MessageReceived"]
    assert (s.owners, s.customers) == state


def test_a_key_owned_by_another_customer_merges_the_two_into_the_older() -> None:
    s = Stages()
    older = the_message(s.feed(f.received("acme", MAIL, "mail", T)))["customer_id"]
    web = the_message(s.feed(f.received("acme", f.identity("webchat", "w-1", login="user-9"), "chat", T + 5)))
    out = s.feed(f.received("acme", WEB, "logged in with my e-mail", T + 10, n=2))
    assert kinds(out) == ["IdentitiesMerged", "MessageReceived"]
    merged = out[0]
    assert (merged["customer_id"], merged["merged_customer_id"]) == (older, web["customer_id"])
    assert merged["signal"] == "verified_email"
    assert sorted(merged["identity_keys"]) == ["channel:webchat:w-1", "login:user-9"]
    assert the_message(out)["customer_id"] == web["customer_id"]  # messages keep their own customer
    assert s.profile_of("login:user-9") == older  # the profile is the surviving customer's
    assert s.customer(web["customer_id"]).merged_into == older


def test_unlink_splits_a_wrong_merge_and_it_is_not_merged_again() -> None:
    s = Stages()
    older = the_message(s.feed(f.received("acme", MAIL, "mail", T)))["customer_id"]
    web = the_message(s.feed(f.received("acme", f.identity("webchat", "w-1", login="user-9"), "chat", T + 5)))
    s.feed(f.received("acme", WEB, "merge me", T + 10, n=2))
    cmds = [f.command("IdentityUnlinked", "acme", T + 100, n=i, customer_id=older, identity_key=key,
                      new_customer_id="", undoes_event_id=None, reason="wrong merge", unlinked_by="agent-7")
            for i, key in enumerate(["login:user-9", "channel:webchat:w-1"])]
    out = s.feed(*cmds)
    assert kinds(out) == ["IdentityUnlinked", "IdentityUnlinked"]
    assert out[0]["new_customer_id"] == web["customer_id"]  # the login goes back to its own customer
    assert s.profile_of("login:user-9") == web["customer_id"]
    assert s.customer(web["customer_id"]).merged_into is None
    assert s.profile_of("email:zoe@example.com") == older
    assert web["customer_id"] in s.customer(older).separated
    # the same signals again: no merge
    again = s.feed(f.received("acme", f.identity("webchat", "w-1", login="user-9", email="zoe@example.com",
                                                 name="Zoe"), "still me", T + 200, n=3))
    assert kinds(again) == ["MessageReceived"]
    assert s.customer(web["customer_id"]).merged_into is None
    assert s.feed(*cmds) == []  # a redelivered command is applied once


def test_manual_link_moves_a_key_and_is_applied_once() -> None:
    s = Stages()
    a = the_message(s.feed(f.received("acme", WA, "hi", T)))["customer_id"]
    b = the_message(s.feed(f.received("acme", MSGR, "hi", T + 1)))["customer_id"]
    cmd = f.command("IdentityLinked", "acme", T + 50, customer_id=a, identity_key="channel:messenger:psid-1",
                    signal="agent_manual", linked_by="agent-7")
    out = s.feed(cmd)
    assert kinds(out) == ["IdentityLinked"]
    assert (out[0]["signal"], out[0]["linked_by"], out[0]["source_event_id"]) == (
        "agent_manual", "agent-7", cmd["envelope"]["event_id"])
    assert s.profile_of("channel:messenger:psid-1") == a
    assert "channel:messenger:psid-1" not in s.customer(b).keys
    assert s.feed(cmd) == []


def test_manual_merge_unifies_profiles() -> None:
    s = Stages()
    a = the_message(s.feed(f.received("acme", WA, "hi", T)))["customer_id"]
    b = the_message(s.feed(f.received("acme", MSGR, "hi", T + 1)))["customer_id"]
    cmd = f.command("IdentitiesMerged", "acme", T + 50, customer_id=a, merged_customer_id=b,
                    signal="agent_manual", merged_by="agent-7")
    out = s.feed(cmd)
    assert kinds(out) == ["IdentitiesMerged"]
    assert out[0]["identity_keys"] == ["channel:messenger:psid-1"]
    assert s.graph().canonical(b) == a
    assert s.feed(cmd) == []


@pytest.mark.parametrize("cmd_fields", [
    {"customer_id": "nobody", "identity_key": "channel:whatsapp:33612345678", "new_customer_id": "x"},
    {"customer_id": "nobody", "identity_key": "phone:+10000000000", "new_customer_id": ""},
])
def test_stale_unlink_is_ignored(cmd_fields) -> None:
    s = Stages()
    s.feed(f.received("acme", WA, "hi", T))
    assert s.feed(f.command("IdentityUnlinked", "acme", T + 5, **cmd_fields)) == []


def test_delivery_status_is_resolved_but_never_sighted() -> None:
    s = Stages()
    cid = the_message(s.feed(f.received("acme", WA, "hi", T)))["customer_id"]
    known = s.feed(f.delivery("acme", WA, T + 5))
    assert kinds(known) == ["DeliveryStatusChanged"]
    assert known[0]["envelope"]["partition_key"] == f"acme|{cid}"
    unknown = s.feed(f.delivery("acme", MSGR, T + 6))
    assert kinds(unknown) == ["DeliveryStatusChanged"]
    assert "acme|channel:messenger:psid-1" not in s.owners


def test_outbound_first_message_creates_the_customer() -> None:
    s = Stages()
    out = s.feed(f.sent("acme", WA, "Your parcel ships today", T, author_type="automation"))
    assert kinds(out) == ["IdentityLinked", "IdentityLinked", "MessageSent"]
    assert the_message(out)["customer_id"] == logic.new_customer_id("acme", "phone:+33612345678")


def test_the_graph_decides_the_same_in_any_order_of_equal_time_ties() -> None:
    """Sequenced by (time, id), the graph's input is in one order; what matters is that the
    sightings of one time give the same profiles whichever identity came first."""
    msgs = [f.received("acme", MAIL, "a", T), f.received("acme", f.identity("webchat", "w-1", login="user-9"), "b", T),
            f.received("acme", WEB, "c", T, n=2), f.received("acme", SMS, "d", T, n=3),
            f.received("acme", WA, "e", T, n=4)]
    profiles = set()
    for seed in range(6):
        order = sorted(msgs, key=lambda m: random.Random(seed).random())
        s = Stages()
        s.feed(*sorted(order, key=lambda m: (m["envelope"]["occurred_at"], m["envelope"]["event_id"])))
        g = s.graph()
        profiles.add(tuple(sorted((k, g.owner(k)) for k in g.owners)))
    assert len(profiles) == 1


def test_customer_record_round_trips_json() -> None:
    c = Customer("c1", T, ("phone:+1",), ("c2",), None, ("cmd",))
    assert Customer.from_json(json.loads(json.dumps(c.to_json()))) == c
