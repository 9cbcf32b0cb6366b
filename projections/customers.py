"""customers: the unified customer profile and the channel identities that belong to it.

Consumes: parley.identity.events (IdentityLinked, IdentitiesMerged, IdentityUnlinked),
parley.customers.context (CustomerContextUpdated), parley.conversations (MessageReceived,
ConversationStarted/Resolved/Reopened, MessageEnriched).
Tables: ``customers`` (tenant_id, customer_id), ``customer_identities`` (tenant_id, identity_key).
Idempotency: event ids are deduplicated; the applies are also written to commute across topics
(last-writer-wins by (event time, event id), min/max, set union), because the order of events
from different topics differs between a live run and a rebuild. Within one customer's partition
of parley.conversations (thread open/resolve), Kafka's order is kept in both. Replay-safe.

A merge leaves the merged customer's row in place with ``merged_into`` set; the profile query
gathers the identities of every customer merged into the one asked for.
"""

from __future__ import annotations

from typing import Any

from projections.engine import Event, Key, Projection, Row, Table, newer, stamp, touch
from schemas import topics

CUSTOMERS = Table(
    "customers", ("tenant_id", "customer_id"),
    ("tenant_id", "customer_id", "name", "name_source", "tier", "lifecycle_stage", "attributes",
     "context_sources", "languages", "first_contact_at", "last_contact_at", "message_count",
     "thread_count", "open_threads", "open_thread_count", "last_sentiment_label",
     "last_sentiment_score", "last_sentiment_at", "merged_into", "versions", "updated_at",
     "last_event_id", "erased_at"),
    json_columns=frozenset({"attributes", "context_sources", "languages", "open_threads", "versions"}),
    defaults={"attributes": {}, "context_sources": [], "languages": [], "open_threads": [],
              "versions": {}, "message_count": 0, "thread_count": 0, "open_thread_count": 0},
)
IDENTITIES = Table(
    "customer_identities", ("tenant_id", "identity_key"),
    ("tenant_id", "identity_key", "customer_id", "kind", "channel", "value", "display_name",
     "signal", "linked_at", "first_seen_at", "last_seen_at", "version"),
    json_columns=frozenset({"version"}),
    defaults={"version": []},
)

# Ranks break ties in last-writer-wins: an explicit identity event beats what a message implies,
# and a name from another system (CRM) beats the display name a channel shows.
RANK_MESSAGE, RANK_IDENTITY_EVENT = 0, 1
RANK_CHANNEL_NAME, RANK_CONTEXT_NAME = 0, 1


# -- routing --------------------------------------------------------------------------------
def route(event: Event) -> list[tuple[Table, Key]]:
    """The rows an event updates (pure)."""
    t, tenant = event["envelope"]["event_type"], event["envelope"]["tenant_id"]
    cust = event.get("customer_id")
    if t == "MessageReceived":
        if not cust:
            return []
        return [(CUSTOMERS, (tenant, cust)), (IDENTITIES, (tenant, message_identity_key(event)))]
    if t in ("ConversationStarted", "ConversationResolved", "ConversationReopened",
             "CustomerContextUpdated", "IdentityLinked"):
        out = [(CUSTOMERS, (tenant, cust))]
        if t == "IdentityLinked":
            out.append((IDENTITIES, (tenant, event["identity_key"])))
        return out
    if t == "MessageEnriched":
        return [(CUSTOMERS, (tenant, cust))] if cust else []
    if t == "IdentityUnlinked":
        return [(CUSTOMERS, (tenant, event["new_customer_id"])),
                (IDENTITIES, (tenant, event["identity_key"]))]
    if t == "IdentitiesMerged":
        return [(CUSTOMERS, (tenant, cust)), (CUSTOMERS, (tenant, event["merged_customer_id"])),
                *[(IDENTITIES, (tenant, k)) for k in event["identity_keys"]]]
    return []


def apply(table: Table, row: Row, event: Event) -> Row:
    """Dispatch to the pure apply of ``table``; ``row`` is the stored row or a blank one."""
    return apply_identity(row, event) if table is IDENTITIES else apply_customer(row, event)


# -- the profile ------------------------------------------------------------------------------
def apply_customer(row: Row, event: Event) -> Row:
    """Fold one event into a customer row; returns a new row."""
    row = _copy(row)
    handler = _CUSTOMER_HANDLERS.get(event["envelope"]["event_type"])
    if handler:
        handler(row, event)
    return touch(row, event)


def _on_message(row: Row, event: Event) -> None:
    at = event["envelope"]["occurred_at"]
    row["message_count"] += 1
    row["first_contact_at"] = at if row["first_contact_at"] is None else min(row["first_contact_at"], at)
    row["last_contact_at"] = at if row["last_contact_at"] is None else max(row["last_contact_at"], at)
    name = (event.get("sender") or {}).get("display_name")
    if name:
        _set_name(row, name, "channel", stamp(event, RANK_CHANNEL_NAME))


def _on_started(row: Row, event: Event) -> None:
    row["thread_count"] += 1
    _open(row, event["thread_id"], True)


def _on_resolved(row: Row, event: Event) -> None:
    _open(row, event["thread_id"], False)


def _on_reopened(row: Row, event: Event) -> None:
    _open(row, event["thread_id"], True)


