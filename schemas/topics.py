"""The topic catalogue: every topic Parley reads or writes. No other file spells a topic name.

Names are lowercase-dotted and never renamed; a breaking change is a new topic. Public topics
are read by other services, so their schemas are held to FULL_TRANSITIVE compatibility.
Faust's own internal topics (table changelogs, repartitions) are named by Faust from the app id.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000
RAW_MAX_BYTES = 32 * 1024 * 1024  # raw webhook bodies: e-mails with attachments reach 30 MiB


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
    max_message_bytes: int | None = None  # None: the broker's default (about 1 MB)

    def configs(self) -> dict[str, str]:
        """Topic-level Kafka configs this catalogue owns."""
        cfg = {"cleanup.policy": self.cleanup, "retention.ms": str(self.retention_ms)}
        if self.cleanup == "compact":
            cfg["min.compaction.lag.ms"] = "60000"
        cfg["unclean.leader.election.enable"] = "false"
        if self.max_message_bytes:
            cfg["max.message.bytes"] = str(self.max_message_bytes)
        return cfg


RAW_INGRESS = Topic(
    "parley.ingress.raw", "tenant|channel|account", ("RawRequest",), 6,
    retention_ms=30 * DAY_MS, max_message_bytes=RAW_MAX_BYTES,
    producers=("ingress",), consumers=("audit", "replay tools"),
    doc="Every verified webhook request as received (body + headers that matter).",
)
DEAD_LETTER = Topic(
    "parley.deadletter", "stage", ("DeadLetter",), 1, retention_ms=30 * DAY_MS,
    max_message_bytes=RAW_MAX_BYTES,
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
    producers=("agent API",), consumers=("worker: routing", "projections"),
    doc="Context about customers from CRMs, shops, billing, posted to the agent API's context route.",
)
IDENTITY = Topic(
    "parley.identity.events", "tenant|customer", ("IdentityLinked", "IdentitiesMerged", "IdentityUnlinked"),
    6, public=True, producers=("worker: identity",), consumers=("projections",),
    doc="Links, merges and unlinks of channel identities to customers, as the identity processor applied them.",
)
IDENTITY_COMMANDS = Topic(
    "parley.identity.commands", "tenant", ("IdentityLinked", "IdentityUnlinked", "IdentitiesMerged"), 3,
    producers=("agent API",), consumers=("worker: identity",),
    doc="Manual link/unlink/merge commands from agents (agent API identities/link, identities/unlink, "
        "customers/merge), applied by the identity processor.",
)
CONVERSATION_MESSAGES = Topic(
    "parley.conversation.messages", "tenant|customer",
    ("MessageReceived", "MessageSent", "DeliveryStatusChanged", "ConversationResolved",
     "ConversationTransferred"), 12, public=True,
    producers=("worker: identity", "agent API"), consumers=("worker: threads",),
    doc="Messages with customer_id resolved, keyed by customer (input of threading); "
        "agents' resolve/transfer commands (agent API) on a thread enter here too.",
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
KPI_INPUT = Topic(
    "parley.kpi.input", "tenant",
    ("MessageReceived", "MessageSent", "ConversationStarted", "ConversationQueued",
     "ConversationAssigned", "ConversationTransferred", "ConversationResolved",
     "ConversationReopened", "MessageEnriched", "RoutingDecided", "AgentStatusChanged"),
    6, retention_ms=7 * DAY_MS, producers=("worker: kpi",), consumers=("worker: kpi",),
    doc="KPI inputs repartitioned by tenant: the conversation log and agent status in one stream.",
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
    IDENTITY_COMMANDS, CONVERSATION_MESSAGES, CONVERSATIONS, KPI_INPUT, KPI_CONTACTS,
    KPI_INTERVALS,
)
BY_NAME = {t.name: t for t in ALL}

# Repartition topics of the stream worker. Keyed by tenant: a tenant's identity graph, and its
# agents with their queues, are each one consistent state that a single partition owns. They
# are named per worker app id (internal_name), so a replay under a fresh app id never shares
# them, and the worker declares them itself: `parley topics apply` does not create them.
IDENTITY_BY_TENANT = Topic(
    "identity.by-tenant", "tenant",
    ("MessageReceived", "MessageSent", "DeliveryStatusChanged", "IdentityLinked", "IdentityUnlinked",
     "IdentitiesMerged"), 6, retention_ms=7 * DAY_MS,
    producers=("worker: identity (rekey)",), consumers=("worker: identity",),
    doc="parley.messages and parley.identity.commands re-keyed by tenant.",
)
ROUTING_BY_TENANT = Topic(
    "routing.by-tenant", "tenant",
    ("ConversationStarted", "ConversationReopened", "ConversationResolved", "ConversationTransferred",
     "MessageReceived", "MessageSent", "MessageEnriched", "AgentStatusChanged", "CustomerContextUpdated"),
    6, retention_ms=7 * DAY_MS,
    producers=("worker: threads", "worker: enrich", "worker: routing (rekey)"), consumers=("worker: routing",),
    doc="What routing needs of the conversations (written beside them), agents.status and customers.context.",
)
INTERNAL: tuple[Topic, ...] = (IDENTITY_BY_TENANT, ROUTING_BY_TENANT)


def named(prefix: str, topic: Topic) -> str:
    """The topic's name on a cluster, with an optional deployment prefix (tests, staging)."""
    return f"{prefix}{topic.name}"


def internal_name(prefix: str, app_id: str, topic: Topic) -> str:
    """The name of a worker-internal topic: scoped by the prefix and the worker's app id."""
    return f"{prefix}{app_id}-{topic.name}"
