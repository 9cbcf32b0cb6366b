"""The conversations stage: a customer's threads, enrichment and thread KPIs, in one place.

Consumes: ``parley.conversation.messages`` (key tenant|customer; sequenced in event time): the
    messages with their customer id (identity stage) and the agent API's resolve/transfer
    commands; ``routing.decisions`` (same key; applied as they come): routing's decisions.
Produces: ``parley.conversations`` (key tenant|customer; this stage is its only writer): thread
    life-cycle events, the threaded messages, MessageEnriched, and routing's decisions
    republished byte for byte; ``routing.requests`` (key tenant): only what routing decides on
    (new contacts with their first message, messages of threads not yet with a human,
    resolutions, transfers; JSON, a message with its enrichment in one record); ``kpi.threads``
    (key tenant): each changed thread's measure, once per transaction.
Key: tenant|customer, co-partitioned inputs: every decision here needs one customer's events.
State: ``threads`` (tenant|customer -> CustomerThreads), ``replies`` (tenant|customer|message id
    -> thread, for e-mail References and quoted replies), ``kpi`` (tenant|thread -> the compact
    events KPIs read of the thread, and its latest time), ``routes`` (tenant|thread ->
    what routing last decided: whether routing still needs the thread's messages), ``seen``
    (tenant|event id -> time: the agent API's commands applied). A timer per customer resolves
    threads whose customer went silent after the business's last word.
Privacy: sealed messages are threaded on their tokens and enriched on their text opened with the
    process's keyring (``streams.privacy``); a SubjectErased drops the customer's threads.
Idempotency: a command id already seen changes nothing; messages come once from identity (which
    drops redeliveries) and decisions once from routing (transactions). Replay: the same set of
    inputs gives the same outputs, ids and order (sequenced; enrichment is deterministic).
"""

from __future__ import annotations

from typing import Any

from schemas import topics
from schemas.keys import SEP, scoped
from streams import privacy
from streams.enrich.agents import enriched_event
from streams.enrich.logic import Enricher
from streams.kpi import logic as kpi_logic
from streams.kpi.state import measure
from streams.routing import logic as routing
from streams.runtime.stage import Input, Stage, StoreSpec
from streams.runtime.task import SEQUENCE_RANK, Task
from streams.threads import logic
from streams.threads.logic import CustomerThreads

SEEN_HORIZON_MS = 7 * 24 * 3600 * 1000  # redeliveries later than this are not recognised
REPLIES_HORIZON_MS = 14 * 24 * 3600 * 1000  # a reply quoting an older message is threaded by subject
HUMAN = "human"


