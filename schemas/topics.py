"""The topic catalogue: every topic Parley reads or writes. No other file spells a topic name.

Names are lowercase-dotted and never renamed; a breaking change is a new topic. Public topics
are read by other services, so their schemas are held to FULL_TRANSITIVE compatibility.
Faust's own internal topics (table changelogs, repartitions) are named by Faust from the app id.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str  # what the key is, e.g. "tenant|channel|sender id"
    value_types: tuple[str, ...]  # event type names (short) the topic carries
    partitions: int
    cleanup: str = "delete"  # "delete" | "compact"
    retention_ms: int = -1  # -1: keep forever (an event log is replayed from its start)
    public: bool = False
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    doc: str = ""

    def configs(self) -> dict[str, str]:
        """Topic-level Kafka configs this catalogue owns."""
        cfg = {"cleanup.policy": self.cleanup, "retention.ms": str(self.retention_ms)}
        if self.cleanup == "compact":
            cfg["min.compaction.lag.ms"] = "60000"
        cfg["unclean.leader.election.enable"] = "false"
        return cfg


RAW_INGRESS = Topic(
    "parley.ingress.raw", "tenant|channel|account", ("RawRequest",), 6,
    retention_ms=30 * DAY_MS,
    producers=("ingress",), consumers=("audit", "replay tools"),
    doc="Every verified webhook request as received (body + headers that matter).",
)
DEAD_LETTER = Topic(
    "parley.deadletter", "stage", ("DeadLetter",), 1, retention_ms=30 * DAY_MS,
    producers=("ingress", "worker", "projections"), consumers=("operators", "dlq replay"),
    doc="Records that verified but could not be mapped or processed, with raw bytes and error.",
)
MESSAGES = Topic(
    "parley.messages", "tenant|channel|channel identity",
    ("MessageReceived", "MessageSent", "DeliveryStatusChanged"), 12, public=True,
    producers=("ingress", "agent API"), consumers=("worker: identity",),
    doc="Normalised inbound/outbound messages and delivery statuses, per channel identity.",
)
AGENT_STATUS = Topic(
    "parley.agents.status", "tenant", ("AgentStatusChanged",), 3, public=True,
    producers=("agent API",), consumers=("worker: routing", "worker: kpi", "projections"),
    doc="Agent presence, capacity and skills (keyed by tenant: routing sees a tenant's agents in order).",
)
CUSTOMER_CONTEXT = Topic(
    "parley.customers.context", "tenant|customer", ("CustomerContextUpdated",), 6, public=True,
    producers=("other systems",), consumers=("worker: routing", "projections"),
    doc="Context about customers from CRMs, shops, billing.",
)
IDENTITY = Topic(
    "parley.identity.events", "tenant|customer", ("IdentityLinked", "IdentitiesMerged", "IdentityUnlinked"),
    6, public=True, producers=("worker: identity", "agent API"), consumers=("projections",),
    doc="Links, merges and unlinks of channel identities to customers.",
)
IDENTITY_COMMANDS = Topic(
    "parley.identity.commands", "tenant", ("IdentityLinked", "IdentityUnlinked", "IdentitiesMerged"), 3,
    producers=("agent API",), consumers=("worker: identity",),
    doc="Manual link/unlink/merge requests from agents, applied by the identity processor.",
)
CONVERSATION_MESSAGES = Topic(
    "parley.conversation.messages", "tenant|customer",
    ("MessageReceived", "MessageSent", "DeliveryStatusChanged"), 12, public=True,
    producers=("worker: identity",), consumers=("worker: threads",),
    doc="Messages with customer_id resolved, keyed by customer (input of threading).",
)
CONVERSATIONS = Topic(
    "parley.conversations", "tenant|customer",
    ("MessageReceived", "MessageSent", "ConversationStarted", "ConversationQueued",
     "ConversationAssigned", "ConversationTransferred", "ConversationResolved",
     "ConversationReopened", "MessageEnriched", "RoutingDecided"),
    12, public=True,
    producers=("worker: threads", "worker: enrich", "worker: routing"),
    consumers=("worker: kpi", "projections", "other services"),
    doc="Thread life cycle, threaded messages, enrichment and routing decisions, per customer.",
)
KPI_CONTACTS = Topic(
    "parley.kpi.contacts", "tenant|contact", ("ContactMeasured",), 6, cleanup="compact",
    producers=("worker: kpi",), consumers=("projections",),
    doc="Latest measure of each contact (compacted).",
)
KPI_INTERVALS = Topic(
    "parley.kpi.intervals", "tenant|interval|dimension|value", ("IntervalStat", "AgentIntervalStat"), 6,
    cleanup="compact", producers=("worker: kpi",), consumers=("projections", "dashboards"),
    doc="KPI figures per 15-minute interval and dimension (compacted: latest wins).",
)

ALL: tuple[Topic, ...] = (
    RAW_INGRESS, DEAD_LETTER, MESSAGES, AGENT_STATUS, CUSTOMER_CONTEXT, IDENTITY,
    IDENTITY_COMMANDS, CONVERSATION_MESSAGES, CONVERSATIONS, KPI_CONTACTS, KPI_INTERVALS,
)
BY_NAME = {t.name: t for t in ALL}


def named(prefix: str, topic: Topic) -> str:
    """The topic's name on a cluster, with an optional deployment prefix (tests, staging)."""
    return f"{prefix}{topic.name}"
