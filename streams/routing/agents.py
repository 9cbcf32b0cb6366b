"""Routing agents: gather what routing needs by tenant, then decide.

Consumes: ``routing.by-tenant`` (key tenant), where the threads and enrich agents write what
    routing needs of ``parley.conversations`` (``logic.wanted``), and where the re-key agents
    here forward ``parley.agents.status`` and ``parley.customers.context`` byte for byte.
Produces: RoutingDecided, ConversationTransferred/Queued/Assigned and out-of-hours MessageSent to
    ``parley.conversations`` (key tenant|customer).
State: tables ``routing-desk`` (tenant -> agents), ``routing-waiting`` (tenant|thread -> a
    waiting contact), ``routing-threads`` (tenant|thread ->
    ThreadRoute), ``routing-customers`` (tenant|customer -> CustomerRoute), co-partitioned with
    the tenant stream.
Idempotency and replay: see ``streams.routing.logic``. Routing's own outputs never come back:
    they were applied when decided.
"""

from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable
from typing import Any

from parley import logs
from schemas import topics
from streams.routing import config, logic
from streams.routing.state import CustomerRoute, Desk, ThreadRoute, View
from streams.wiring import Wiring, tenant_of_key

STAGE = "streams/routing"
log = logs.get(STAGE)


def register(w: Wiring, rules: config.RoutingConfig | None = None) -> None:
    book = _Book(rules or config.load(_rules_path(w.settings)))
    by_tenant = w.internal(topics.ROUTING_BY_TENANT)
    conversations = w.topic(topics.CONVERSATIONS)
    desks = _Desks(w.table("routing-desk", topics.ROUTING_BY_TENANT),
                   w.table("routing-waiting", topics.ROUTING_BY_TENANT))
    threads = w.table("routing-threads", topics.ROUTING_BY_TENANT)
    customers = w.table("routing-customers", topics.ROUTING_BY_TENANT)

    @w.app.on_partitions_revoked.connect
    async def _revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        desks.clear()  # the cache must never outlive a move of partitions

    @w.app.on_partitions_assigned.connect
    async def _assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        desks.clear()

    async def rekey_by_key(stream: Any) -> None:
        async for event in stream.events():
            tenant = tenant_of_key(event.message.key)
            if tenant is None:
                await w.dead_letter(STAGE, event, "unkeyed", "record has no tenant key")
                continue
            await w.send(by_tenant, event.message.value, key=tenant)

    w.app.agent(w.topic(topics.AGENT_STATUS, raw=True), name="routing-rekey-agents")(rekey_by_key)
    w.app.agent(w.topic(topics.CUSTOMER_CONTEXT, raw=True), name="routing-rekey-context")(rekey_by_key)

    @w.app.agent(by_tenant, name="routing-decide")
    async def decide(stream: Any) -> None:
        async for out, save in w.decisions(STAGE, stream, lambda value: _apply(value, book, desks, threads, customers)):
            await w.then_save([await w.send(conversations, e) for e in out], save)


def _rules_path(settings: Any) -> Any:
    """The configured rules file; a missing default file means built-in rules for every tenant."""
    path = settings.routing_file
    if path is not None and not path.exists() and "routing_file" not in settings.model_fields_set:
        log.warning("routing.default_rules", missing=str(path))
        return None
    return path


class _Book:
    """Each tenant's rules and their version label, computed once."""

    def __init__(self, cfg: config.RoutingConfig) -> None:
        self.cfg = cfg
        self._cache: dict[str, tuple[config.TenantRules, str]] = {}

    def __call__(self, tenant: str) -> tuple[config.TenantRules, str]:
        if tenant not in self._cache:
            self._cache[tenant] = (self.cfg.for_tenant(tenant), self.cfg.version_of(tenant))
        return self._cache[tenant]


class _Desks:
    """The tenants' desks, stored so that a change writes only what changed.

    A desk is read on every event and its waiting line can be long, so the head (agents, wake
    time) is one entry per tenant and each waiting contact its own entry (tenant|thread); the
    decoded desks are cached and the cache is dropped whenever partitions move (the tables are
    the truth; the cache is rebuilt from them on first use).
    """

    def __init__(self, heads: Any, waiting: Any) -> None:
        self.heads, self.waiting = heads, waiting
        self._cache: dict[str, Desk] = {}

    def clear(self) -> None:
        self._cache.clear()

    def get(self, tenant: str) -> Desk:
        desk = self._cache.get(tenant)
        if desk is None:
            prefix = f"{tenant}|"
            rows = [row for key, row in self.waiting.items() if key.startswith(prefix)]
            desk = Desk.from_json({**(self.heads.get(tenant) or {"agents": []}), "waiting": rows})
            desk = replace(desk, waiting=tuple(sorted(desk.waiting, key=lambda w: w.order)))
            self._cache[tenant] = desk
        return desk

    def put(self, tenant: str, old: Desk, new: Desk) -> None:
        if new.agents != old.agents or new.wake_at != old.wake_at:
            head = new.to_json()
            del head["waiting"]
            self.heads[tenant] = head
        if new.waiting is not old.waiting:
            before = {w.thread_id: w for w in old.waiting}
            after = {w.thread_id: w for w in new.waiting}
            for tid in before.keys() - after.keys():
                del self.waiting[f"{tenant}|{tid}"]
            for tid, w in after.items():
                if before.get(tid) != w:
                    self.waiting[f"{tenant}|{tid}"] = w.row()
        self._cache[tenant] = new


def _nothing() -> None:
    return None


def _apply(event: dict[str, Any], book: _Book, desks: _Desks, threads: Any,
           customers: Any) -> tuple[list[dict[str, Any]], Callable[[], None]]:
    """Decide; returns the events to send and the table writes to make once they are acknowledged."""
    if not logic.wanted(event):
        return [], _nothing
    tenant, thread_id, customer_id = logic.keys(event)
    tkey = f"{tenant}|{thread_id}" if thread_id else None
    ckey = f"{tenant}|{customer_id}" if customer_id else None
    view = View(tenant, desks.get(tenant),
                ThreadRoute.from_json(threads.get(tkey)) if tkey else None,
                CustomerRoute.from_json(customers.get(ckey)) if ckey else None)
    after, out = logic.step(view, event, *book(tenant))

    def save() -> None:
        if after.desk is not view.desk:
            desks.put(tenant, view.desk, after.desk)
        if after.thread is not None and after.thread != view.thread:
            threads[f"{tenant}|{after.thread.thread_id}"] = after.thread.to_json()
        if after.customer is not None and after.customer != view.customer:
            customers[f"{tenant}|{after.customer.customer_id}"] = after.customer.to_json()

    for e in out:
        if e["envelope"]["event_type"] == "RoutingDecided":
            log.debug("routing.decided", event_id=e["envelope"]["event_id"], thread_id=e["thread_id"],
                     target=e["target_kind"], queue=e["queue"], agent_id=e["agent_id"], reasons=e["reasons"])
    return out, save