class ConversationsStage(Stage):
    name = "conversations"
    inputs = (Input(topics.CONVERSATION_MESSAGES), Input(topics.ROUTING_DECISIONS, sequenced=False))
    outputs = (topics.CONVERSATIONS, topics.ROUTING_REQUESTS, topics.KPI_THREADS)
    stores = (
        StoreSpec("threads", dump=CustomerThreads.to_json, load=CustomerThreads.from_json),
        StoreSpec("replies", retention_ms=REPLIES_HORIZON_MS * 2, log=True), StoreSpec("kpi"),
        StoreSpec("routes"), StoreSpec("seen", retention_ms=SEEN_HORIZON_MS * 2, log=True),
    )

    def __init__(self, rules: logic.Rules, enricher: Enricher, texts: privacy.Texts | None = None) -> None:
        self.rules, self.enricher = rules, enricher
        self.texts = texts or privacy.Texts(None)  # sealed messages' text, for enrichment only

    # --- inputs ------------------------------------------------------------------------------

    def process(self, ctx: Task, event: dict[str, Any]) -> None:
        env = event["envelope"]
        if ctx.record is not None and ctx.record.origin is None:
            # from outside the runtime (the agent API's commands): a retried request repeats
            # its id; what identity and routing write is already once (deduplicated upstream,
            # written in transactions)
            seen = ctx.store("seen")
            skey = scoped(env["tenant_id"], env["event_id"])
            if skey in seen:
                return
            seen[skey] = env["occurred_at"]
        if ctx.record is not None and ctx.record.topic == topics.ROUTING_DECISIONS.name:
            self._decision(ctx, event)
            return
        if env["event_type"] == privacy.ERASED:
            privacy.forget_threads(ctx, event, self.texts)
            return
        ckey = logic.customer_key_of(event)
        threads, replies = ctx.store("threads"), ctx.store("replies")
        state = threads.get(ckey) or CustomerThreads()
        after, out = logic.step(state, event, self.rules,
                                lambda mid: (replies.get(_reply_key(ckey, mid)) or (None,))[0], privacy.thread_features)
        self._save(ctx, ckey, state, after)
        for e in out:
            self._publish(ctx, ckey, e)

    def on_timer(self, ctx: Task, key: str, at: int) -> None:
        tenant, customer = topics.CONVERSATION_MESSAGES.parse_key(key)
        state = ctx.store("threads").get(key) or CustomerThreads()
        after, out = logic.expire(state, at, tenant, customer, self.rules)
        self._save(ctx, key, state, after)
        for e in out:
            self._publish(ctx, key, e)

    def _save(self, ctx: Task, ckey: str, state: CustomerThreads, after: CustomerThreads) -> None:
        if after != state:
            ctx.store("threads")[ckey] = after
            ctx.timer(ckey, logic.next_deadline(after, self.rules))

    # --- outputs -----------------------------------------------------------------------------

    def _publish(self, ctx: Task, ckey: str, e: dict[str, Any]) -> None:
        """Publish a decided event; enrich a threaded customer message; tell routing and the
        thread's KPIs."""
        kind = e["envelope"]["event_type"]
        ctx.forward(topics.CONVERSATIONS, e["envelope"]["partition_key"], ctx.encode(topics.CONVERSATIONS, e))
        self._kpi(ctx, e)
        threaded = e.get("thread_id")
        if kind in ("MessageReceived", "MessageSent") and threaded:
            replies = ctx.store("replies")
            for mid in logic.reply_ids(e):
                replies[_reply_key(ckey, mid)] = [threaded, e["envelope"]["occurred_at"]]
        request = [privacy.lean(e)]  # routing reads no sealed data: it does not carry it
        if kind == "MessageReceived" and threaded:
            enriched = enriched_event(e, self.enricher.enrich(self.texts.text(e), e["envelope"]["tenant_id"]))
            ctx.forward(topics.CONVERSATIONS, enriched["envelope"]["partition_key"],
                        ctx.encode(topics.CONVERSATIONS, enriched))
            self._kpi(ctx, enriched)
            request.append(enriched)  # routing reads a message with its enrichment
        tkey = scoped(e["envelope"]["tenant_id"], threaded)
        routes = ctx.store("routes")
        if kind in ("ConversationStarted", "ConversationReopened"):
            routes[tkey] = ["new", e["envelope"]["occurred_at"]]
        if self._routing_needs(e, routes.get(tkey)):
            env = e["envelope"]
            ctx.send_json(topics.ROUTING_REQUESTS, topics.ROUTING_REQUESTS.key(env["tenant_id"]), {
                "t": env["occurred_at"], "r": SEQUENCE_RANK[kind], "id": env["event_id"], "events": request})

    @staticmethod
    def _routing_needs(e: dict[str, Any], route: list[Any] | None) -> bool:
        if not routing.wanted(e):
            return False
        if e["envelope"]["event_type"] in ("MessageReceived", "MessageSent"):
            return route is None or route[0] != HUMAN  # a human has it: routing needs no more
        return True

    def _decision(self, ctx: Task, event: dict[str, Any]) -> None:
        """A routing decision: republished as routing encoded it, into the thread's KPIs, and
        noted so the thread's later messages stop going to routing once a human has it."""
        assert ctx.record is not None and ctx.record.value is not None
        ctx.forward(topics.CONVERSATIONS, event["envelope"]["partition_key"], ctx.record.value)
        self._kpi(ctx, event)
        kind, at = event["envelope"]["event_type"], event["envelope"]["occurred_at"]
        stage = None
        if kind == "RoutingDecided":
            stage = "bot" if event["target_kind"] == "bot" else HUMAN
        elif kind in ("ConversationAssigned", "ConversationQueued", "ConversationTransferred"):
            stage = HUMAN
        if stage is not None:
            routes = ctx.store("routes")
            tkey = scoped(event["envelope"]["tenant_id"], event["thread_id"])
            current = routes.get(tkey)
            if current is None or at >= current[1]:  # a decision about an older contact is stale
                routes[tkey] = [stage, at]

    # --- thread KPIs -------------------------------------------------------------------------

    def _kpi(self, ctx: Task, e: dict[str, Any]) -> None:
        kind = e["envelope"]["event_type"]
        if kind not in kpi_logic.CONVERSATION_TYPES:
            return
        tenant = e["envelope"]["tenant_id"]
        thread = kpi_logic.thread_of(e)
        entry = _kpi_index(ctx).setdefault(scoped(tenant, thread), {"items": {}, "t": 0})
        entry["t"] = max(entry["t"], e["envelope"]["occurred_at"])
        item = kpi_logic.compact(e)
        if item is not None and e["envelope"]["event_id"] not in entry["items"]:
            entry["items"][e["envelope"]["event_id"]] = item
        ctx.cache.setdefault("kpi_dirty", {})[(tenant, thread)] = (e["envelope"]["event_id"],
                                                                  e["envelope"]["correlation_id"])

    def end_batch(self, ctx: Task) -> None:
        """Each thread whose KPI events changed: its measure to the KPI stage, its event set to
        the store (one record per thread per batch)."""
        dirty = ctx.cache.pop("kpi_dirty", None)
        if not dirty:
            return
        index, store = _kpi_index(ctx), ctx.store("kpi")
        for (tenant, thread), cause in sorted(dirty.items()):
            tkey = scoped(tenant, thread)
            entry = index[tkey]
            store[tkey] = {"items": list(entry["items"].values()), "t": entry["t"]}
            m = measure(tenant, thread, entry["items"].values(), entry["t"])
            ctx.send_json(topics.KPI_THREADS, topics.KPI_THREADS.key(tenant), {
                "t": m.latest, "r": 0, "id": tkey, "type": "ThreadMeasured",
                "tenant": tenant, "thread": thread, "m": m.to_json(), "cause": list(cause)})
        _prune_seen(ctx)


