"""Identity resolution: one customer id across channels (pure logic).

Consumes: MessageReceived, MessageSent and DeliveryStatusChanged (from ``parley.messages``) and
    the agents' commands IdentityLinked, IdentityUnlinked and IdentitiesMerged (from
    ``parley.identity.commands``), all re-keyed by tenant (``identity.by-tenant``).
Produces: IdentityLinked, IdentitiesMerged, IdentityUnlinked (``parley.identity.events``, key
    tenant|customer) and the message with ``customer_id`` set, same event id
    (``parley.conversation.messages``, key tenant|customer).
Key: tenant. A phone number seen on WhatsApp and on SMS arrives under two input keys, and one
    message may connect a login to an e-mail: resolving a tenant's graph on one partition keeps
    every link, merge and unlink consistent without cross-partition look-ups.
State: a :class:`Graph` view loaded for each event: identity key -> customer id, and customer id
    -> :class:`Customer` (its keys, first sighting, customers it was split from, merge target).
Idempotency: links and merges are set operations (a repeated message finds its keys already
    linked and emits nothing but the message again, same id); a split pair is never merged
    again automatically; manual commands are remembered per customer (bounded) and applied once.
Replay: ids derive from the input event ids and identity keys, time is the event's, so the same
    tenant stream gives the same events. Messages of different channel identities come from
    different input partitions, and a fresh re-run may interleave them differently on the tenant
    stream; where their order matters (the SMS or the WhatsApp message first: which key's link
    says first_contact; an e-mail before or after the web login that carries it: a merge or a
    plain link) the re-run emits different, equally valid, events. Only an event-time reorder
    buffer before the tenant stream would remove that (not done).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.events import caused_by, derive_id, make

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
    return event["sender"] if event["envelope"]["event_type"] == "MessageReceived" else event["recipient"]


def new_customer_id(tenant: str, key: str) -> str:
    """The id a customer gets when first seen with ``key`` as its strongest identity."""
    return derive_id(tenant, "customer", key)


# --- what the agent loads --------------------------------------------------------------------

def needs(event: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Identity keys and customer ids whose state ``decide`` reads for ``event``."""
    kind = event["envelope"]["event_type"]
    if kind in MESSAGE_TYPES:
        preset = [event["customer_id"]] if event.get("customer_id") else []
        return [k.key for k in keys_of(identity_of(event))], preset
    if kind == "IdentitiesMerged":
        return [], [event["customer_id"], event["merged_customer_id"]]
    if kind == "IdentityUnlinked":
        ids = [event["customer_id"]] + ([event["new_customer_id"]] if event["new_customer_id"] else [])
        return [event["identity_key"]], ids
    return [event["identity_key"]], [event["customer_id"]]


def load(event: Mapping[str, Any], owner_of: Callable[[str], str | None],
         customer_of: Callable[[str], Customer | None]) -> Graph:
    """The graph view ``event`` needs, read through the two look-up functions (tables)."""
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


# --- decide ----------------------------------------------------------------------------------

def decide(graph: Graph, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The identity events ``event`` causes, then the message with its customer id if a message."""
    kind = event["envelope"]["event_type"]
    if kind in MESSAGE_TYPES:
        return _resolve_message(graph, event)
    if kind == "IdentityLinked":
        return _manual_link(graph, event)
    if kind == "IdentityUnlinked":
        return _unlink(graph, event)
    if kind == "IdentitiesMerged":
        return _manual_merge(graph, event)
    return []


def _resolve_message(graph: Graph, msg: dict[str, Any]) -> list[dict[str, Any]]:
    tenant = msg["envelope"]["tenant_id"]
    if msg.get("customer_id"):  # an agent's reply to a known customer: keep it, follow merges
        return [with_customer(msg, graph.canonical(msg["customer_id"]))]
    keys = keys_of(identity_of(msg))
    known = [(k, o) for k in keys if (o := graph.owner(k.key)) is not None]
    if msg["envelope"]["event_type"] == "DeliveryStatusChanged":  # look-up only, never links
        cid = known[0][1] if known else new_customer_id(tenant, keys[0].key)
        return [with_customer(msg, cid)]
    if not known:
        cid = new_customer_id(tenant, keys[0].key)
        links = [_linked(msg, cid, k.key, "first_contact") for k in keys]
        return [*links, with_customer(msg, cid)]
    out, cid = _merge_owners(graph, msg, known)
    evidence = known[0][0]
    for k in keys:
        if graph.owners.get(k.key) is None:
            signal = SIGNAL[k.kind] if k.kind != "channel" else SIGNAL[evidence.kind]
            out.append(_linked(msg, cid, k.key, signal))
    return [*out, with_customer(msg, cid)]


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
    new_id = cmd["new_customer_id"] or derive_id(tenant, "customer", key, "split", cmd["envelope"]["event_id"])
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
        customers[new] = _separate(customers[new], old)
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
    out = {**msg, "envelope": {**msg["envelope"], "partition_key": f"{tenant}|{customer_id}"}}
    if "customer_id" in msg:
        out["customer_id"] = customer_id
    return out


def customer_key(tenant: str, customer_id: str) -> str:
    return f"{tenant}|{customer_id}"


def _env(cause: Mapping[str, Any], kind: str, suffix: str, customer_id: str) -> dict[str, Any]:
    tenant = cause["envelope"]["tenant_id"]
    return caused_by(cause, kind, id_suffix=suffix, producer=PRODUCER,
                     partition_key=customer_key(tenant, customer_id))


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
