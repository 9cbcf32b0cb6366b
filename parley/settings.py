"""Settings, read from the environment: one class per process, sharing nested groups.

Only this module reads the environment. Tests build settings objects directly.
Environment names use the ``PARLEY_`` prefix and ``__`` for nesting
(``PARLEY_KAFKA__BOOTSTRAP_SERVERS``); the plain ``KAFKA_BOOTSTRAP_SERVERS`` is honoured too,
since every Kafka tool knows it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_DATA_DIR = Path(os.environ.get("PARLEY_HOME", "parley-data"))


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster (and the optional Schema Registry)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    schema_registry_url: str | None = None
    schema_registry_auth: SecretStr | None = None
    topic_prefix: str = ""
    default_partitions: int = 6
    replication_factor: int = 1

    def connection(self) -> dict[str, str]:
        """How to connect, stated once (librdkafka's names): bootstrap servers, protocol, SASL
        mechanism and credentials, CA file. Both client families' settings derive from it."""
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if self.ssl_cafile:
            conf["ssl.ca.location"] = str(self.ssl_cafile)
        return conf

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by aiokafka producers, consumers and admin clients
        (``connection()`` under aiokafka's names; TLS as an SSL context)."""
        conn = self.connection()
        kw: dict[str, Any] = {_AIOKAFKA[k]: v for k, v in conn.items() if k in _AIOKAFKA}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(cafile=conn.get("ssl.ca.location"))
        return kw

    def librdkafka_config(self, **overrides: Any) -> dict[str, Any]:
        """The shared part of a confluent-kafka (librdkafka) client's configuration
        (``connection()``); ``overrides`` are added as given."""
        conn = self.connection()
        return {**conn, "security.protocol": conn["security.protocol"].lower(), **overrides}


# aiokafka's names for ``KafkaSettings.connection()``'s (the CA file becomes an SSL context)
_AIOKAFKA = {"bootstrap.servers": "bootstrap_servers", "security.protocol": "security_protocol",
             "sasl.mechanism": "sasl_mechanism", "sasl.username": "sasl_plain_username",
             "sasl.password": "sasl_plain_password"}


class LogSettings(BaseModel):
    level: str = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class PrivacySettings(BaseModel):
    """Crypto-shredding of personal data (``parley/privacy``, docs/PRIVACY.md); the same in every
    process that seals or opens events (ingress, worker, projections, API, CLI).

    ``enabled`` seals personal fields at the ingress and the agent API before they reach Kafka;
    readers open whatever is sealed whatever this flag says. ``master_key``: 32 bytes, base64
    (``parley privacy keygen``), wraps every key in the key store; ``previous_master_keys`` still
    unwrap during a rotation. ``keys_url``: the key store (a SQL table: SQLite or PostgreSQL).
    ``retention_days``: message content is shredded this many days (event time) after it was
    written; 0 keeps it; ``tenant_retention_days`` overrides it per tenant.
    """

    enabled: bool = False
    master_key: SecretStr | None = None
    previous_master_keys: list[SecretStr] = Field(default_factory=list)
    keys_url: str = "sqlite:///parley-data/privacy-keys.db"
    refresh_s: float = 2.0  # how often a process's key cache looks for erasures and expiries
    retention_days: int = 0
    tenant_retention_days: dict[str, int] = Field(default_factory=dict)
    admin_tokens: list[SecretStr] = Field(default_factory=list)  # bearer tokens of the privacy API routes

    def retention_for(self, tenant: str) -> int:
        """Days of message content kept for ``tenant`` (0: forever)."""
        return self.tenant_retention_days.get(tenant, self.retention_days)


class _PlainKafkaBootstrap(PydanticBaseSettingsSource):
    """``KAFKA_BOOTSTRAP_SERVERS``, the name every Kafka tool knows, below ``PARLEY_KAFKA__*``
    and below settings passed as arguments."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        plain = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        return {"kafka": {"bootstrap_servers": plain}} if plain else {}


class _Base(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PARLEY_", env_nested_delimiter="__", extra="ignore"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    data_dir: Path = DEFAULT_DATA_DIR

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Priority, highest first: arguments, PARLEY_* variables, KAFKA_BOOTSTRAP_SERVERS.
        return (init_settings, env_settings, _PlainKafkaBootstrap(settings_cls), dotenv_settings,
                file_secret_settings)

    def safe_dict(self) -> dict[str, Any]:
        """The settings for the start-up log line: secrets masked by pydantic."""
        return self.model_dump(mode="json", exclude_none=True)


class BrokerSettings(_Base):
    """`parley kafka up|down|status`: the local KRaft broker started from Maven jars.

    Its own names (``PARLEY_BROKER_PORT``, ``PARLEY_BROKER_HEAP``...) so they never collide
    with a service's ``PARLEY_PORT``.
    """

    model_config = SettingsConfigDict(
        env_prefix="PARLEY_BROKER_", env_nested_delimiter="__", extra="ignore"
    )

    kafka_version: str = "3.9.1"
    scala_version: str = "2.13"
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "parley",
        validation_alias=AliasChoices("PARLEY_CACHE_DIR", "cache_dir"),
    )
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "768m"
    start_timeout_s: float = 90.0

    def model_post_init(self, ctx: Any) -> None:
        super().model_post_init(ctx)
        if "bootstrap_servers" not in self.kafka.model_fields_set:
            self.kafka.bootstrap_servers = f"{self.host}:{self.port}"


class TopicsSettings(_Base):
    """`parley topics apply|list`."""


class IngressSettings(_Base):
    """`parley ingress`: the webhook HTTP service."""

    host: str = "127.0.0.1"
    port: int = 8080
    accounts_file: Path = Path("config/accounts.toml")
    public_base_url: str | None = None  # Twilio signs the public URL; behind a proxy set this
    produce_timeout_s: float = 5.0
    agent_tokens: list[SecretStr] = Field(default_factory=list)
    # a body (and its raw record) must fit the raw topic's max.message.bytes (32 MiB)
    max_record_bytes: int = 31 * 1024 * 1024
    retry_after_s: int = 5  # Retry-After of the 503 answered when Kafka did not acknowledge
    # librdkafka linger: records of concurrent requests share a produce request. Measured with
    # dedup (bench ingress, same session): 0 gave 2,750-2,850 req/s at 32 in flight (1 ms:
    # 2,570-2,630) and p50 4.9 ms at 1,000/s (1 ms: 6.8), but p99 22-38 ms at 1,000/s where 1 ms
    # gave 11-17: a produce request per record at low rates. A later session, alternated runs:
    # 0.5 ms gave 2,930-3,020 req/s at 32 in flight where 1 ms gave 2,640-2,880, the same p99 at
    # 1,000/s (13-19 ms) and about the broker's CPU of 1 ms (0.1-0.2 ms: +20 %).
    linger_ms: float = 0.5
    workers: int = 1  # processes serving the port (SO_REUSEPORT); each has its own producer
    # Dedup of redeliveries on the claim log (adapters/dedup.py): an id stored within the horizon is
    # never written again. The horizon covers the longest documented retry horizon (Meta, RBM: 7 d);
    # parley.ingress.claims keeps 9 d, so raise its retention with it.
    dedup: bool = True
    dedup_horizon_s: int = 8 * 24 * 3600
    dedup_claim_ttl_s: float = 30.0  # an unresolved claim older than this is checked against the topics
    dedup_wait_s: float = 2.0  # how long a redelivery waits for another attempt still storing the same ids


class WorkerSettings(_Base):
    """`parley worker`: the stream processors (``streams/``)."""

    app_id: str = "parley-streams"
    # static group membership: a restarted worker with the same id takes its partitions back at
    # once; unique per running worker. None: dynamic membership (a restart rebalances).
    instance_id: str | None = None
    # processes of this worker (Python uses one core per process): each is a member of the group
    # with its own partitions, static id ``<instance_id>-<i>``, restarted if it dies
    processes: int = Field(default=1, ge=1)
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "exactly_once"
    lateness_ms: int = 500  # how late (event time) a record from outside may come and still be in order
    idle_ms: int = 1000  # a caught-up source quiet this long no longer holds event time back
    max_batch: int = 5000  # records read per turn
    commit_interval_ms: int = 50  # a transaction (outputs, state, offsets) is committed this often
    poll_ms: int = 20  # how long a turn waits for records when there are none
    fetch_wait_ms: int = 10  # the broker's wait for a fetch to fill (latency vs requests)
    linger_ms: int = 2
    session_timeout_ms: int = 10_000  # a member silent this long loses its partitions
    stats_interval_s: float = 10.0
    # fault tests only: kill the process (SIGKILL) just before committing its Nth transaction,
    # when its outputs and state changes are written but not committed (0: never)
    crash_before_commit: int = 0
    routing_file: Path | None = Path("config/routing.toml")  # None: built-in rules for every tenant
    intents_file: Path | None = None
    reopen_window_s: int = 7 * 24 * 3600
    continue_window_s: int = 3 * 24 * 3600  # an open thread idle longer is not continued by a subject-less message
    auto_resolve_after_s: int = 8 * 3600  # business had the last word, customer silent: resolved (0: never)
    apply_topics: bool = True  # create/update the topic catalogue at start (idempotent)


class ProjectionSettings(_Base):
    """`parley projections run|rebuild`."""

    database_url: str = "sqlite:///parley-data/parley.db"
    batch_size: int = 500
    projections: list[str] = Field(default_factory=lambda: ["customers", "threads", "kpis"])
    rebuild_batch_size: int = 5000  # records per getmany/transaction during a rebuild
    poll_timeout_ms: int = 500
    dead_letters: bool = True  # send undecodable/poison records to the dead-letter topic


class ApiSettings(_Base):
    """`parley api`: the read-only analyst API and dashboard."""

    database_url: str = "sqlite:///parley-data/parley.db"
    host: str = "127.0.0.1"
    port: int = 8000


class DemoSettings(_Base):
    """`parley demo`: the whole pipeline on one machine, driven by a synthetic day."""

    scale: float = 1.0
    seed: int = 7
    day: str | None = None  # YYYY-MM-DD; default: the last weekday before today (UTC)
    ingress_port: int = 8080  # another free port when taken
    api_port: int = 8000  # another free port when taken
    accounts_file: Path | None = None  # None: the packaged example (parley/app/demo/data)
    routing_file: Path | None = None  # None: the packaged example (parley/app/demo/data)
    agent_token: SecretStr = SecretStr("demo-agent-token")
    slice_s: int = 300  # simulated seconds per slice: actors react to decisions up to a slice late
    # The demo worker's lateness bound (None: two slices) and idle time. A slice's requests go
    # out in event-time order within milliseconds but cover minutes of event time, and they
    # enter the worker at different depths (an agent's resolve goes straight to the
    # conversations stage, a message through identity first): a bound of two slices holds a
    # whole slice back until every source is idle, then releases it in event-time order.
    worker_lateness_ms: int | None = None
    worker_idle_ms: int = 500
    settle_timeout_s: float = 180.0


class EgressSettings(_Base):
    """`parley egress`: outbound messages to the providers (``egress/``)."""

    accounts_file: Path = Path("config/accounts.toml")
    group_id: str = "parley-egress"
    instance_id: str | None = None  # static group membership (a restart takes its partitions back at once)
    # every provider's base URL replaced by the emulator's (tests, the demo, the benchmark)
    emulator_url: str | None = None
    emulator_smtp: str | None = None  # host:port of the emulator's SMTP server
    call_timeout_s: float = 10.0
    connections: int = 256  # HTTP connections, every provider together
    account_concurrency: int = 64  # calls in flight per account
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    # a message read later than this after it was written is not sent (a replay of old traffic);
    # its delivery events are read back over the same horizon
    send_horizon_s: int = 24 * 3600
    max_in_flight: int = 20_000  # messages read and not yet done; reading pauses above it
    max_batch: int = 1000
    poll_ms: int = 2
    fetch_wait_ms: int = 5
    linger_ms: int = 1
    commit_interval_ms: int = 200
    session_timeout_ms: int = 10_000
    stats_interval_s: float = 10.0
    drain_s: float = 10.0  # on SIGTERM: how long the calls in progress may take to finish
    host: str = "127.0.0.1"  # web chat push hub (WebSocket, SSE), health and metrics
    port: int = 8090
    webchat_keep: int = 100  # messages kept per web chat user while no widget is connected