def _reply_key(ckey: str, message_id: str) -> str:
    """``replies``' key: the customer's key (tenant|customer) and a message id."""
    return f"{ckey}{SEP}{message_id}"


def _kpi_index(ctx: Task) -> dict[str, dict[str, Any]]:
    """tenant|thread -> {"items": {event id: compact event}, "t": latest time}, built once per
    task from the ``kpi`` store (restored from its changelog)."""
    index = ctx.cache.get("kpi_index")
    if index is None:
        index = {key: {"items": {item[kpi_logic.EVENT_ID]: item for item in v["items"]}, "t": v["t"]}
                 for key, v in ctx.store("kpi").items()}
        ctx.cache["kpi_index"] = index
    return index


def _prune_seen(ctx: Task) -> None:
    """Forget applied ids and message ids older than their horizon (memory only: the changelog
    ages them out), when a store has doubled since the last time (so the cost is amortised)."""
    # (store, horizon, the event time of one of its values)
    stores = (("seen", SEEN_HORIZON_MS, lambda v: v), ("replies", REPLIES_HORIZON_MS, lambda v: v[1]))
    for name, horizon, when in stores:
        store = ctx.store(name)
        if len(store) < max(50_000, 2 * ctx.cache.get(f"{name}_kept", 0)):
            continue
        cut = ctx.watermark - horizon
        for key in [k for k, v in store.items() if when(v) < cut]:
            store.forget(key)
        ctx.cache[f"{name}_kept"] = len(store)
