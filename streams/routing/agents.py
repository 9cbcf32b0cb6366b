"""Routing stages: the tenant's desk decides, two forwarders bring it agents and customer tiers.

``routing`` consumes ``routing.requests`` (key tenant; sequenced in event time): new contacts
    with their first message and its enrichment, messages of threads routing still holds (bot
    turns), resolutions and transfers (all from the conversations stage), agent presence and
    customer tiers (from the forwarders). It produces RoutingDecided, ConversationQueued,
    ConversationAssigned, the bot hand-off's ConversationTransferred and the out-of-hours
    MessageSent to ``routing.decisions`` (key tenant|customer), which the conversations stage
    applies and publishes. Key: tenant: agents' presence and load, and the waiting line, are one
    consistent state per tenant. It reads one record per contact, bot turn, resolution and
    presence change, not one per message.
    State: ``desk`` (tenant -> agents and wake time), ``waiting`` (tenant|thread -> a waiting
    contact), ``threads`` (tenant|thread -> ThreadRoute), ``customers`` (tenant|customer ->
    CustomerRoute).
``presence`` forwards ``parley.agents.status`` (key tenant) to ``routing.requests`` and to
    ``kpi.threads``; ``context`` forwards ``parley.customers.context`` (key tenant|customer) to
    ``routing.requests`` keyed by tenant. Byte for byte; they publish their input's watermark.
Idempotency and replay: see ``streams.routing.logic``; sequenced, the same inputs give the same
    decisions whatever the interleaving of customers, agents and producers.
"""

from __future__ import annotations

from typing import Any

from parley import logs
from schemas import topics
from schemas.keys import scoped, tenant_of
from streams.routing import config, logic
from streams.routing.state import CustomerRoute, Desk, ThreadRoute, View
from streams.runtime.stage import Input, Stage, StoreSpec
from streams.runtime.task import Task

log = logs.get("streams.routing")


class RoutingStage(Stage):
    name = "routing"
    inputs = (Input(topics.ROUTING_REQUESTS),)
    outputs = (topics.ROUTING_DECISIONS,)
    stores = (StoreSpec("desk"), StoreSpec("waiting"),
              StoreSpec("threads", dump=ThreadRoute.to_json, load=ThreadRoute.from_json),
              StoreSpec("customers", dump=CustomerRoute.to_json, load=CustomerRoute.from_json))

    def __init__(self, rules: config.RoutingConfig) -> None:
        self.book = _Book(rules)

    def process(self, ctx: Task, event: dict[str, Any]) -> None:
        """A request from conversations (JSON: its events, a message with its enrichment), or
        presence or a customer's tier (Avro, forwarded)."""
        for e in event["events"] if "events" in event else (event,):
            self._step(ctx, e)

    def _step(self, ctx: Task, event: dict[str, Any]) -> None:
        if not logic.wanted(event):
            return
        tenant, thread_id, customer_id = logic.keys(event)
        tkey = scoped(tenant, thread_id) if thread_id else None
        ckey = scoped(tenant, customer_id) if customer_id else None
        threads, customers = ctx.store("threads"), ctx.store("customers")
        desks = _desks(ctx)
        view = View(tenant, desks.get(tenant), threads.get(tkey) if tkey else None,
                    customers.get(ckey) if ckey else None)
        after, out = logic.step(view, event, *self.book(tenant))
        desks.save(tenant)
        # (``is not`` first: most steps return the records they were given, and comparing
        # two records field by field is what this stage would spend most on)
        if after.thread is not None and after.thread is not view.thread and after.thread != view.thread:
            threads[scoped(tenant, after.thread.thread_id)] = after.thread
        if after.customer is not None and after.customer is not view.customer and after.customer != view.customer:
            customers[scoped(tenant, after.customer.customer_id)] = after.customer
        for e in out:
            ctx.send(topics.ROUTING_DECISIONS, e)


class PresenceStage(Stage):
    name = "presence"
    inputs = (Input(topics.AGENT_STATUS, sequenced=False),)
    outputs = (topics.ROUTING_REQUESTS, topics.KPI_THREADS)

    def process(self, ctx: Task, event: dict[str, Any]) -> None:
        assert ctx.record is not None and ctx.record.value is not None
        tenant = event["envelope"]["tenant_id"]
        ctx.forward(topics.ROUTING_REQUESTS, topics.ROUTING_REQUESTS.key(tenant), ctx.record.value)
        ctx.forward(topics.KPI_THREADS, topics.KPI_THREADS.key(tenant), ctx.record.value)


class ContextStage(Stage):
    name = "context"
    inputs = (Input(topics.CUSTOMER_CONTEXT, sequenced=False),)
    outputs = (topics.ROUTING_REQUESTS,)

    def process(self, ctx: Task, event: dict[str, Any]) -> None:
        assert ctx.record is not None and ctx.record.value is not None
        key = topics.ROUTING_REQUESTS.key(event["envelope"]["tenant_id"])
        ctx.forward(topics.ROUTING_REQUESTS, key, ctx.record.value)


def rules_path(settings: Any) -> Any:
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
    """The tenants' desks, kept in memory (the logic changes them in place) and stored so that a
    change writes only what changed: the head (agents, wake time) is one entry per tenant and
    each waiting contact its own entry (tenant|thread). Built from the stores on first use:
    only this task writes them."""

    def __init__(self, heads: Any, waiting: Any) -> None:
        self.heads, self.waiting = heads, waiting
        self._desks: dict[str, Desk] = {}

    def get(self, tenant: str) -> Desk:
        desk = self._desks.get(tenant)
        if desk is None:
            rows = [row for key, row in self.waiting.items() if tenant_of(key) == tenant]
            desk = self._desks[tenant] = Desk.from_json({**(self.heads.get(tenant) or {"agents": []}),
                                                         "waiting": rows})
        return desk

    def save(self, tenant: str) -> None:
        """Write what the last event changed."""
        desk = self._desks[tenant]
        head, threads = desk.take_changes()
        if head:
            self.heads[tenant] = desk.head_json()
        for tid in threads:
            w = desk.entry(tid)
            if w is None:
                self.waiting.pop(scoped(tenant, tid))
            else:
                self.waiting[scoped(tenant, tid)] = w.row()


def _desks(ctx: Task) -> _Desks:
    desks = ctx.cache.get("desks")
    if desks is None:
        desks = ctx.cache["desks"] = _Desks(ctx.store("desk"), ctx.store("waiting"))
    return desks
