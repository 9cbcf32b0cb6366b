"""Apply the topic catalogue to a cluster, idempotently, and describe what is live."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from parley.settings import KafkaSettings
from schemas import topics as registry


def _admin(k: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**k.client_kwargs(), request_timeout_ms=30000)


async def apply(k: KafkaSettings, catalogue: tuple[registry.Topic, ...] = registry.ALL) -> list[str]:
    """Create missing topics, raise partition counts, set configs; return a line per topic."""
    admin = _admin(k)
    await admin.start()
    try:
        existing = await admin.describe_topics([registry.named(k.topic_prefix, t) for t in catalogue])
        live = {d["topic"]: len(d["partitions"]) for d in existing if d["error_code"] == 0}
        lines = []
        for t in catalogue:
            lines.append(await _apply_one(admin, k, t, live.get(registry.named(k.topic_prefix, t))))
        return lines
    finally:
        await admin.close()


async def _apply_one(admin: AIOKafkaAdminClient, k: KafkaSettings, t: registry.Topic,
                     live_partitions: int | None) -> str:
    name = registry.named(k.topic_prefix, t)
    if live_partitions is None:
        try:
            await admin.create_topics([NewTopic(name, t.partitions, k.replication_factor, topic_configs=t.configs())])
            return f"created {name} ({t.partitions} partitions)"
        except TopicAlreadyExistsError:
            live_partitions = t.partitions
    if live_partitions < t.partitions:
        await admin.create_partitions({name: NewPartitions(total_count=t.partitions)})
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=t.configs())])
    return f"updated {name} ({max(live_partitions, t.partitions)} partitions)"


async def live_configs(k: KafkaSettings, catalogue: tuple[registry.Topic, ...] = registry.ALL) -> dict[str, dict]:
    """Partitions and the catalogue-owned configs of each topic as the cluster has them."""
    admin = _admin(k)
    await admin.start()
    try:
        names = [registry.named(k.topic_prefix, t) for t in catalogue]
        described = {d["topic"]: d for d in await admin.describe_topics(names)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names if described.get(n, {}).get("error_code") == 0]
        out: dict[str, dict] = {}
        for resp in await admin.describe_configs(resources) if resources else []:
            for res in resp.resources:
                _err, _msg, _type, rname, entries = res[:5]
                cfg = {e[0]: e[1] for e in entries}
                out[rname] = {"partitions": len(described[rname]["partitions"]), "configs": cfg}
        return out
    finally:
        await admin.close()


async def describe(k: KafkaSettings) -> str:
    """A table of the catalogue beside the live state of each topic."""
    live = await live_configs(k)
    rows = [f"{'topic':38} {'parts':>5} {'cleanup':8} {'retention.ms':>13}  key"]
    for t in registry.ALL:
        name = registry.named(k.topic_prefix, t)
        info = live.get(name)
        if info is None:
            rows.append(f"{name:38} {'-':>5} {'MISSING':8} {'-':>13}  {t.key}")
            continue
        c = info["configs"]
        rows.append(f"{name:38} {info['partitions']:>5} {c.get('cleanup.policy', '?'):8} "
                    f"{c.get('retention.ms', '?'):>13}  {t.key}")
    return "\n".join(rows)
