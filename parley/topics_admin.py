"""Apply the topic catalogue to a cluster, idempotently, and describe what is live."""

from __future__ import annotations

import asyncio

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
        live = await _live_partitions(admin, [registry.named(k.topic_prefix, t) for t in catalogue])
        lines = []
        for t in catalogue:
            lines.append(await _apply_one(admin, k, t, live.get(registry.named(k.topic_prefix, t))))
        await until_visible(admin, [registry.named(k.topic_prefix, t) for t in catalogue])
        return lines
    finally:
        await admin.close()


async def delete_prefixed(k: KafkaSettings) -> list[str]:
    """Delete every topic whose name starts with ``k.topic_prefix`` (a test's or a demo's own
    namespace, the worker's changelogs and internal topics included); return the names. Refuses an empty prefix."""
    if not k.topic_prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = _admin(k)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(k.topic_prefix)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def _live_partitions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition counts of the topics that exist (listing first: describing a missing topic
    could auto-create it on a broker that allows that)."""
    existing = set(await admin.list_topics()) & set(names)
    if not existing:
        return {}
    described = await admin.describe_topics(sorted(existing))
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}


async def until_visible(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Wait until every topic shows in the cluster's metadata (creation is asynchronous)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while set(names) - set(await admin.list_topics()):
        if asyncio.get_running_loop().time() > deadline:
            missing = sorted(set(names) - set(await admin.list_topics()))
            raise TimeoutError(f"topics not visible after {timeout_s}s: {missing}")
        await asyncio.sleep(0.1)


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
        live = await _live_partitions(admin, [registry.named(k.topic_prefix, t) for t in catalogue])
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in sorted(live)]
        out: dict[str, dict] = {}
        for resp in await admin.describe_configs(resources) if resources else []:
            for res in resp.resources:
                _err, _msg, _type, rname, entries = res[:5]
                out[rname] = {"partitions": live[rname], "configs": {e[0]: e[1] for e in entries}}
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
            rows.append(f"{name:38} {'-':>5} {'MISSING':8} {'-':>13}  {t.key_shape}")
            continue
        c = info["configs"]
        rows.append(f"{name:38} {info['partitions']:>5} {c.get('cleanup.policy', '?'):8} "
                    f"{c.get('retention.ms', '?'):>13}  {t.key_shape}")
    return "\n".join(rows)
