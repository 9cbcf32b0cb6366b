"""Identity agents: re-key messages and commands by tenant, then resolve customers.

Consumes: ``parley.messages`` (key tenant|channel|identity) and ``parley.identity.commands``
    (key tenant), forwarded byte for byte to ``identity.by-tenant`` (key tenant);
    then ``identity.by-tenant``.
Produces: ``parley.identity.events`` and ``parley.conversation.messages`` (key tenant|customer).
State: tables ``identity-owners`` (tenant|identity key -> customer id) and
    ``identity-customers`` (tenant|customer id -> Customer), co-partitioned with the tenant stream.
Idempotency and replay: see ``streams.identity.logic``; the re-key hop copies records unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from parley import logs
from schemas import topics
from schemas.codec import Codec, DecodeError
from streams.identity import logic
from streams.identity.logic import Customer
from streams.wiring import Wiring, tenant_of_key

STAGE = "streams/identity"
log = logs.get(STAGE)


def register(w: Wiring) -> None:
    messages = w.topic(topics.MESSAGES, raw=True)
    commands = w.topic(topics.IDENTITY_COMMANDS, raw=True)
    by_tenant = w.internal(topics.IDENTITY_BY_TENANT)
    identity_events = w.topic(topics.IDENTITY)
    out_messages = w.topic(topics.CONVERSATION_MESSAGES)
    owners = w.table("identity-owners", topics.IDENTITY_BY_TENANT)
    customers = w.table("identity-customers", topics.IDENTITY_BY_TENANT)
    codec = Codec()

    async def rekey(stream: Any) -> None:
        # (tenant, raw event bytes): the tenant is the key's prefix; decode only without one
        async for event in stream.events():
            msg = event.message
            tenant = tenant_of_key(msg.key)
            if tenant is None:
                try:
                    tenant = codec.decode(msg.value)["envelope"]["tenant_id"]
                except (DecodeError, KeyError, TypeError) as e:
                    await w.dead_letter(STAGE, event, "undecodable", str(e))
                    continue
            await w.send(by_tenant, msg.value, key=tenant)

    w.app.agent(messages, name="identity-rekey-messages")(rekey)
    w.app.agent(commands, name="identity-rekey-commands")(rekey)

    @w.app.agent(by_tenant, name="identity-resolve")
    async def resolve(stream: Any) -> None:
        async for out, save in w.decisions(STAGE, stream, lambda value: _apply(value, owners, customers)):
            sent = []
            for e in out:
                kind = e["envelope"]["event_type"]
                sent.append(await w.send(out_messages if kind in logic.MESSAGE_TYPES else identity_events, e))
            await w.then_save(sent, save)


def _nothing() -> None:
    return None


def _apply(event: dict[str, Any], owners: Any, customers: Any) -> tuple[list[dict[str, Any]], Callable[[], None]]:
    """Load the graph view and decide; returns the events to send and the table writes to make
    once they are acknowledged."""
    tenant = event["envelope"]["tenant_id"]
    if event["envelope"]["event_type"] not in logic.MESSAGE_TYPES | logic.COMMAND_TYPES:
        return [], _nothing

    def customer_of(cid: str) -> Customer | None:
        d = customers.get(f"{tenant}|{cid}")
        return Customer.from_json(d) if d else None

    graph = logic.load(event, lambda k: owners.get(f"{tenant}|{k}"), customer_of)
    after, out = logic.step(graph, event)
    changed_owners, changed_customers = logic.changes(graph, after)

    def save() -> None:
        for key, cid in changed_owners.items():
            owners[f"{tenant}|{key}"] = cid
        for cid, c in changed_customers.items():
            customers[f"{tenant}|{cid}"] = c.to_json()

    log.debug("identity.resolved", event_id=event["envelope"]["event_id"], tenant=tenant, emitted=len(out))
    return out, save
