"""Right of access: every event held on a customer, read from the log and opened.

``events`` reads the partitions a customer's events are keyed to (``tenant|customer``, murmur2
as the producers partition) of the topics keyed by customer, keeps the records with that key,
and opens them with the keyring: messages and replies with their text, thread life cycle,
enrichments, routing decisions, CRM context, identity links. What a destroyed key sealed shows
as erased or expired. The projections' view of the same customer is added by the caller
(``projections.privacy.export``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any

from parley.privacy.seal import Opener
from schemas import topics

BY_CUSTOMER = (topics.CONVERSATIONS, topics.CUSTOMER_CONTEXT, topics.IDENTITY, topics.PRIVACY_ERASURES)


def partition_of(key: bytes, partitions: int) -> int:
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def events(kafka: Any, opener: Opener | None, tenant: str, customers: Iterable[str]) -> list[dict[str, Any]]:
    """The customers' events on the topics keyed by customer, opened, in (topic, offset) order."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from schemas.codec import codec_for

    codec = codec_for(kafka)
    keys = {t.key(tenant, c).encode() for t in BY_CUSTOMER for c in customers}  # one shape: tenant|customer
    c = Consumer(kafka.librdkafka_config(**{"group.id": f"parley-privacy-export-{time.time_ns()}",
                                           "enable.auto.commit": False, "enable.partition.eof": True,
                                           "isolation.level": "read_committed"}))
    out: list[dict[str, Any]] = []
    try:
        wanted = []
        for t in BY_CUSTOMER:
            name = topics.named(kafka.topic_prefix, t)
            md = c.list_topics(name, timeout=10).topics.get(name)
            if md is None or md.error is not None:
                continue
            for p in sorted({partition_of(k, len(md.partitions)) for k in keys}):
                tp = TopicPartition(name, p, 0)
                if c.get_watermark_offsets(tp, timeout=10)[1] > 0:
                    wanted.append(tp)
        c.assign(wanted)
        left = {(tp.topic, tp.partition) for tp in wanted}
        while left:
            for m in c.consume(1000, 1.0):
                error, value = m.error(), m.value()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        left.discard((m.topic(), m.partition()))
                    continue
                if m.key() in keys and value is not None:
                    event = codec.decode(value)
                    out.append({"topic": m.topic(), "offset": m.offset(),
                                "event": jsonable(opener.open(event) if opener else event)})
    finally:
        c.close()
    return out


def jsonable(value: Any) -> Any:
    """Bytes as base64, everything else as it is (for ``json.dumps``)."""
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
