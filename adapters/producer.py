"""The ingress's Kafka producer: idempotent, ``acks=all``, produce-and-wait under a deadline.

- Connects in the background: the service starts, answers ``/healthz`` and refuses webhooks with
  503 while Kafka is away; ``ready`` (``/readyz``) is true once a producer is connected.
- ``send_all(records)`` hands every record of one request to the producer and returns only when
  Kafka acknowledged all of them; otherwise it raises ``Unavailable`` and the caller answers 503,
  so the provider retries. Nothing is answered 2xx that is not stored.
- After a produce timeout or a connection-level error the producer is *abandoned* and a new one
  connects (RELIABILITY.md: re-initialise producers after indefinite errors). Abandoning drops
  the batches still queued in the old producer instead of delivering them once the broker is
  back: the provider was told 503 and will redeliver, so the request is stored by the retry and
  not twice. (A batch already on the wire when the broker died may still have been written;
  event ids are deterministic, so consumers drop such a repeat.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from parley import logs
from parley.settings import KafkaSettings

log = logs.get("adapters.producer")


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None  # None: the broker-side create time (now)


@dataclass(frozen=True)
class Stored:
    topic: str
    partition: int
    offset: int


class Unavailable(Exception):
    """Kafka did not acknowledge every record in time: answer 503, the provider retries."""


class Producer:
    """One idempotent producer per process, replaced after timeouts; see the module docstring."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 5.0, client_id: str = "parley-ingress",
                 max_request_size: int = 1_048_576, required_topics: Sequence[str] = (),
                 on_ready_change=None) -> None:
        self._kafka = kafka
        self._required_topics = tuple(required_topics)
        self._timeout_s = timeout_s
        self._client_id = client_id
        self._max_request_size = max_request_size
        self._on_ready_change = on_ready_change or (lambda ready: None)
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._closing = False

    @property
    def ready(self) -> bool:
        return self._producer is not None

    def _new(self) -> AIOKafkaProducer:
        # request_timeout_ms bounds metadata waits, buffer waits and one produce round trip; keep
        # it close to our own deadline so an abandoned producer winds down quickly.
        return AIOKafkaProducer(
            **self._kafka.client_kwargs(), client_id=self._client_id, acks="all",
            enable_idempotence=True, linger_ms=0, max_request_size=self._max_request_size,
            request_timeout_ms=max(1000, int(self._timeout_s * 1000)), retry_backoff_ms=100,
        )

    async def start(self) -> None:
        """Start connecting in the background; returns at once."""
        self._closing = False
        if self._connector is None or self._connector.done():
            self._connector = asyncio.create_task(self._connect_loop(), name="kafka-connect")

    async def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.ready

    async def _connect_loop(self) -> None:
        backoff = 0.2
        while not self._closing:
            p = self._new()
            try:
                await asyncio.wait_for(p.start(), max(2.0, self._timeout_s))
                await self._check_topics(p)
            except Exception as e:  # KafkaConnectionError, timeouts, DNS, missing topics...
                log.warning("producer.connect_failed", bootstrap=self._kafka.bootstrap_servers,
                            error=repr(e), retry_in_s=backoff)
                await _stop_quietly(p)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._producer = p
            self._on_ready_change(True)
            log.info("producer.connected", bootstrap=self._kafka.bootstrap_servers)
            return
        return

    async def _check_topics(self, p: AIOKafkaProducer) -> None:
        """Refuse to be ready while a topic we write is missing.

        A broker with ``auto.create.topics.enable`` would otherwise create it with its default
        partition count on the first send, and keys would land on other partitions than once the
        catalogue is applied. The metadata request for all topics creates nothing.
        """
        if not self._required_topics:
            return
        cluster = await asyncio.wait_for(p.client.fetch_all_metadata(), max(2.0, self._timeout_s))
        missing = sorted(set(self._required_topics) - set(cluster.topics()))
        if missing:
            raise RuntimeError(f"topics missing: {', '.join(missing)} (run `parley topics apply`)")

    async def stop(self) -> None:
        """Flush what is queued (bounded by the deadline) and close."""
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        p, self._producer = self._producer, None
        if p is not None:
            try:
                await asyncio.wait_for(p.stop(), self._timeout_s)
            except Exception:
                await _abandon(p)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._on_ready_change(False)

    async def send_all(self, records: Sequence[Record]) -> list[Stored]:
        """Produce ``records`` and wait for every ack, or raise ``Unavailable``."""
        p = self._producer
        if p is None:
            raise Unavailable("not connected to Kafka")
        try:
            return await asyncio.wait_for(_send(p, records), self._timeout_s)
        except TimeoutError:
            self._replace(p, "produce timeout")
            raise Unavailable(f"Kafka did not acknowledge within {self._timeout_s}s") from None
        except KafkaError as e:
            if getattr(e, "retriable", True):
                self._replace(p, repr(e))
            raise Unavailable(f"Kafka error: {e!r}") from None

    def _replace(self, p: AIOKafkaProducer, why: str) -> None:
        """Abandon ``p`` (once, even if many requests time out together) and reconnect."""
        if self._producer is not p or self._closing:
            return
        self._producer = None
        self._on_ready_change(False)
        log.warning("producer.abandoned", reason=why)
        task = asyncio.create_task(_abandon(p))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._connector = asyncio.create_task(self._connect_loop(), name="kafka-reconnect")


async def _send(p: AIOKafkaProducer, records: Sequence[Record]) -> list[Stored]:
    futures = [
        await p.send(r.topic, r.value, key=r.key, headers=list(r.headers) or None, timestamp_ms=r.timestamp_ms)
        for r in records
    ]
    metas = await asyncio.gather(*futures)
    return [Stored(m.topic, m.partition, m.offset) for m in metas]


async def _abandon(p: AIOKafkaProducer) -> None:
    """Drop ``p`` without delivering its queued batches (aiokafka has no public way to do that)."""
    sender = getattr(p, "_sender", None)
    task = getattr(sender, "sender_task", None)
    if task is not None:
        task.cancel()  # stops draining the accumulator into produce requests
    accumulator = getattr(p, "_message_accumulator", None)
    if accumulator is not None:
        accumulator.fail_all(KafkaError("producer abandoned after a produce failure"))
    await _stop_quietly(p)


async def _stop_quietly(p: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(p.stop(), 5.0)
    except Exception as e:  # best effort clean-up of a dead producer
        log.debug("producer.stop_failed", error=repr(e))
