"""Erasing a data subject from an immutable log: what ``parley privacy erase`` does, in order.

1. **Who**: the customer and every customer merged into its profile (the caller resolves them,
   from the projections when it has them), and the identity-key tokens each one showed (the key
   store noted them when sealing).
2. **Keys destroyed**: every profile and content key of those customers, every generation, is
   deleted from the key store (secure delete, WAL truncated): from now on nothing they sealed
   opens, on any topic, in any segment, backup or replay. The subjects move to a new generation:
   a customer writing again later gets new keys. Each process's key cache follows within
   ``refresh_s``.
3. **Stream stores**: ``SubjectErased`` records go to the stages' own inputs (``parley.messages``
   once per channel identity, keyed by it; ``parley.identity.commands``; ``parley.conversation.
   messages`` once per customer), so each stage drops the subject's entries at one place in event
   time, in the live run and in every replay (``streams.privacy``); the deletions are tombstones on
   the stages' changelogs.
4. **Compacted topics**: records of the catalogue's compacted topics keyed by one of the subject's
   tokens or customer ids get a tombstone (the egress's service windows); the KPI topics are not
   touched (counts stay, keyed by contact and interval).
5. **Projection rows**: blanked and marked erased (the caller's ``projection`` function;
   ``projections.privacy``), which the projections runner also does when it reads the key store.
6. **Evidence**: ``ErasureCompleted`` on ``parley.privacy.erasures``: ids, counts and times, no
   personal data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from parley.privacy.keystore import KeyStore
from schemas import topics
from schemas.events import derive_id, envelope, make

PRODUCER = "privacy/erase"
KEEP_COMPACTED = frozenset({topics.KPI_CONTACTS.name, topics.KPI_INTERVALS.name})  # counts stay
Planned = tuple[topics.Topic, str, dict[str, Any]]  # (topic, key, event)


@dataclass
class Erasure:
    """What one erasure did."""

    erasure_id: str
    tenant: str
    customer_id: str
    customer_ids: list[str]
    requested_at: int
    completed_at: int = 0
    keys_destroyed: int = 0
    identity_keys: int = 0
    erasure_events: int = 0
    tombstones: dict[str, int] = field(default_factory=dict)
    projection_rows: dict[str, int] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the plan (pure) ----------------------------------------------------------------------------

def erasure_id(tenant: str, customer: str, requested_at: int) -> str:
    return derive_id(tenant, "erasure", customer, requested_at)


def plan(tenant: str, customer: str, identities: dict[str, list[str]], eid: str, at: int) -> list[Planned]:
    """The SubjectErased records of an erasure: ``identities`` is customer id -> its identity-key
    tokens (``customer`` first). Deterministic: the same erasure gives the same ids."""
    ids = list(identities)
    every_key = sorted({k for keys in identities.values() for k in keys})
    out: list[Planned] = []

    def erased(key: str, about: str, keys: Sequence[str]) -> dict[str, Any]:
        env = envelope("SubjectErased", event_id=derive_id(eid, "SubjectErased", key), occurred_at=at,
                       tenant_id=tenant, partition_key=key, correlation_id=eid, producer=PRODUCER)
        return make("SubjectErased", env, erasure_id=eid, customer_id=about, customer_ids=ids,
                    identity_keys=list(keys))

    for subject, keys in identities.items():
        for k in keys:
            kind, _, rest = k.partition(":")
            if kind == "channel":
                channel, _, token = rest.partition(":")
                key = topics.MESSAGES.key(tenant, channel, token)
                out.append((topics.MESSAGES, key, erased(key, subject, keys)))
    key = topics.IDENTITY_COMMANDS.key(tenant)
    out.append((topics.IDENTITY_COMMANDS, key, erased(key, customer, every_key)))
    for subject in ids:
        key = topics.CONVERSATION_MESSAGES.key(tenant, subject)
        out.append((topics.CONVERSATION_MESSAGES, key, erased(key, subject, identities[subject])))
    return out


def completed(e: Erasure, requested_by: str | None, reason: str | None) -> dict[str, Any]:
    """The ErasureCompleted evidence of ``e`` (keyed tenant|customer)."""
    key = topics.PRIVACY_ERASURES.key(e.tenant, e.customer_id)
    env = envelope("ErasureCompleted", event_id=derive_id(e.erasure_id, "ErasureCompleted"),
                   occurred_at=e.completed_at, tenant_id=e.tenant, partition_key=key,
                   correlation_id=e.erasure_id, producer=PRODUCER)
    return make("ErasureCompleted", env, erasure_id=e.erasure_id, customer_id=e.customer_id,
                customer_ids=list(e.customer_ids), requested_at=e.requested_at, completed_at=e.completed_at,
                requested_by=requested_by, reason=reason, keys_destroyed=e.keys_destroyed,
                identity_keys=e.identity_keys, erasure_events=e.erasure_events, tombstones=dict(e.tombstones),
                projection_rows=dict(e.projection_rows), steps=list(e.steps))


def matches(key: bytes | None, needles: Sequence[str]) -> bool:
    """Whether a record key names one of the subject's tokens or customer ids."""
    if not key:
        return False
    text = key.decode("utf-8", "replace")
    return any(n in text for n in needles)


