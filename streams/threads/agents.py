"""Threads agent: group each customer's messages into threads by subject.

Consumes: ``parley.conversation.messages`` (key tenant|customer).
Produces: ``parley.conversations`` (key tenant|customer): thread life-cycle events and the
    threaded messages; what routing needs of them also to ``routing.by-tenant`` (key tenant),
    the same bytes, so routing does not re-read the whole conversations topic.
State: table ``threads`` (tenant|customer -> CustomerThreads), co-partitioned with the input.
Idempotency and replay: see ``streams.threads.logic``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from parley import logs
from schemas import topics
from streams.routing import logic as routing
from streams.threads import logic
from streams.threads.logic import CustomerThreads
from streams.wiring import Wiring

STAGE = "streams/threads"
log = logs.get(STAGE)


def rules_from(settings: Any) -> logic.Rules:
    return logic.Rules(reopen_window_ms=settings.reopen_window_s * 1000,
                       continue_window_ms=settings.continue_window_s * 1000,
                       auto_resolve_after_ms=settings.auto_resolve_after_s * 1000)


def register(w: Wiring) -> None:
    source = w.topic(topics.CONVERSATION_MESSAGES)
    conversations = w.topic(topics.CONVERSATIONS)
    to_routing = w.internal(topics.ROUTING_BY_TENANT)
    table = w.table("threads", topics.CONVERSATION_MESSAGES)
    rules = rules_from(w.settings)

    @w.app.agent(source, name="threads")
    async def thread(stream: Any) -> None:
        async for out, save in w.decisions(STAGE, stream, lambda value: _apply(value, table, rules)):
            sent = []
            for e in out:  # (tenant|customer, event) and, for routing, (tenant, event)
                targets = [(conversations, e["envelope"]["partition_key"])]
                if routing.wanted(e):
                    targets.append((to_routing, e["envelope"]["tenant_id"]))
                sent += await w.fan_out(e, *targets)
            await w.then_save(sent, save)


def _apply(event: dict[str, Any], table: Any, rules: logic.Rules) -> tuple[list[dict[str, Any]], Callable[[], None]]:
    """The events to send, and the table write to make once they are acknowledged."""
    key = logic.customer_key(event)
    state = CustomerThreads.from_json(table.get(key))
    after, out = logic.step(state, event, rules)

    def save() -> None:
        if after != state:
            table[key] = after.to_json()

    log.debug("threads.applied", event_id=event["envelope"]["event_id"], key=key, emitted=len(out))
    return out, save
