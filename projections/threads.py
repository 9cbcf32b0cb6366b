"""threads: each thread's state, and every message of it in order across channels.

Consumes: parley.conversations (thread life cycle, threaded MessageReceived/MessageSent,
MessageEnriched, RoutingDecided), parley.messages (DeliveryStatusChanged only) and
parley.outbound (the egress's OutboundAttempted/Sent/Failed).
Tables: ``threads`` (tenant_id, thread_id; with the customer-service window of its latest
customer message, and the delivery failures the agent must see), ``messages`` (event_id),
``message_enrichments`` (tenant_id, message_event_id),
``message_deliveries`` (tenant_id, channel, channel_message_id: provider receipts),
``outbound_deliveries`` (tenant_id, message_event_id: the egress's send status and the
provider's ids, which the ``thread_messages`` view joins the receipts on).
Idempotency: event ids are deduplicated (the counters need it). Life cycle events share the
customer's partition but come from two producers (threads: started, resolved, reopened;
routing: queued, assigned, transferred), so their Kafka order is not their order: a routing
decision taken before an agent's resolve can land after it. The status (with queue, assignee,
resolution) follows the latest life cycle event by (event time, life cycle rank, id), whatever
the arrival order. The tables fed from two topics (enrichments, delivery statuses) are joined
at read time and merge by last-writer-wins, so the order between topics does not matter either.
Replay-safe.
"""

from __future__ import annotations

from typing import Any

from egress.windows import window_at
from projections.engine import Event, Key, Projection, Row, Table, newer, stamp, touch
from schemas import topics

THREADS = Table(
    "threads", ("tenant_id", "thread_id"),
    ("tenant_id", "thread_id", "customer_id", "status", "subject", "queue", "assignee",
     "priority", "channels", "started_at", "first_message_event_id", "first_message_at",
     "last_message_at", "last_inbound_at", "last_outbound_at", "resolved_at", "resolved_by",
     "reopened_count", "transfer_count", "message_count", "inbound_count", "outbound_count",
     "last_sentiment_label", "last_sentiment_score", "last_sentiment_at", "routed_to", "bot_id",
     "routing_reasons", "business_hours_open", "versions", "updated_at", "last_event_id",
     "window_channel", "window_account", "window_last_inbound_at", "window_closes_at",
     "window_human_agent_closes_at", "delivery_failures", "last_delivery_failure"),
    json_columns=frozenset({"channels", "routing_reasons", "versions", "last_delivery_failure"}),
    defaults={"priority": 0, "channels": [], "reopened_count": 0, "transfer_count": 0,
              "message_count": 0, "inbound_count": 0, "outbound_count": 0,
              "routing_reasons": [], "versions": {}, "delivery_failures": 0},
)
MESSAGES = Table(
    "messages", ("event_id",),
    ("event_id", "tenant_id", "thread_id", "customer_id", "direction", "channel",
     "channel_account_id", "channel_message_id", "message_id", "author_type", "author_id",
     "party_id", "party_name", "text", "subject", "kind", "template_name", "attachments", "rich",
     "reply_to_channel_message_id", "in_reply_to_event_id", "causation_id", "correlation_id",
     "occurred_at"),
    json_columns=frozenset({"attachments", "rich"}),
    defaults={"attachments": []},
)
ENRICHMENTS = Table(
    "message_enrichments", ("tenant_id", "message_event_id"),
    ("tenant_id", "message_event_id", "thread_id", "customer_id", "channel", "language",
     "language_confidence", "sentiment_score", "sentiment_label", "intents", "enricher",
     "fallback_used", "occurred_at", "event_id"),
    json_columns=frozenset({"intents"}),
    defaults={"intents": [], "fallback_used": 0},
)
DELIVERIES = Table(
    "message_deliveries", ("tenant_id", "channel", "channel_message_id"),
    ("tenant_id", "channel", "channel_message_id", "status", "status_at", "error_code",
     "error_message", "recipient_id", "history", "version"),
    json_columns=frozenset({"history", "version"}),
    defaults={"history": [], "version": []},
)

