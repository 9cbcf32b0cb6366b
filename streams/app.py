"""The Faust app of `parley worker`: every stream family registered on one app.

```
parley.messages ─┐                                   (rekey by tenant)
identity.commands┴─► identity.by-tenant ─► identity ─► parley.identity.events
                                                    └► parley.conversation.messages (tenant|customer)
parley.conversation.messages ─► threads ─► parley.conversations (tenant|customer)
parley.conversations ─► enrich ─► parley.conversations (MessageEnriched)
parley.conversations ─┐
parley.agents.status ─┼► routing.by-tenant ─► routing ─► parley.conversations
parley.customers.context┘
parley.conversations ─► kpi (streams.kpi, when present)
```

``create_app(settings)`` builds a fresh app each call (no module-level app), so tests and the
benchmark can run several apps, each with its own app id and topic prefix, in one process.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import faust

from parley.settings import KafkaSettings, WorkerSettings
from schemas.codec import codec_for
from streams import codec as faust_codec
from streams.wiring import Wiring


def create_app(settings: WorkerSettings, *, enricher: Any = None, routing_rules: Any = None,
               **overrides: Any) -> faust.App:
    """A Faust app with identity, threads, enrich, routing (and KPIs if installed) registered.

    ``enricher`` and ``routing_rules`` replace the ones the settings name (tests, benchmark);
    ``overrides`` go to Faust's settings (e.g. a shorter commit interval).
    """
    k = settings.kafka
    auth = k.schema_registry_auth.get_secret_value() if k.schema_registry_auth else None
    faust_codec.register(codec_for(k.schema_registry_url, auth))
    app_id = f"{k.topic_prefix}{settings.app_id}"
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    conf: dict[str, Any] = {
        "broker": [f"kafka://{h.strip()}" for h in k.bootstrap_servers.split(",")],
        "store": settings.store,
        "datadir": str(settings.data_dir / "faust" / app_id),
        "processing_guarantee": settings.processing_guarantee,
        "topic_replication_factor": k.replication_factor,
        "topic_partitions": k.default_partitions,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": settings.web_enabled,
        "web_port": settings.web_port,
        "autodiscover": False,
        "producer_acks": -1,
    }
    credentials = _credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    app = faust.App(app_id, **{**conf, **overrides})
    register_all(app, settings, enricher=enricher, routing_rules=routing_rules)
    return app


async def declare_internal_topics(app: faust.App, k: KafkaSettings) -> list[str]:
    """Create the app's repartition and changelog topics before it starts; return their names.

    Faust declares them itself, but just before its consumer joins the group: a member that
    joins before the new topic is in its metadata is assigned nothing of it and only rebalances
    at the next metadata refresh (a minute or more of a worker reading nothing). Created here,
    and waited for, the first assignment is complete.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError
    from mode.utils.times import want_seconds

    channels = [a.channel for a in app.agents.values()] + [t.changelog_topic for t in app.tables.values()]
    wanted: dict[str, NewTopic] = {}
    for ch in channels:
        if not getattr(ch, "internal", False):
            continue
        configs = {k_: str(v) for k_, v in (ch.config or {}).items()}
        if ch.compacting:
            configs["cleanup.policy"] = "compact"
        if ch.retention:
            configs["retention.ms"] = str(int(want_seconds(ch.retention) * 1000))
        for name in ch.topics:
            wanted[name] = NewTopic(name, ch.partitions or app.conf.topic_partitions,
                                    app.conf.topic_replication_factor, topic_configs=configs)
    admin = AIOKafkaAdminClient(**k.client_kwargs(), request_timeout_ms=30000)
    await admin.start()
    try:
        missing = [t for name, t in wanted.items() if name not in set(await admin.list_topics())]
        for t in missing:
            try:
                await admin.create_topics([t])
            except TopicAlreadyExistsError:
                pass
        from parley.topics_admin import until_visible

        await until_visible(admin, list(wanted))
        return sorted(wanted)
    finally:
        await admin.close()


def register_all(app: faust.App, settings: WorkerSettings, **parts: Any) -> Wiring:
    """Register every family's agents and tables on ``app``."""
    from streams.enrich import agents as enrich
    from streams.identity import agents as identity
    from streams.routing import agents as routing
    from streams.threads import agents as threads

    w = Wiring(app, settings)
    identity.register(w)
    threads.register(w)
    enrich.register(w, parts.get("enricher"))
    routing.register(w, parts.get("routing_rules"))
    if importlib.util.find_spec("streams.kpi.agents") is not None:
        from streams.kpi import agents as kpi

        kpi.register(app, settings)
    return w


def _credentials(settings: WorkerSettings) -> Any:
    k = settings.kafka
    if k.security_protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
    if k.security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = k.sasl_password.get_secret_value() if k.sasl_password else None
    return faust.SASLCredentials(username=k.sasl_username, password=password, ssl_context=ssl_context,
                                 mechanism=k.sasl_mechanism or "PLAIN")