def _open(row: Row, thread_id: str, is_open: bool) -> None:
    threads = set(row["open_threads"])
    (threads.add if is_open else threads.discard)(thread_id)
    row["open_threads"] = sorted(threads)
    row["open_thread_count"] = len(threads)


def _on_enriched(row: Row, event: Event) -> None:
    if event.get("language"):
        row["languages"] = sorted({*row["languages"], event["language"]})
    if _lww(row, "sentiment", stamp(event)):
        row["last_sentiment_label"] = event["sentiment_label"]
        row["last_sentiment_score"] = event["sentiment_score"]
        row["last_sentiment_at"] = event["envelope"]["occurred_at"]


def _on_context(row: Row, event: Event) -> None:
    s = stamp(event)
    if event.get("name"):
        _set_name(row, event["name"], "context", stamp(event, RANK_CONTEXT_NAME))
    for field in ("tier", "lifecycle_stage"):
        if event.get(field) is not None and _lww(row, field, s):
            row[field] = event[field]
    row["context_sources"] = sorted({*row["context_sources"], event["source"]})
    attrs = dict(row["attributes"])
    for k, v in event["attributes"].items():
        cur = attrs.get(k)
        if cur is None or newer(s, cur.get("stamp")):
            attrs[k] = {"value": v, "source": event["source"], "at": s[1], "stamp": s}
    row["attributes"] = attrs


def _on_merged(row: Row, event: Event) -> None:
    if row["customer_id"] == event["merged_customer_id"] and _lww(row, "merged_into", stamp(event)):
        row["merged_into"] = event["customer_id"]


def _set_name(row: Row, name: str, source: str, s: list[Any]) -> None:
    if _lww(row, "name", s):
        row["name"], row["name_source"] = name, source


def _lww(row: Row, field: str, s: list[Any]) -> bool:
    """True (and the stamp recorded) when ``s`` is newer than the field's last writer."""
    if not newer(s, row["versions"].get(field)):
        return False
    row["versions"] = {**row["versions"], field: s}
    return True


_CUSTOMER_HANDLERS = {
    "MessageReceived": _on_message,
    "ConversationStarted": _on_started,
    "ConversationResolved": _on_resolved,
    "ConversationReopened": _on_reopened,
    "MessageEnriched": _on_enriched,
    "CustomerContextUpdated": _on_context,
    "IdentitiesMerged": _on_merged,
}


# -- identities -------------------------------------------------------------------------------
def message_identity_key(event: Event) -> str:
    """``channel:<channel>:<id>``: the key the identity processor uses for a channel identity (its
    id a token when the message was sealed: docs/PRIVACY.md)."""
    sender = event["sender"]
    return f"channel:{event['channel']}:{sender.get('token') or sender['id']}"


def parse_identity_key(key: str) -> tuple[str, str | None, str]:
    """(kind, channel, value) of ``channel:whatsapp:336...``, ``phone:+336...``, ``email:x@y``..."""
    kind, _, rest = key.partition(":")
    if kind == "channel":
        channel, _, value = rest.partition(":")
        return kind, channel, value
    return kind, None, rest


def apply_identity(row: Row, event: Event) -> Row:
    """Fold one event into an identity row: who it belongs to (last writer wins) and when seen."""
    env, t = event["envelope"], event["envelope"]["event_type"]
    row = dict(row)
    if row["kind"] is None:
        row["kind"], row["channel"], row["value"] = parse_identity_key(row["identity_key"])
    owner, signal = _identity_owner(event)
    s = stamp(event, RANK_MESSAGE if t == "MessageReceived" else RANK_IDENTITY_EVENT)
    # order by (time, rank, id): a later message beats an earlier link, a link beats a message at the same ms
    s = [s[1], s[0], s[2]]
    if newer(s, row["version"]):
        row.update(customer_id=owner, signal=signal, linked_at=env["occurred_at"], version=s)
    if t == "MessageReceived":
        at = env["occurred_at"]
        row["first_seen_at"] = at if row["first_seen_at"] is None else min(row["first_seen_at"], at)
        row["last_seen_at"] = at if row["last_seen_at"] is None else max(row["last_seen_at"], at)
        name = event["sender"].get("display_name")
        if name and (row["display_name"] is None or at >= (row["last_seen_at"] or 0)):
            row["display_name"] = name
        if event["sender"].get("token") and event["sender"].get("id"):  # sealed, opened: the id itself
            row["value"] = event["sender"]["id"]
    return row


def _identity_owner(event: Event) -> tuple[str, str]:
    t = event["envelope"]["event_type"]
    if t == "MessageReceived":
        return event["customer_id"], "message"
    if t == "IdentityUnlinked":
        return event["new_customer_id"], "unlinked"
    if t == "IdentitiesMerged":
        return event["customer_id"], "merged"
    return event["customer_id"], event["signal"]


def _copy(row: Row) -> Row:
    return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
            for k, v in row.items()}


PROJECTION = Projection(
    name="customers",
    reads=(
        (topics.IDENTITY, frozenset({"IdentityLinked", "IdentitiesMerged", "IdentityUnlinked"})),
        (topics.CUSTOMER_CONTEXT, frozenset({"CustomerContextUpdated"})),
        (topics.CONVERSATIONS, frozenset({
            "MessageReceived", "ConversationStarted", "ConversationResolved",
            "ConversationReopened", "MessageEnriched"})),
    ),
    tables=(CUSTOMERS, IDENTITIES),
    route=route,
    apply=apply,
)