OUTBOUND = Table(
    "outbound_deliveries", ("tenant_id", "message_event_id"),
    ("tenant_id", "message_event_id", "thread_id", "customer_id", "channel", "channel_account_id",
     "message_id", "recipient_id", "status", "attempts", "channel_message_id", "channel_message_ids",
     "error_code", "error_reason", "permanent", "http_status", "duplicate", "rendering",
     "first_attempt_at", "updated_at", "version"),
    json_columns=frozenset({"channel_message_ids", "rendering", "version"}),
    defaults={"attempts": 0, "channel_message_ids": [], "permanent": 0, "duplicate": 0, "version": []},
)
OUTBOUND_TYPES = ("OutboundAttempted", "OutboundSent", "OutboundFailed")
# The send status moves forward: a final outcome over any attempt, "sent" over a failure.
SEND_RANK = {"attempting": 0, "retrying": 1, "failed": 2, "sent": 3}

# A delivery status only moves forward; a late "delivered" after "read" changes nothing.
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "seen": 3,
               "undelivered": 4, "failed": 4}
LIFECYCLE = ("ConversationStarted", "ConversationQueued", "ConversationAssigned",
             "ConversationTransferred", "ConversationResolved", "ConversationReopened",
             "RoutingDecided")


def route(event: Event) -> list[tuple[Table, Key]]:
    """The rows an event updates (pure)."""
    t, tenant = event["envelope"]["event_type"], event["envelope"]["tenant_id"]
    out: list[tuple[Table, Key]]
    if t in ("MessageReceived", "MessageSent"):
        out = [(MESSAGES, (event["envelope"]["event_id"],))]
        return out + ([(THREADS, (tenant, event["thread_id"]))] if event.get("thread_id") else [])
    if t in LIFECYCLE:
        return [(THREADS, (tenant, event["thread_id"]))]
    if t == "MessageEnriched":
        out = [(ENRICHMENTS, (tenant, event["message_event_id"]))]
        return out + ([(THREADS, (tenant, event["thread_id"]))] if event.get("thread_id") else [])
    if t == "DeliveryStatusChanged":
        return [(DELIVERIES, (tenant, event["channel"], event["channel_message_id"]))]
    if t in OUTBOUND_TYPES:
        out = [(OUTBOUND, (tenant, event["message_event_id"]))]
        failed = t == "OutboundFailed" and event["final"] and event.get("thread_id")
        return out + ([(THREADS, (tenant, event["thread_id"]))] if failed else [])
    return []


def apply(table: Table, row: Row, event: Event) -> Row:
    """Dispatch to the pure apply of ``table``; ``row`` is the stored row or a blank one."""
    if table is MESSAGES:
        return apply_message(row, event)
    if table is ENRICHMENTS:
        return apply_enrichment(row, event)
    if table is DELIVERIES:
        return apply_delivery(row, event)
    if table is OUTBOUND:
        return apply_outbound(row, event)
    if event["envelope"]["event_type"] == "OutboundFailed":  # egress time: not the thread's activity
        row = {**row}
        _delivery_failed(row, event)
        return row
    return apply_thread(row, event)


# -- threads ---------------------------------------------------------------------------------
def apply_thread(row: Row, event: Event) -> Row:
    """Fold one event into a thread row; returns a new row."""
    row = {k: (list(v) if isinstance(v, list) else v) for k, v in row.items()}
    _THREAD_HANDLERS[event["envelope"]["event_type"]](row, event)
    if event.get("customer_id") and row["customer_id"] is None:
        row["customer_id"] = event["customer_id"]
    if event.get("channel") and event["channel"] not in row["channels"]:
        row["channels"] = sorted({*row["channels"], event["channel"]})
    return touch(row, event)


LIFECYCLE_RANK = {"ConversationStarted": 0, "ConversationQueued": 1, "ConversationAssigned": 2,
                  "ConversationTransferred": 3, "ConversationResolved": 4, "ConversationReopened": 5}


def _latest(row: Row, e: Event, what: str) -> bool:
    """Whether ``e`` is the latest event so far to set ``what`` ("status", or "route": queue,
    assignee, priority); then it is recorded as such."""
    env = e["envelope"]
    s = [env["occurred_at"], LIFECYCLE_RANK[env["event_type"]], env["event_id"]]
    if not newer(s, row["versions"].get(what)):
        return False
    row["versions"] = {**row["versions"], what: s}
    return True


def _started(row: Row, e: Event) -> None:
    row.update(customer_id=e["customer_id"], subject=e["subject"] or row["subject"],
               started_at=e["envelope"]["occurred_at"],
               first_message_event_id=e["first_message_event_id"])
    _latest(row, e, "status")
    row["status"] = row["status"] or "open"


def _queued(row: Row, e: Event) -> None:
    if _latest(row, e, "route"):
        row.update(queue=e["queue"], priority=e["priority"], assignee=None)
    if _latest(row, e, "status"):
        row["status"] = "queued"


