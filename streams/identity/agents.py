"""Identity stages: the customer of each message (per channel identity), and the tenant's graph.

``identity`` consumes ``parley.messages`` (key tenant|channel|identity; sequenced in event time)
    and produces each message once, with its customer id, to ``parley.conversation.messages``
    (key tenant|customer), and, when a channel identity shows keys it had not shown before, a
    sighting to ``identity.sightings`` (key tenant). State: ``identities`` (tenant|channel|id ->
    the keys already sighted), ``seen`` (tenant|event id -> time: redeliveries are dropped).
``identity-graph`` consumes ``identity.sightings`` and ``parley.identity.commands`` (key tenant;
    sequenced) and produces IdentityLinked, IdentitiesMerged and IdentityUnlinked to
    ``parley.identity.events`` (key tenant|customer). State: ``owners`` (tenant|identity key ->
    customer id) and ``customers`` (tenant|customer id -> Customer). Its input is one record per
    new identity (and per agent command), not one per message: a tenant on one partition is
    not a bottleneck.
Idempotency and replay: see ``streams.identity.logic``. Sealed messages (docs/PRIVACY.md) carry their
identity keys as tokens, used instead of the fields; a SubjectErased drops the entries it names
(``streams.privacy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import topics
from schemas.keys import scoped
from streams import privacy
from streams.identity import logic
from streams.identity.logic import Customer
from streams.runtime.stage import Input, Stage, StoreSpec
from streams.runtime.task import Task

SEEN_HORIZON_MS = 7 * 24 * 3600 * 1000  # a redelivery later than this is not recognised


class IdentityStage(Stage):
    name = "identity"
    inputs = (Input(topics.MESSAGES),)
    outputs = (topics.CONVERSATION_MESSAGES, topics.IDENTITY_SIGHTINGS)
    stores = (StoreSpec("identities"), StoreSpec("seen", retention_ms=SEEN_HORIZON_MS * 2, log=True))

    def process(self, ctx: Task, event: dict[str, Any]) -> None:
        env = event["envelope"]
        if env["event_type"] == privacy.ERASED:
            privacy.forget_identity(ctx, event)
            return
        if env["event_type"] not in logic.MESSAGE_TYPES:
            ctx.dead_letter("unexpected", f"{env['event_type']} on {topics.MESSAGES.name}")
            return
        tenant = env["tenant_id"]
        seen = ctx.store("seen")
        skey = scoped(tenant, env["event_id"])
        if skey in seen:
            return  # a redelivered webhook: once on the public topics
        seen[skey] = env["occurred_at"]
        ident = logic.identity_of(event)
        customer, keys = _resolved(ctx, tenant, ident, privacy.sealed_key_tokens(event))
        if event.get("customer_id"):  # an agent's reply: the customer the agent API gave it
            customer, keys = event["customer_id"], []
        elif env["event_type"] == "DeliveryStatusChanged":
            keys = []  # a look-up only: receipts never link
        if keys:
            ikey = topics.MESSAGES.key(tenant, ident["channel"], ident["id"])  # the channel identity: its messages' key
            known = ctx.store("identities").get(ikey) or []
            if any(k.key not in known for k in keys):
                ctx.store("identities")[ikey] = sorted({*known, *(k.key for k in keys)})
                sighting = logic.sighting(event, customer, keys)
                ctx.send_json(topics.IDENTITY_SIGHTINGS, topics.IDENTITY_SIGHTINGS.key(tenant), sighting)
        ctx.send(topics.CONVERSATION_MESSAGES, logic.with_customer(event, customer))


def _resolved(ctx: Task, tenant: str, ident: Mapping[str, Any],
              sealed: tuple[str, ...] | None = None) -> tuple[str, list[logic.IdentityKey]]:
    """(intrinsic customer, keys) of a channel identity: a pure function of it (of the tokens a
    sealed message carries), remembered per task (an identity writes many messages)."""
    memo = ctx.cache.setdefault("identities", {})
    k = (tenant, ident["channel"], ident["id"], ident.get("phone_e164"), ident.get("email"), ident.get("login_id"),
         sealed)
    hit = memo.get(k)
    if hit is None:
        keys = privacy.as_keys(sealed) if sealed else logic.identity_keys(ident)
        if len(memo) > 200_000:
            memo.clear()
        hit = memo[k] = (logic.new_customer_id(tenant, keys[0].key), keys)
    return hit


class IdentityGraphStage(Stage):
    name = "identity-graph"
    inputs = (Input(topics.IDENTITY_SIGHTINGS), Input(topics.IDENTITY_COMMANDS))
    outputs = (topics.IDENTITY,)
    stores = (StoreSpec("owners"),
              StoreSpec("customers", dump=Customer.to_json, load=Customer.from_json))

    def process(self, ctx: Task, event: dict[str, Any]) -> None:
        kind = event.get("type") or event["envelope"]["event_type"]
        if kind == privacy.ERASED:
            privacy.forget_graph(ctx, event)
            return
        if kind != "IdentitySighted" and kind not in logic.COMMAND_TYPES:
            ctx.dead_letter("unexpected", f"{kind} is not an identity command")
            return
        tenant = event["envelope"]["tenant_id"]
        owners, customers = ctx.store("owners"), ctx.store("customers")
        graph = logic.load(event, lambda k: owners.get(scoped(tenant, k)),
                           lambda cid: customers.get(scoped(tenant, cid)))
        after, out = logic.step(graph, event)
        changed_owners, changed_customers = logic.changes(graph, after)
        for key, cid in changed_owners.items():
            owners[scoped(tenant, key)] = cid
        for cid, c in changed_customers.items():
            customers[scoped(tenant, cid)] = c
        for e in out:
            ctx.send(topics.IDENTITY, e)
