"""Identity resolution decisions (streams/identity/logic.py), without a broker."""

from __future__ import annotations

import json

import pytest

from schemas.codec import Codec
from streams import testing as f
from streams.identity import logic
from streams.identity.logic import Customer, Graph

T = f.T0
WA = f.identity("whatsapp", "33612345678", phone="+33612345678")
SMS = f.identity("sms", "+33612345678", phone="+33612345678")
MAIL = f.identity("email", "zoe@example.com", email="Zoe@Example.com")
WEB = f.identity("webchat", "w-1", login="user-9", email="zoe@example.com")
MSGR = f.identity("messenger", "psid-1")


class Store:
    """The agent's two tables as dicts, driven exactly as the agent drives them."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}
        self.customers: dict[str, Customer] = {}

    def feed(self, *events: dict) -> list[dict]:
        out: list[dict] = []
        for e in events:
            t = e["envelope"]["tenant_id"]
            graph = logic.load(e, lambda k, t=t: self.owners.get(f"{t}|{k}"),
                               lambda c, t=t: self.customers.get(f"{t}|{c}"))
            after, produced = logic.step(graph, e)
            owners, customers = logic.changes(graph, after)
            self.owners.update({f"{t}|{k}": v for k, v in owners.items()})
            self.customers.update({f"{t}|{k}": v for k, v in customers.items()})
            out.extend(produced)
        return out

    def graph(self, tenant: str = "acme") -> Graph:
        cut = len(tenant) + 1
        return Graph({k[cut:]: v for k, v in self.owners.items() if k.startswith(tenant + "|")},
                     {k[cut:]: v for k, v in self.customers.items() if k.startswith(tenant + "|")})

    def customer_of(self, key: str) -> str:
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
])
def test_identity_keys_strongest_first(ident, expected) -> None:
    assert [k.key for k in logic.keys_of(ident)] == expected


def test_first_contact_creates_a_customer_and_links_every_key() -> None:
    s = Store()
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


def test_same_phone_on_another_channel_is_the_same_customer() -> None:
    s = Store()
    first = the_message(s.feed(f.received("acme", WA, "hi", T)))
    out = s.feed(f.received("acme", SMS, "it's me again", T + 1000, n=1))
    assert kinds(out) == ["IdentityLinked", "MessageReceived"]
    assert out[0]["identity_key"] == "channel:sms:+33612345678"
    assert out[0]["signal"] == "same_phone"
    assert the_message(out)["customer_id"] == first["customer_id"]


def test_a_repeated_message_changes_nothing_and_keeps_its_id() -> None:
    s = Store()
    msg = f.received("acme", WA, "hi", T)
    first = s.feed(msg)
    state = (dict(s.owners), dict(s.customers))
    again = s.feed(msg)
    assert kinds(again) == ["MessageReceived"]
    assert again[0] == the_message(first)
    assert (s.owners, s.customers) == state


def test_tenants_do_not_share_customers() -> None:
    s = Store()
    a = the_message(s.feed(f.received("acme", WA, "hi", T)))
    b = the_message(s.feed(f.received("globex", WA, "hi", T)))
    assert a["customer_id"] != b["customer_id"]


def test_a_message_connecting_two_customers_merges_them_into_the_older() -> None:
    s = Store()
    older = the_message(s.feed(f.received("acme", MAIL, "mail", T)))["customer_id"]
    newer = the_message(s.feed(f.received("acme", f.identity("webchat", "w-1", login="user-9"), "chat", T + 5)))
    out = s.feed(f.received("acme", WEB, "logged in with my e-mail", T + 10, n=2))
    assert kinds(out) == ["IdentitiesMerged", "MessageReceived"]
    merged = out[0]
    assert (merged["customer_id"], merged["merged_customer_id"]) == (older, newer["customer_id"])
    assert merged["signal"] == "verified_email"
    assert sorted(merged["identity_keys"]) == ["channel:webchat:w-1", "login:user-9"]
    assert the_message(out)["customer_id"] == older
    assert s.customer_of("login:user-9") == older
    assert s.customer(newer["customer_id"]).merged_into == older
    # an agent reply addressed to the merged customer follows the merge
    reply = f.sent("acme", WEB, "hello", T + 20, customer_id=newer["customer_id"])
    assert kinds(s.feed(reply)) == ["MessageSent"]
    assert s.feed(reply)[0]["customer_id"] == older


def test_unlink_splits_a_wrong_merge_and_it_is_not_merged_again() -> None:
    s = Store()
    older = the_message(s.feed(f.received("acme", MAIL, "mail", T)))["customer_id"]
    s.feed(f.received("acme", f.identity("webchat", "w-1", login="user-9"), "chat", T + 5))
    wrong = f.received("acme", WEB, "merge me", T + 10, n=2)
    s.feed(wrong)
    cmds = [f.command("IdentityUnlinked", "acme", T + 100, n=i, customer_id=older, identity_key=key,
                      new_customer_id="cust-split", undoes_event_id=None, reason="wrong merge",
                      unlinked_by="agent-7")
            for i, key in enumerate(["login:user-9", "channel:webchat:w-1"])]
    out = s.feed(*cmds)
    assert kinds(out) == ["IdentityUnlinked", "IdentityUnlinked"]
    assert s.customer_of("login:user-9") == "cust-split"
    assert s.customer_of("email:zoe@example.com") == older
    assert "cust-split" in s.customer(older).separated
    # the same signals again: no merge; the strongest key (login) names the customer
    again = s.feed(f.received("acme", WEB, "still me", T + 200, n=3), wrong)
    assert kinds(again) == ["MessageReceived", "MessageReceived"]
    assert {m["customer_id"] for m in again} == {"cust-split"}
    # a redelivered command is applied once
    assert s.feed(*cmds) == []


def test_manual_link_moves_a_key_and_is_applied_once() -> None:
    s = Store()
    a = the_message(s.feed(f.received("acme", WA, "hi", T)))["customer_id"]
    b = the_message(s.feed(f.received("acme", MSGR, "hi", T + 1)))["customer_id"]
    cmd = f.command("IdentityLinked", "acme", T + 50, customer_id=a, identity_key="channel:messenger:psid-1",
                    signal="agent_manual", linked_by="agent-7")
    out = s.feed(cmd)
    assert kinds(out) == ["IdentityLinked"]
    assert (out[0]["signal"], out[0]["linked_by"], out[0]["source_event_id"]) == (
        "agent_manual", "agent-7", cmd["envelope"]["event_id"])
    assert s.customer_of("channel:messenger:psid-1") == a
    assert "channel:messenger:psid-1" not in s.customer(b).keys
    assert s.feed(cmd) == []


def test_manual_merge_overrides_a_split() -> None:
    s = Store()
    a = the_message(s.feed(f.received("acme", WA, "hi", T)))["customer_id"]
    b = the_message(s.feed(f.received("acme", MSGR, "hi", T + 1)))["customer_id"]
    cmd = f.command("IdentitiesMerged", "acme", T + 50, customer_id=a, merged_customer_id=b,
                    signal="agent_manual", merged_by="agent-7")
    out = s.feed(cmd)
    assert kinds(out) == ["IdentitiesMerged"]
    assert out[0]["identity_keys"] == ["channel:messenger:psid-1"]
    assert the_message(s.feed(f.received("acme", MSGR, "again", T + 60, n=1)))["customer_id"] == a
    assert s.feed(cmd) == []


@pytest.mark.parametrize("cmd_fields", [
    {"customer_id": "nobody", "identity_key": "channel:whatsapp:33612345678", "new_customer_id": "x"},
    {"customer_id": "nobody", "identity_key": "phone:+10000000000", "new_customer_id": ""},
])
def test_stale_unlink_is_ignored(cmd_fields) -> None:
    s = Store()
    s.feed(f.received("acme", WA, "hi", T))
    assert s.feed(f.command("IdentityUnlinked", "acme", T + 5, **cmd_fields)) == []


def test_delivery_status_is_resolved_but_never_links() -> None:
    s = Store()
    cid = the_message(s.feed(f.received("acme", WA, "hi", T)))["customer_id"]
    known = s.feed(f.delivery("acme", WA, T + 5))
    assert kinds(known) == ["DeliveryStatusChanged"]
    assert known[0]["envelope"]["partition_key"] == f"acme|{cid}"
    unknown = s.feed(f.delivery("acme", MSGR, T + 6))
    assert kinds(unknown) == ["DeliveryStatusChanged"]
    assert "acme|channel:messenger:psid-1" not in s.owners


def test_outbound_first_message_creates_the_customer() -> None:
    s = Store()
    out = s.feed(f.sent("acme", WA, "Your parcel ships today", T, author_type="automation"))
    assert kinds(out) == ["IdentityLinked", "IdentityLinked", "MessageSent"]
    assert the_message(out)["customer_id"] == logic.new_customer_id("acme", "phone:+33612345678")


def test_customer_record_round_trips_json() -> None:
    c = Customer("c1", T, ("phone:+1",), ("c2",), None, ("cmd",))
    assert Customer.from_json(json.loads(json.dumps(c.to_json()))) == c