def _assigned(row: Row, e: Event) -> None:
    if _latest(row, e, "route"):
        row.update(assignee=e["agent_id"], queue=e["queue"] or row["queue"])
    if _latest(row, e, "status"):
        row["status"] = "assigned"


def _transferred(row: Row, e: Event) -> None:
    row["transfer_count"] += 1
    if _latest(row, e, "route"):
        row.update(queue=e["to_queue"] or row["queue"], assignee=e["to_agent_id"])
    if _latest(row, e, "status"):
        row["status"] = "assigned" if e["to_agent_id"] else "queued"


def _resolved(row: Row, e: Event) -> None:
    if _latest(row, e, "status"):
        row.update(status="resolved", resolved_at=e["envelope"]["occurred_at"], resolved_by=e["resolved_by"])


def _reopened(row: Row, e: Event) -> None:
    row["reopened_count"] += 1
    if _latest(row, e, "status"):
        row.update(status="open", resolved_at=None, resolved_by=None)


def _routed(row: Row, e: Event) -> None:
    row.update(routed_to=e["target_kind"], bot_id=e["bot_id"], routing_reasons=list(e["reasons"]),
               business_hours_open=int(e["business_hours_open"]), priority=e["priority"])
    row["queue"] = row["queue"] or e["queue"]


def _message(row: Row, e: Event) -> None:
    at, inbound = e["envelope"]["occurred_at"], e["envelope"]["event_type"] == "MessageReceived"
    row["message_count"] += 1
    row["inbound_count" if inbound else "outbound_count"] += 1
    row["first_message_at"] = _min(row["first_message_at"], at)
    row["last_message_at"] = _max(row["last_message_at"], at)
    side = "last_inbound_at" if inbound else "last_outbound_at"
    row[side] = _max(row[side], at)
    if inbound and not row["subject"] and e.get("subject"):
        row["subject"] = e["subject"]
    if inbound and (row["window_last_inbound_at"] is None or at >= row["window_last_inbound_at"]):
        _window(row, e["channel"], e["channel_account_id"], at)


def _window(row: Row, channel: str, account: str, at: int) -> None:
    """The thread's window follows its latest customer message (event time)."""
    w = window_at(channel, (at,), at)
    row.update(window_channel=channel, window_account=account, window_last_inbound_at=at,
               window_closes_at=w.closes_at, window_human_agent_closes_at=w.human_agent_closes_at)


def _delivery_failed(row: Row, e: Event) -> None:
    """A message the egress could not deliver (final): counted on its thread, the latest shown."""
    row["delivery_failures"] += 1
    at = e["envelope"]["occurred_at"]
    last = row["last_delivery_failure"]
    if last is None or [at, e["message_event_id"]] >= [last["at"], last["message_event_id"]]:
        row["last_delivery_failure"] = {"at": at, "message_event_id": e["message_event_id"], "code": e["code"],
                                        "reason": e["reason"], "channel": e["channel"]}


def _enriched(row: Row, e: Event) -> None:
    s = stamp(e)
    if newer(s, row["versions"].get("sentiment")):
        row["versions"] = {**row["versions"], "sentiment": s}
        row.update(last_sentiment_label=e["sentiment_label"],
                   last_sentiment_score=e["sentiment_score"],
                   last_sentiment_at=e["envelope"]["occurred_at"])


_THREAD_HANDLERS = {
    "ConversationStarted": _started, "ConversationQueued": _queued,
    "ConversationAssigned": _assigned, "ConversationTransferred": _transferred,
    "ConversationResolved": _resolved, "ConversationReopened": _reopened,
    "RoutingDecided": _routed, "MessageReceived": _message, "MessageSent": _message,
    "MessageEnriched": _enriched,
}


# -- messages, enrichments, delivery statuses ----------------------------------------------------
def apply_message(row: Row, e: Event) -> Row:
    """A message row is the message itself: applying it again gives the same row."""
    env, inbound = e["envelope"], e["envelope"]["event_type"] == "MessageReceived"
    party = e["sender"] if inbound else e["recipient"]
    return {
        **row,
        "tenant_id": env["tenant_id"], "thread_id": e.get("thread_id"),
        "customer_id": e.get("customer_id"), "direction": "in" if inbound else "out",
        "channel": e["channel"], "channel_account_id": e["channel_account_id"],
        "channel_message_id": e.get("channel_message_id"), "message_id": e.get("message_id"),
        "author_type": "customer" if inbound else e["author_type"],
        "author_id": party["id"] if inbound else e["author_id"],
        "party_id": party["id"], "party_name": party.get("display_name"),
        "text": e.get("text") or (e.get("content") or {}).get("text"), "subject": e.get("subject"),
        "kind": "inbound" if inbound else e["kind"], "template_name": e.get("template_name"),
        "attachments": list(e.get("attachments") or []), "rich": e.get("rich"),
        "reply_to_channel_message_id": e.get("reply_to_channel_message_id"),
        "in_reply_to_event_id": e.get("in_reply_to_event_id"),
        "causation_id": env["causation_id"], "correlation_id": env["correlation_id"],
        "occurred_at": env["occurred_at"],
    }