# --- doing it ------------------------------------------------------------------------------------

class Eraser:
    """Runs erasures against Kafka (``settings.kafka``) and a key store."""

    def __init__(self, settings: Any, keys: KeyStore, clock_ms: Callable[[], int] | None = None) -> None:
        from schemas.codec import codec_for

        self.s, self.keys = settings, keys
        self.prefix = settings.kafka.topic_prefix
        self.codec = codec_for(settings.kafka)
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._producer: Any = None

    def erase(self, tenant: str, customer: str, *, customer_ids: Sequence[str] = (), at: int | None = None,
              requested_by: str | None = None, reason: str | None = None,
              projection: Callable[[str, list[str], int], dict[str, int]] | None = None) -> Erasure:
        """Erase ``customer`` (and ``customer_ids``, its merged customers); ``at``: the event
        time of the SubjectErased records (default: now)."""
        now = self.clock_ms()
        ids = list(dict.fromkeys([customer, *customer_ids]))
        e = Erasure(erasure_id(tenant, customer, now), tenant, customer, ids, now)
        identities = self.keys.identities(tenant, ids)
        e.identity_keys = sum(len(v) for v in identities.values())
        e.keys_destroyed = sum(self.keys.erase(tenant, ids, now).values())
        e.steps.append(f"destroyed {e.keys_destroyed} keys of {len(ids)} customer(s) in the key store")
        planned = plan(tenant, customer, identities, e.erasure_id, now if at is None else at)
        self._produce([(t, k, self.codec.encode(ev, topics.named(self.prefix, t))) for t, k, ev in planned])
        e.erasure_events = len(planned)
        e.steps.append(f"wrote {len(planned)} SubjectErased records to the stream stages' inputs")
        needles = ids + sorted({k.rsplit(":", 1)[-1] for keys in identities.values() for k in keys})
        e.tombstones = self._tombstones(needles)
        e.steps.append(f"tombstoned {sum(e.tombstones.values())} records of compacted topics")
        if projection is not None:
            e.projection_rows = projection(tenant, ids, now)
            e.steps.append(f"blanked {sum(e.projection_rows.values())} projection rows")
        e.completed_at = self.clock_ms()
        done = completed(e, requested_by, reason)
        self._produce([(topics.PRIVACY_ERASURES, done["envelope"]["partition_key"],
                        self.codec.encode(done, topics.named(self.prefix, topics.PRIVACY_ERASURES)))])
        e.steps.append("wrote ErasureCompleted to parley.privacy.erasures")
        return e

    # --- Kafka -----------------------------------------------------------------------------

    def _producer_once(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self.codec.prepare([topics.MESSAGES, topics.IDENTITY_COMMANDS, topics.CONVERSATION_MESSAGES,
                                topics.PRIVACY_ERASURES])
            self._producer = Producer(self.s.kafka.librdkafka_config(**{
                "acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random"}))
        return self._producer

    def _produce(self, records: Sequence[tuple[topics.Topic | str, str | bytes, bytes | None]]) -> None:
        p = self._producer_once()
        errors: list[Any] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        for t, key, value in records:
            name = topics.named(self.prefix, t) if isinstance(t, topics.Topic) else t
            p.produce(name, value, key.encode() if isinstance(key, str) else key, on_delivery=done)
        if p.flush(60) or errors:
            raise RuntimeError(f"erasure records not acknowledged: {errors[:3] or 'timeout'}")

    def _tombstones(self, needles: Sequence[str]) -> dict[str, int]:
        """Tombstones for the compacted catalogue topics' records keyed by a subject's token or id."""
        out = {}
        for t in topics.ALL:
            if "compact" not in t.cleanup or t.name in KEEP_COMPACTED:
                continue
            name = topics.named(self.prefix, t)
            keys = {k for k in _keys(self.s.kafka, name) if matches(k, needles)}
            self._produce([(name, k, None) for k in sorted(keys)])
            out[t.name] = len(keys)
        return out

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)


def _keys(kafka: Any, topic: str) -> set[bytes]:
    """Every key of a topic with a live value (read to its end), without decoding values."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    c = Consumer(kafka.librdkafka_config(**{"group.id": f"parley-privacy-{time.time_ns()}",
                                           "enable.auto.commit": False, "enable.partition.eof": True,
                                           "isolation.level": "read_committed"}))
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return set()
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions]
        ends = {p.partition for p in parts if c.get_watermark_offsets(p, timeout=10)[1] > 0}
        c.assign([p for p in parts if p.partition in ends])
        live: dict[bytes, bool] = {}
        while ends:
            for m in c.consume(1000, 1.0):
                error, key = m.error(), m.key()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.discard(m.partition())
                    continue
                if key is not None:
                    live[key] = m.value() is not None
        return {k for k, alive in live.items() if alive}
    finally:
        c.close()
