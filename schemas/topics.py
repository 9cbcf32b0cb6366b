"""The topic catalogue: every topic Parley reads or writes. No other file spells a topic name.

Names are lowercase-dotted and never renamed; a breaking change is a new topic. Each topic builds
and parses its own keys (``key`` / ``parse_key``, the grammar in ``schemas.keys``): no other file
spells a key. Public topics are read by other services, so their schemas are held to
FULL_TRANSITIVE compatibility.
The stream worker's internal topics are declared at the end (INTERNAL); its changelogs and
watermarks topic are named by the worker from its app id (streams/runtime/worker.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import keys

DAY_MS = 24 * 3600 * 1000
RAW_MAX_BYTES = 32 * 1024 * 1024  # raw webhook bodies: e-mails with attachments reach 30 MiB
# a stream stage's state value or a thread's KPI measure: a big tenant's routing desk, a long
# thread's KPI events (values written by an older worker: one busy interval's every contact)
STATE_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Topic:
    name: str
    key_shape: str  # the key's parts, named: "tenant|channel|channel identity" (schemas.keys)
    value_types: tuple[str, ...]  # event type names (short) the topic carries
    partitions: int
    cleanup: str = "delete"  # "delete" | "compact"
    retention_ms: int = -1  # -1: keep forever (an event log is replayed from its start)
    public: bool = False
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    doc: str = ""
    max_message_bytes: int | None = None  # None: the broker's default (about 1 MB)

    @property
    def key_parts(self) -> tuple[str, ...]:
        return tuple(self.key_shape.split(keys.SEP))

    def key(self, *parts: object) -> str:
        """The key of a record of this topic, from its parts in ``key_shape``'s order:
        ``CONVERSATIONS.key(tenant, customer_id)`` -> ``"acme|c-1"`` (encode it for Kafka)."""
        return keys.join(parts, self.key_shape.count(keys.SEP) + 1, self.name)

    def parse_key(self, key: str | bytes) -> tuple[str, ...]:
        """The parts of one of this topic's keys (str or the record's bytes), as ``key`` took them."""
        return keys.split(key, self.key_shape.count(keys.SEP) + 1, self.name)

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
INGRESS_CLAIMS = Topic(
    "parley.ingress.claims", "attempt", ("IngressClaim",), 1, retention_ms=9 * DAY_MS,
    producers=("ingress",), consumers=("ingress",),
    doc="The ingress's dedup memory: ids claimed, stored or released by each request attempt, in one "
        "total order (one partition) every ingress process reads; kept a day past the 8-day dedup horizon.",
)
DEAD_LETTER = Topic(
    "parley.deadletter", "stage", ("DeadLetter",), 1, retention_ms=30 * DAY_MS,
    max_message_bytes=RAW_MAX_BYTES,
    producers=("ingress", "worker", "projections"), consumers=("operators", "dlq replay"),
    doc="Records that verified but could not be mapped or processed, with raw bytes and error.",
)
MESSAGES = Topic(
    "parley.messages", "tenant|channel|channel identity",
    ("MessageReceived", "MessageSent", "DeliveryStatusChanged", "SubjectErased"), 12, public=True,
    producers=("ingress", "agent API", "privacy erase"), consumers=("worker: identity",),
    doc="Normalised inbound/outbound messages and delivery statuses, per channel identity (its id a token when "
        "sealed: docs/PRIVACY.md); an erasure's SubjectErased per channel identity.",
)
AGENT_STATUS = Topic(
    "parley.agents.status", "tenant", ("AgentStatusChanged",), 3, public=True,
    producers=("agent API",), consumers=("worker: presence", "projections"),
    doc="Agent presence, capacity and skills (keyed by tenant: routing sees a tenant's agents in order).",
)
CUSTOMER_CONTEXT = Topic(
    "parley.customers.context", "tenant|customer", ("CustomerContextUpdated",), 6, public=True,
    producers=("agent API",), consumers=("worker: context", "projections"),
    doc="Context about customers from CRMs, shops, billing, posted to the agent API's context route.",
)
IDENTITY = Topic(
    "parley.identity.events", "tenant|customer", ("IdentityLinked", "IdentitiesMerged", "IdentityUnlinked"),
    6, public=True, producers=("worker: identity-graph",), consumers=("projections",),
    doc="Links, merges and unlinks of channel identities to customers, as the identity graph applied them.",
)
IDENTITY_COMMANDS = Topic(
    "parley.identity.commands", "tenant", ("IdentityLinked", "IdentityUnlinked", "IdentitiesMerged", "SubjectErased"),
    3, producers=("agent API", "privacy erase"), consumers=("worker: identity-graph",),
    doc="Manual link/unlink/merge commands from agents (agent API identities/link, identities/unlink, "
        "customers/merge), applied by the identity processor.",
)
CONVERSATION_MESSAGES = Topic(
    "parley.conversation.messages", "tenant|customer",
    ("MessageReceived", "MessageSent", "DeliveryStatusChanged", "ConversationResolved",
     "ConversationTransferred", "SubjectErased"), 12, public=True,
    producers=("worker: identity", "agent API", "privacy erase"), consumers=("worker: conversations",),
    doc="Messages with customer_id resolved, keyed by customer (input of threading); "
        "agents' resolve/transfer commands (agent API) on a thread enter here too.",
)
CONVERSATIONS = Topic(
    "parley.conversations", "tenant|customer",
    ("MessageReceived", "MessageSent", "ConversationStarted", "ConversationQueued",
     "ConversationAssigned", "ConversationTransferred", "ConversationResolved",
     "ConversationReopened", "MessageEnriched", "RoutingDecided"),
    12, public=True,
    producers=("worker: conversations",), consumers=("projections", "egress", "other services"),
    doc="Thread life cycle, threaded messages, enrichment and routing decisions, per customer (one writer: "
        "the conversations stage, which republishes routing's decisions).",
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
OUTBOUND = Topic(
    "parley.outbound", "tenant|customer", ("OutboundAttempted", "OutboundSent", "OutboundFailed"),
    CONVERSATIONS.partitions, public=True, producers=("egress",), consumers=("egress", "projections", "other services"),
    doc="Each outbound message's delivery: the attempt (recorded before the provider call), then sent (the "
        "provider's ids) or failed (code, reason, permanent or not). Co-partitioned with parley.conversations: "
        "the egress reads a partition's records back to know what it already sent.",
)
SERVICE_WINDOWS = Topic(
    "parley.outbound.windows", "tenant|channel|account|customer identity", ("ServiceWindow",), 6,
    cleanup="compact,delete", retention_ms=8 * DAY_MS, producers=("egress",), consumers=("egress", "agent API"),
    doc="The recent times each customer wrote to each channel account (the service windows follow from them); "
        "compacted, kept 8 days (the longest window, Messenger's human-agent 7 days, plus a day).",
)

PRIVACY_ERASURES = Topic(
    "parley.privacy.erasures", "tenant|customer", ("ErasureCompleted",), 3, public=True,
    producers=("privacy erase",), consumers=("audit", "other services"),
    doc="Evidence of each erasure (what was done and when, no personal data): other services holding "
        "copies of a customer's data erase theirs when they read it.",
)

ALL: tuple[Topic, ...] = (
    RAW_INGRESS, INGRESS_CLAIMS, DEAD_LETTER, MESSAGES, AGENT_STATUS, CUSTOMER_CONTEXT, IDENTITY,
    IDENTITY_COMMANDS, CONVERSATION_MESSAGES, CONVERSATIONS, KPI_CONTACTS,
    KPI_INTERVALS, OUTBOUND, SERVICE_WINDOWS, PRIVACY_ERASURES,
)

# Internal topics of the stream worker (`streams/topology.py` draws who writes and reads them).
# They are named per worker app id (internal_name), so a replay under a fresh app id never
# shares them, and the worker declares them itself: `parley topics apply` does not create them.
# Each is co-partitioned with the input it is read beside (same key, same partition count).
IDENTITY_SIGHTINGS = Topic(
    "identity.sightings", "tenant", ("IdentitySighted",), IDENTITY_COMMANDS.partitions, retention_ms=7 * DAY_MS,
    producers=("worker: identity",), consumers=("worker: identity-graph",),
    doc="The identity keys a channel identity showed for the first time (JSON), beside the agents' "
        "identity commands: the only input of the tenant-wide identity graph.",
)
ROUTING_REQUESTS = Topic(
    "routing.requests", "tenant",
    ("ConversationStarted", "ConversationReopened", "ConversationResolved", "ConversationTransferred",
     "MessageReceived", "MessageSent", "MessageEnriched", "AgentStatusChanged", "CustomerContextUpdated"),
    6, retention_ms=7 * DAY_MS,
    producers=("worker: conversations", "worker: presence", "worker: context"), consumers=("worker: routing",),
    doc="What routing decides on: new contacts and their first message, messages of threads not yet with a "
        "human, resolutions and transfers (from conversations), agent presence and customer tiers.",
)
ROUTING_DECISIONS = Topic(
    "routing.decisions", "tenant|customer",
    ("RoutingDecided", "ConversationQueued", "ConversationAssigned", "ConversationTransferred", "MessageSent"),
    CONVERSATION_MESSAGES.partitions, retention_ms=7 * DAY_MS,
    producers=("worker: routing",), consumers=("worker: conversations",),
    doc="Routing's decisions, back to the customer's partition: applied to its threads and KPIs, and "
        "published on parley.conversations by the conversations stage (its only writer).",
)
KPI_THREADS = Topic(
    "kpi.threads", "tenant", ("ThreadMeasured", "AgentStatusChanged"), 6, retention_ms=7 * DAY_MS,
    max_message_bytes=STATE_MAX_BYTES,
    producers=("worker: conversations", "worker: presence"), consumers=("worker: kpi",),
    doc="Each changed thread's KPI measure (episodes, assignment spans, counters; JSON) and agent presence: "
        "the tenant-wide KPI figures are sums over these pieces.",
)
INTERNAL: tuple[Topic, ...] = (IDENTITY_SIGHTINGS, ROUTING_REQUESTS, ROUTING_DECISIONS, KPI_THREADS)


def named(prefix: str, topic: Topic) -> str:
    """The topic's name on a cluster, with an optional deployment prefix (tests, staging)."""
    return f"{prefix}{topic.name}"


def internal_name(prefix: str, app_id: str, topic: Topic) -> str:
    """The name of a worker-internal topic: scoped by the prefix and the worker's app id."""
    return f"{prefix}{app_id}-{topic.name}"
