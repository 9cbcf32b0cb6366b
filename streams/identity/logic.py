"""Identity resolution: one customer id per channel identity, linked across channels (pure logic).

Two decisions, kept apart so the per-message one is partition-parallel and order-free:

1. **The customer of a message** (stage ``identity``, keyed by channel identity): the customer
   id derives from the identity's *own* key, :func:`intrinsic_key`: the phone number on a
   phone-addressed channel (so WhatsApp, SMS and RBM from one number are one customer), the
   login of a logged-in web visitor, the address of an e-mail sender, else the channel-scoped
   id. A pure function of the message: any order, any partition, any replay gives the same id.
   An agent's reply keeps the customer id the agent API gave it.
2. **The identity graph** (stage ``identity-graph``, keyed by tenant, fed only by *sightings*: the
   keys a channel identity shows for the first time, and the agents' commands): which keys belong
   to which customer, and which customers are one person. A sighting links its unowned keys to
   the identity's customer; a key already owned by another customer merges the two (the one
   seen first survives; pairs an agent split apart are never merged again). Agents link, unlink
   and merge by hand. The graph is sequenced in event time, so it decides the same whatever the
   arrival order; it emits IdentityLinked, IdentitiesMerged and IdentityUnlinked, and the
   customer profile (projections) follows merges to the surviving customer.

Threads and routing stay per customer id of 1.: a merge unifies profiles, it does not move the
threads of the merged customer (they are shown under the surviving profile).
Consumes: MessageReceived, MessageSent, DeliveryStatusChanged (``parley.messages``, key
    tenant|channel|identity); agents' commands IdentityLinked, IdentityUnlinked,
    IdentitiesMerged (``parley.identity.commands``, key tenant).
Produces: the message with ``customer_id`` set, same event id (``parley.conversation.messages``,
    key tenant|customer); sightings (internal); IdentityLinked, IdentitiesMerged,
    IdentityUnlinked (``parley.identity.events``, key tenant|customer).
Idempotency: a message id already seen for its channel identity is dropped (bounded memory);
    links and merges are set operations; a command is applied once (ids kept per customer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas import topics
from schemas.events import caused_by, derive_id, make
from streams.frozen import replace

PRODUCER = "streams/identity"
MESSAGE_TYPES = frozenset({"MessageReceived", "MessageSent", "DeliveryStatusChanged"})
COMMAND_TYPES = frozenset({"IdentityLinked", "IdentityUnlinked", "IdentitiesMerged"})
PHONE_CHANNELS = frozenset({"whatsapp", "sms", "rbm", "voice", "mms"})
MAX_APPLIED = 32  # command ids remembered per customer
MAX_CHAIN = 16  # merge chains longer than this are a bug, not data

# Strength order of identity kinds: the strongest known key names the customer of a message.
STRENGTH = {"phone": 0, "login": 1, "email": 2, "channel": 3}
SIGNAL = {"phone": "same_phone", "login": "login_token", "email": "verified_email",
          "channel": "first_contact"}


@dataclass(frozen=True)
class Customer:
    """One customer of a tenant, as the identity graph knows it."""

    customer_id: str
    first_seen: int
    keys: tuple[str, ...] = ()
    separated: tuple[str, ...] = ()  # customers split from this one: never auto-merged with it
    merged_into: str | None = None
    applied: tuple[str, ...] = ()  # ids of commands already applied (bounded)

    def to_json(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "first_seen": self.first_seen, "keys": list(self.keys),
                "separated": list(self.separated), "merged_into": self.merged_into,
                "applied": list(self.applied)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Customer:
        return cls(d["customer_id"], d["first_seen"], tuple(d.get("keys", ())),
                   tuple(d.get("separated", ())), d.get("merged_into"), tuple(d.get("applied", ())))


@dataclass(frozen=True)
class Graph:
    """The part of one tenant's identity graph an event needs (loaded by the agent)."""

    owners: Mapping[str, str] = field(default_factory=dict)  # identity key -> customer id
    customers: Mapping[str, Customer] = field(default_factory=dict)

    def canonical(self, customer_id: str) -> str:
        """Follow merges to the surviving customer id."""
        for _ in range(MAX_CHAIN):
            c = self.customers.get(customer_id)
            if c is None or c.merged_into is None:
                return customer_id
            customer_id = c.merged_into
        return customer_id

    def owner(self, key: str) -> str | None:
        cid = self.owners.get(key)
        return None if cid is None else self.canonical(cid)