def apply_enrichment(row: Row, e: Event) -> Row:
    """The latest enrichment of a message (by event time, then id) wins."""
    if row["event_id"] is not None and not newer(stamp(e), [0, row["occurred_at"], row["event_id"]]):
        return row
    return {
        **row, "thread_id": e.get("thread_id"), "customer_id": e.get("customer_id"),
        "channel": e["channel"], "language": e.get("language"),
        "language_confidence": e["language_confidence"], "sentiment_score": e["sentiment_score"],
        "sentiment_label": e["sentiment_label"],
        "intents": [{"name": i["name"], "confidence": i["confidence"]} for i in e["intents"]],
        "enricher": e["enricher"], "fallback_used": int(e["fallback_used"]),
        "occurred_at": e["envelope"]["occurred_at"], "event_id": e["envelope"]["event_id"],
    }


def apply_delivery(row: Row, e: Event) -> Row:
    """Keep the most advanced status (rank, then event time, then id) and the sorted history."""
    at, status = e["envelope"]["occurred_at"], e["status"]
    history = sorted({*map(tuple, row["history"]), (at, status)})
    out = {**row, "history": [list(h) for h in history]}
    s = [STATUS_RANK.get(status, 1), at, e["envelope"]["event_id"]]
    if newer(s, row["version"]):
        out.update(status=status, status_at=at, error_code=e.get("error_code"),
                   error_message=e.get("error_message"),
                   recipient_id=e["recipient"].get("token") or e["recipient"]["id"],  # a token when sealed
                   version=s)
    return out


def apply_outbound(row: Row, e: Event) -> Row:
    """The send status of one outbound message: the most advanced outcome (rank, attempt, time, id)
    sets status and error; attempts count up; the provider's ids stay once known."""
    t, at, attempt = e["envelope"]["event_type"], e["envelope"]["occurred_at"], e["attempt"]
    status = {"OutboundAttempted": "attempting", "OutboundSent": "sent"}.get(t) or \
        ("failed" if e["final"] else "retrying")
    out = {**row, "thread_id": row["thread_id"] or e.get("thread_id"),
           "customer_id": row["customer_id"] or e.get("customer_id"), "channel": e["channel"],
           "channel_account_id": e["channel_account_id"], "message_id": e["message_id"],
           "recipient_id": e["recipient_id"], "attempts": max(row["attempts"], attempt),
           "updated_at": max(row["updated_at"] or 0, at)}
    if t == "OutboundAttempted":
        out["first_attempt_at"] = _min(row["first_attempt_at"], at)
    if e.get("rendering") and (row["rendering"] is None or t == "OutboundAttempted"):
        out["rendering"] = e["rendering"]
    if t == "OutboundSent":
        out.update(channel_message_id=e["channel_message_id"], channel_message_ids=list(e["channel_message_ids"]),
                   duplicate=int(e["duplicate"]))
    s = [SEND_RANK[status], attempt, at, e["envelope"]["event_id"]]
    if newer(s, row["version"]):
        out.update(status=status, version=s, error_code=e.get("code"), error_reason=e.get("reason"),
                   permanent=int(bool(e.get("permanent"))), http_status=e.get("http_status"))
    return out


def _min(a: Any, b: Any) -> Any:
    return b if a is None else min(a, b)


def _max(a: Any, b: Any) -> Any:
    return b if a is None else max(a, b)


PROJECTION = Projection(
    name="threads",
    reads=(
        (topics.CONVERSATIONS, frozenset({
            "MessageReceived", "MessageSent", "MessageEnriched", *LIFECYCLE})),
        (topics.MESSAGES, frozenset({"DeliveryStatusChanged"})),
        (topics.OUTBOUND, frozenset(OUTBOUND_TYPES)),
    ),
    tables=(THREADS, MESSAGES, ENRICHMENTS, DELIVERIES, OUTBOUND),
    route=route,
    apply=apply,
)