@dataclass(frozen=True)
class IdentityKey:
    key: str  # kind-prefixed: phone:+33612..., email:x@y, login:abc, channel:whatsapp:33612...
    kind: str


# --- identity keys ---------------------------------------------------------------------------

def normalise_phone(value: str | None) -> str | None:
    """E.164 (``+`` and 8 to 15 digits) from a phone-like id, or None."""
    if not value:
        return None
    value = value.strip()
    for prefix in ("whatsapp:", "tel:", "sms:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix):]
    digits = re.sub(r"[\s().-]", "", value)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        digits = "+" + digits
    return digits if re.fullmatch(r"\+[1-9]\d{7,14}", digits) else None


def keys_of(identity: Mapping[str, Any]) -> list[IdentityKey]:
    """The identity keys a channel identity carries, strongest first."""
    channel = identity["channel"]
    out: list[IdentityKey] = []
    phone = normalise_phone(identity.get("phone_e164"))
    if phone is None and channel in PHONE_CHANNELS:
        phone = normalise_phone(identity.get("id"))
    if phone:
        out.append(IdentityKey(f"phone:{phone}", "phone"))
    if identity.get("login_id"):
        out.append(IdentityKey(f"login:{identity['login_id'].strip()}", "login"))
    if identity.get("email"):
        out.append(IdentityKey(f"email:{identity['email'].strip().lower()}", "email"))
    out.append(IdentityKey(f"channel:{channel}:{identity['id']}", "channel"))
    return out


def identity_of(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The customer's channel identity on a message event (sender in, recipient out)."""
    identity: Mapping[str, Any] = event["sender" if event["envelope"]["event_type"] == "MessageReceived"
                                        else "recipient"]
    return identity


def new_customer_id(tenant: str, key: str) -> str:
    """The id of the customer whose own key is ``key``."""
    return derive_id(tenant, "customer", key)


def intrinsic_key(identity: Mapping[str, Any]) -> IdentityKey:
    """The key a channel identity *is*, whatever else it shows: the phone number of a
    phone-addressed channel, a web visitor's login, an e-mail sender's address, else the
    channel-scoped id. Other keys it carries (an e-mail given in a web chat) are evidence for
    the graph, never its customer id."""
    channel = identity["channel"]
    if channel in PHONE_CHANNELS:
        phone = normalise_phone(identity.get("id")) or normalise_phone(identity.get("phone_e164"))
        if phone:
            return IdentityKey(f"phone:{phone}", "phone")
    if channel == "webchat" and identity.get("login_id"):
        return IdentityKey(f"login:{identity['login_id'].strip()}", "login")
    if channel == "email" and identity.get("email"):
        return IdentityKey(f"email:{identity['email'].strip().lower()}", "email")
    return IdentityKey(f"channel:{channel}:{identity['id']}", "channel")


def identity_keys(identity: Mapping[str, Any]) -> list[IdentityKey]:
    """The intrinsic key first, then the other keys the identity carries."""
    own = intrinsic_key(identity)
    return [own, *(k for k in keys_of(identity) if k.key != own.key)]


# --- 1. the customer of a message (per channel identity) --------------------------------------

def customer_of(msg: Mapping[str, Any]) -> str:
    """The customer id of a message: the one the agent API set on a reply, else the intrinsic
    customer of its channel identity (sender in, recipient out)."""
    chosen: str | None = msg.get("customer_id")
    if chosen:
        return chosen
    return new_customer_id(msg["envelope"]["tenant_id"], intrinsic_key(identity_of(msg)).key)


def sighting(msg: Mapping[str, Any], customer_id: str, keys: list[IdentityKey]) -> dict[str, Any]:
    """The internal record telling the graph which keys ``customer_id``'s identity showed:
    the message's envelope (time, ids, tenant) and the keys, strongest meaning first."""
    env = msg["envelope"]
    return {"t": env["occurred_at"], "r": 0, "id": env["event_id"], "type": "IdentitySighted",
            "envelope": dict(env), "customer_id": customer_id, "keys": [[k.key, k.kind] for k in keys]}


def sighted_keys(msg: Mapping[str, Any]) -> list[IdentityKey]:
    """The keys a message shows the graph: none for a delivery receipt (a look-up only) or a
    reply to a known customer, else the identity's keys, intrinsic first."""
    kind = msg["envelope"]["event_type"]
    if kind == "DeliveryStatusChanged" or msg.get("customer_id"):
        return []
    return identity_keys(identity_of(msg))


# --- 2. the graph: what it loads, what it decides ---------------------------------------------

def needs(event: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Identity keys and customer ids whose state ``decide`` reads for ``event``."""
    kind = event.get("type") or event["envelope"]["event_type"]
    if kind == "IdentitySighted":
        return [k for k, _ in event["keys"]], [event["customer_id"]]
    if kind == "IdentitiesMerged":
        return [], [event["customer_id"], event["merged_customer_id"]]
    if kind == "IdentityUnlinked":
        ids = [event["customer_id"]] + ([event["new_customer_id"]] if event["new_customer_id"] else [])
        return [event["identity_key"]], ids
    return [event["identity_key"]], [event["customer_id"]]


def load(event: Mapping[str, Any], owner_of: Callable[[str], str | None],
         customer_of: Callable[[str], Customer | None]) -> Graph:
    """The graph view ``event`` needs, read through the two look-up functions (stores)."""
    keys, ids = needs(event)
    owners = {k: o for k in keys if (o := owner_of(k)) is not None}
    customers: dict[str, Customer] = {}
    todo = list(ids) + list(owners.values())
    while todo:
        cid = todo.pop()
        if cid in customers:
            continue
        c = customer_of(cid)
        if c is not None:
            customers[cid] = c
            if c.merged_into and c.merged_into not in customers:
                todo.append(c.merged_into)
    return Graph(owners, customers)


def decide(graph: Graph, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The identity events a sighting or an agent's command causes."""
    kind = event.get("type") or event["envelope"]["event_type"]
    if kind == "IdentitySighted":
        return _sighted(graph, event)
    if kind == "IdentityLinked":
        return _manual_link(graph, event)
    if kind == "IdentityUnlinked":
        return _unlink(graph, event)
    if kind == "IdentitiesMerged":
        return _manual_merge(graph, event)
    return []


def _sighted(graph: Graph, s: dict[str, Any]) -> list[dict[str, Any]]:
    """Link the keys nobody owns to the identity's customer; merge with the owners of the
    others (except customers an agent split apart)."""
    keys = [IdentityKey(k, kind) for k, kind in s["keys"]]
    me = graph.canonical(s["customer_id"])
    known = [(keys[0], me)] + [(k, o) for k in keys if (o := graph.owner(k.key)) is not None and o != me]
    out, cid = _merge_owners(graph, s, known)
    first = not any(graph.owners.get(k.key) for k in keys)  # a customer nobody knew
    evidence = known[1][0] if len(known) > 1 else keys[0]
    for k in keys:
        if graph.owners.get(k.key) is None:
            signal = "first_contact" if first or k is keys[0] else SIGNAL[
                k.kind if k.kind != "channel" else evidence.kind]
            out.append(_linked(s, cid, k.key, signal))
    return out


def _merge_owners(graph: Graph, msg: dict[str, Any],
                  known: list[tuple[IdentityKey, str]]) -> tuple[list[dict[str, Any]], str]:
    """Merge the customers one message connects, except pairs an agent split apart."""
    primary = known[0][1]
    group, via = [primary], {}
    for key, owner in known[1:]:
        if owner not in group and not any(_separated(graph, owner, g) for g in group):
            group.append(owner)
            via[owner] = key
    if len(group) == 1:
        return [], primary
    survivor = min(group, key=lambda c: (_first_seen(graph, c), c))
    out = []
    for merged in sorted(c for c in group if c != survivor):
        key = via.get(merged) or via.get(survivor) or known[0][0]
        out.append(_merged(msg, survivor, merged, SIGNAL[key.kind], graph, by=None))
    return out, survivor


def _manual_link(graph: Graph, cmd: dict[str, Any]) -> list[dict[str, Any]]:
    cid = graph.canonical(cmd["customer_id"])
    if _applied(graph, cid, cmd) or graph.owner(cmd["identity_key"]) == cid:
        return []
    env = _env(cmd, "IdentityLinked", cmd["identity_key"], cid)
    return [make("IdentityLinked", env, customer_id=cid, identity_key=cmd["identity_key"],
                 signal="agent_manual", linked_by=cmd.get("linked_by"),
                 source_event_id=cmd["envelope"]["event_id"])]


def _unlink(graph: Graph, cmd: dict[str, Any]) -> list[dict[str, Any]]:
    cid = graph.canonical(cmd["customer_id"])
    key = cmd["identity_key"]
    if _applied(graph, cid, cmd) or graph.owner(key) != cid:
        return []  # stale: the key is no longer this customer's
    tenant = cmd["envelope"]["tenant_id"]
    # by default the key goes back to the customer it is the own key of (the one its messages
    # carry), which leaves the merge it was part of
    new_id = cmd["new_customer_id"] or new_customer_id(tenant, key)
    if new_id == cid:
        new_id = derive_id(tenant, "customer", key, "split", cmd["envelope"]["event_id"])
    env = _env(cmd, "IdentityUnlinked", key, cid)
    return [make("IdentityUnlinked", env, customer_id=cid, identity_key=key, new_customer_id=new_id,
                 undoes_event_id=cmd.get("undoes_event_id"), reason=cmd.get("reason") or "",
                 unlinked_by=cmd.get("unlinked_by"))]


def _manual_merge(graph: Graph, cmd: dict[str, Any]) -> list[dict[str, Any]]:
    survivor = graph.canonical(cmd["customer_id"])
    merged = graph.canonical(cmd["merged_customer_id"])
    if survivor == merged or merged not in graph.customers or _applied(graph, survivor, cmd):
        return []
    return [_merged(cmd, survivor, merged, "agent_manual", graph, by=cmd.get("merged_by"))]


# --- evolve ----------------------------------------------------------------------------------

def evolve(graph: Graph, event: Mapping[str, Any]) -> Graph:
    """Apply one identity event (IdentityLinked, IdentitiesMerged, IdentityUnlinked)."""
    kind = event["envelope"]["event_type"]
    at = event["envelope"]["occurred_at"]
    owners, customers = dict(graph.owners), dict(graph.customers)
    if kind == "IdentityLinked":
        key, cid = event["identity_key"], event["customer_id"]
        _move_key(owners, customers, key, cid, at)
        _note(customers, cid, event)
    elif kind == "IdentityUnlinked":
        key, old, new = event["identity_key"], event["customer_id"], event["new_customer_id"]
        _move_key(owners, customers, key, new, at)
        customers[old] = _separate(customers.get(old) or Customer(old, at), new)
        customers[new] = replace(_separate(customers[new], old), merged_into=None)
        _note(customers, old, event)
    elif kind == "IdentitiesMerged":
        _merge(owners, customers, event["customer_id"], event["merged_customer_id"], at)
        _note(customers, event["customer_id"], event)
    return Graph(owners, customers)


def _move_key(owners: dict[str, str], customers: dict[str, Customer], key: str, cid: str, at: int) -> None:
    previous = owners.get(key)
    if previous and previous != cid and previous in customers:
        prev = customers[previous]
        customers[previous] = replace(prev, keys=tuple(k for k in prev.keys if k != key))
    owners[key] = cid
    target = customers.get(cid) or Customer(cid, at)
    if key not in target.keys:
        target = replace(target, keys=tuple(sorted((*target.keys, key))))
    customers[cid] = target


def _merge(owners: dict[str, str], customers: dict[str, Customer], survivor: str, merged: str, at: int) -> None:
    s = customers.get(survivor) or Customer(survivor, at)
    m = customers.get(merged) or Customer(merged, at)
    for key in m.keys:
        owners[key] = survivor
    separated = tuple(sorted((set(s.separated) | set(m.separated)) - {survivor, merged}))
    customers[survivor] = replace(s, keys=tuple(sorted(set(s.keys) | set(m.keys))), separated=separated,
                                  first_seen=min(s.first_seen, m.first_seen))
    customers[merged] = replace(m, keys=(), separated=(), merged_into=survivor)


def _separate(c: Customer, other: str) -> Customer:
    return c if other in c.separated else replace(c, separated=tuple(sorted((*c.separated, other))))


def _note(customers: dict[str, Customer], cid: str, event: Mapping[str, Any]) -> None:
    """Remember the command behind ``event`` on the customer, so it is applied once."""
    manual = event["envelope"]["event_type"] == "IdentityUnlinked" or event.get("signal") == "agent_manual"
    source = event["envelope"].get("causation_id")
    c = customers.get(cid)
    if not manual or c is None or not source or source in c.applied:
        return
    customers[cid] = replace(c, applied=(*c.applied, source)[-MAX_APPLIED:])


def changes(before: Graph, after: Graph) -> tuple[dict[str, str], dict[str, Customer]]:
    """Entries of ``after`` that differ from ``before``: what the agent writes back."""
    owners = {k: v for k, v in after.owners.items() if before.owners.get(k) != v}
    customers = {k: v for k, v in after.customers.items() if before.customers.get(k) != v}
    return owners, customers


def step(graph: Graph, event: dict[str, Any]) -> tuple[Graph, list[dict[str, Any]]]:
    """``decide`` then ``evolve`` over the identity events decided."""
    out = decide(graph, event)
    for e in out:
        if e["envelope"]["event_type"] in COMMAND_TYPES:
            graph = evolve(graph, e)
    return graph, out


# --- helpers ---------------------------------------------------------------------------------

def with_customer(msg: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """The message re-keyed by customer, same event id (DeliveryStatusChanged has no field)."""
    tenant = msg["envelope"]["tenant_id"]
    key = topics.CONVERSATION_MESSAGES.key(tenant, customer_id)
    out = {**msg, "envelope": {**msg["envelope"], "partition_key": key}}
    if "customer_id" in msg:
        out["customer_id"] = customer_id
    return out


def _env(cause: Mapping[str, Any], kind: str, suffix: str, customer_id: str) -> dict[str, Any]:
    tenant = cause["envelope"]["tenant_id"]
    return caused_by(cause, kind, id_suffix=suffix, producer=PRODUCER,
                     partition_key=topics.IDENTITY.key(tenant, customer_id))


def _linked(msg: dict[str, Any], cid: str, key: str, signal: str) -> dict[str, Any]:
    return make("IdentityLinked", _env(msg, "IdentityLinked", key, cid), customer_id=cid,
                identity_key=key, signal=signal, source_event_id=msg["envelope"]["event_id"])


def _merged(cause: dict[str, Any], survivor: str, merged: str, signal: str, graph: Graph,
            by: str | None) -> dict[str, Any]:
    keys = graph.customers[merged].keys if merged in graph.customers else ()
    return make("IdentitiesMerged", _env(cause, "IdentitiesMerged", merged, survivor), customer_id=survivor,
                merged_customer_id=merged, signal=signal, identity_keys=list(keys), merged_by=by,
                source_event_id=cause["envelope"]["event_id"])


def _separated(graph: Graph, a: str, b: str) -> bool:
    ca, cb = graph.customers.get(a), graph.customers.get(b)
    return bool((ca and b in ca.separated) or (cb and a in cb.separated))


def _first_seen(graph: Graph, cid: str) -> int:
    c = graph.customers.get(cid)
    return c.first_seen if c else 2**62


def _applied(graph: Graph, cid: str, cmd: Mapping[str, Any]) -> bool:
    c = graph.customers.get(cid)
    return bool(c and cmd["envelope"]["event_id"] in c.applied)
