"""The ingress's Kafka producer: librdkafka (confluent-kafka), idempotent, ``acks=all``.

- Connects in the background: the service starts, answers ``/healthz`` and refuses webhooks with
  503 while Kafka is away. ``ready`` (``/readyz``) is true only while a producer is connected,
  every topic it writes exists, and nothing says it cannot produce (see below).
- ``send_all(records)`` hands every record of one request to librdkafka (``produce`` does not
  block: it queues) and returns once Kafka acknowledged all of them; otherwise it raises
  ``Unavailable`` and the caller answers 503, so the provider retries. Nothing is answered 2xx
  that is not stored. Delivery reports are served on the event loop itself (``_Client``).
  Its two halves, ``submit`` (now, synchronous) and ``acked`` (the wait), serve a caller that
  must produce in a callback rather than a task (the dedup's claim records).
- Sizes are checked *before* producing: each topic's live ``max.message.bytes`` is read when the
  producer connects, and a record that would not fit raises ``TooLarge`` without touching the
  producer. A record the broker refuses can therefore no longer take the producer down with it.
- The producer is *abandoned* and a new one connects after any produce error: a delivery error
  of any kind (a broker refusal, a timeout, an idempotence sequence error...), a fatal error
  reported by librdkafka, or no acknowledgement within the deadline. An idempotent producer
  that lost a batch can be out of step with the broker's sequence numbers for that partition
  (the failure mode where every later request on the partition got OutOfOrderSequenceNumber);
  a new producer has a new producer id and starts clean. Abandoning purges what is still
  queued: the provider was told 503 and will redeliver (the dedup claims, ``adapters/dedup``,
  keep a late duplicate out of the topics).
- "Cannot produce" also covers librdkafka's "all brokers down": ``ready`` turns false at once
  and comes back with the next acknowledged record or a successful metadata probe.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from parley import logs
from parley.settings import KafkaSettings

log = logs.get("adapters.producer")

BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's message.max.bytes default
# Bytes a record batch of one record adds around key, value and headers (batch header 61,
# record framing ~20, varints): kept generous so a record that passes our check never
# meets the broker's.
RECORD_OVERHEAD = 512
_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


class Record(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None  # None: the broker-side create time (now)

    def size(self) -> int:
        """Bytes this record takes in a batch, framing included (an upper bound)."""
        return len(self.key) + len(self.value) + sum(len(k) + len(v) + 8 for k, v in self.headers) \
            + RECORD_OVERHEAD


class Stored(NamedTuple):
    topic: str
    partition: int
    offset: int


class Unavailable(Exception):
    """Kafka did not acknowledge every record in time: answer 503, the provider retries."""


class TooLarge(ValueError):
    """A record does not fit its topic's ``max.message.bytes``: it was not produced."""

    def __init__(self, record: Record, limit: int) -> None:
        super().__init__(f"a record of {record.size()} bytes exceeds {record.topic}'s max.message.bytes of {limit}")
        self.record, self.limit = record, limit


class _Pending:
    """The records of one ``send_all`` call: one future for all of them."""

    __slots__ = ("future", "left", "results", "error", "deadline", "timed_out")

    def __init__(self, future: asyncio.Future, n: int, deadline: float) -> None:
        self.future, self.left, self.deadline = future, n, deadline
        self.results: list[Stored | None] = [None] * n
        self.error: KafkaError | None = None
        self.timed_out = False


class _Client:
    """One librdkafka producer whose delivery reports are served on the event loop.

    No thread: ``poll(0)`` runs on the loop every ``BUSY_S`` while records are in flight (and every
    ``IDLE_S`` otherwise, for librdkafka's error callbacks). Callbacks then complete futures
    directly: no cross-thread hand-over, no lock or GIL ping-pong with a polling thread, which on
    a small machine cost more than the Kafka round trip itself.
    """

    BUSY_S = 0.0005
    IDLE_S = 0.05

    def __init__(self, conf: dict[str, Any], loop: asyncio.AbstractEventLoop,
                 on_error: Callable[[_Client, KafkaError], None]) -> None:
        self.loop, self._on_error = loop, on_error
        self.producer = confluent_kafka.Producer({**conf, "error_cb": self._error})
        self.limits: dict[str, int] = {}
        self.brokers_down = False
        self.in_flight = 0
        self._deadlines: collections.deque[_Pending] = collections.deque()  # in deadline order
        self._timer: asyncio.TimerHandle | None = None
        self._due = float("inf")
        self._closed = False

    def start(self) -> None:
        self._schedule(self.IDLE_S)

    def produce(self, records: Sequence[Record], pending: _Pending) -> None:
        produce = self.producer.produce
        for i, r in enumerate(records):
            kw: dict[str, Any] = {"on_delivery": self._callback(pending, i, r.topic)}
            if r.headers:
                kw["headers"] = list(r.headers)
            if r.timestamp_ms is not None:
                kw["timestamp"] = r.timestamp_ms
            produce(r.topic, r.value, r.key, **kw)
            self.in_flight += 1
        self._deadlines.append(pending)  # one timeout for every request: deadlines come in order
        self._schedule(self.BUSY_S)

    def _callback(self, pending: _Pending, index: int, topic: str) -> Callable[[Any, Any], None]:
        def delivered(err: KafkaError | None, msg: Any) -> None:  # runs inside poll(), on the loop
            self.in_flight -= 1
            _report(pending, index, topic, err, msg)
        return delivered

    def _schedule(self, delay: float) -> None:
        due = self.loop.time() + delay
        if self._closed or due >= self._due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._due, self._timer = due, self.loop.call_at(due, self._tick)

    def _tick(self) -> None:
        self._timer, self._due = None, float("inf")
        if self._closed:
            return
        self.producer.poll(0)
        self._expire(self.loop.time())
        self._schedule(self.BUSY_S if self.in_flight or self._deadlines else self.IDLE_S)

    def _expire(self, now: float) -> None:
        """Complete the requests whose deadline passed (a timer per request would cost more)."""
        q = self._deadlines
        while q and (q[0].future.done() or q[0].deadline <= now):
            pending = q.popleft()
            if not pending.future.done():
                pending.timed_out = True
                pending.future.set_result(pending)

    def _error(self, err: KafkaError) -> None:  # inside poll(): act after it returns (no re-entry)
        self.loop.call_soon(self._on_error, self, err)

    def close(self, *, purge: bool) -> None:
        """Stop serving reports; ``purge`` first fails what is queued or in flight (their futures
        fail at once) instead of delivering it."""
        if purge:
            try:
                self.producer.purge(in_queue=True, in_flight=True, blocking=True)
                self.producer.poll(0)
            except (KafkaException, RuntimeError) as e:
                log.debug("producer.purge_failed", error=repr(e))
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if purge:  # nothing will serve this producer again: whoever still waits, stops waiting
            self._expire(float("inf"))

    async def drain(self, timeout_s: float) -> None:
        """Deliver what is queued, serving its reports, for at most ``timeout_s``."""
        deadline = self.loop.time() + timeout_s
        while self.in_flight and self.loop.time() < deadline:
            self.producer.poll(0)
            await asyncio.sleep(0.005)


class Sent(NamedTuple):
    """Records handed to a producer by ``Producer.submit``, not yet acknowledged."""

    client: _Client
    pending: _Pending


def _report(pending: _Pending, index: int, topic: str, err: KafkaError | None, msg: Any) -> None:
    """Record one delivery report; complete the request's future with its last one."""
    if err is not None:
        pending.error = pending.error or err
    else:
        pending.results[index] = Stored(topic, msg.partition(), msg.offset())
    pending.left -= 1
    if pending.left == 0 and not pending.future.done():
        pending.future.set_result(pending)


class Producer:
    """One idempotent producer per process, replaced after produce errors; see the module docstring."""

    LIMITS_REFRESH_S = 60.0

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 5.0, client_id: str = "parley-ingress",
                 max_request_size: int = 33 * 1024 * 1024, required_topics: Sequence[str] = (),
                 linger_ms: float = 1.0, on_ready_change: Callable[[bool], None] | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
        self._kafka = kafka
        self._required_topics = tuple(required_topics)
        self._timeout_s = timeout_s
        self._on_ready_change = on_ready_change or (lambda ready: None)
        self._conf = kafka.librdkafka_config(**{
            "client.id": client_id, "acks": "all", "enable.idempotence": True,
            "linger.ms": linger_ms, "socket.nagle.disable": True,
            # the Java client's partitioner: keys land where aiokafka and Faust put them
            "partitioner": "murmur2_random",
            "message.max.bytes": max_request_size,
            "message.timeout.ms": max(1000, int(timeout_s * 1000)),
            "request.timeout.ms": max(1000, int(timeout_s * 1000)),
            "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 2000,
            **(overrides or {}),
        })
        self._client: _Client | None = None
        self._connector: asyncio.Task | None = None
        self._prober: asyncio.Task | None = None
        self._refresher: asyncio.Task | None = None
        self._closing = False
        self._last_ready = False

    # -- state -------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        c = self._client
        return c is not None and not c.brokers_down

    def _publish_ready(self) -> None:
        if self.ready != self._last_ready:
            self._last_ready = self.ready
            self._on_ready_change(self._last_ready)

    def limit(self, topic: str) -> int:
        """``max.message.bytes`` of ``topic`` as the cluster has it (the broker default if unknown)."""
        c = self._client
        return c.limits.get(topic, BROKER_DEFAULT_MAX_MESSAGE_BYTES) if c else BROKER_DEFAULT_MAX_MESSAGE_BYTES

    def fits(self, record: Record) -> bool:
        return record.size() <= self.limit(record.topic)

    # -- life cycle --------------------------------------------------------------------------

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
        loop = asyncio.get_running_loop()
        while not self._closing:
            client = _Client(self._conf, loop, self._client_error)
            try:
                client.limits = await asyncio.to_thread(self._inspect, client)
            except Exception as e:  # broker away, DNS, missing topics...
                log.warning("producer.connect_failed", bootstrap=self._kafka.bootstrap_servers,
                            error=str(e), retry_in_s=backoff)
                client.close(purge=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            client.start()
            self._client = client
            self._publish_ready()
            log.info("producer.connected", bootstrap=self._kafka.bootstrap_servers,
                     limits={t: v for t, v in client.limits.items()})
            if self._refresher is None or self._refresher.done():
                self._refresher = asyncio.create_task(self._refresh_limits(), name="kafka-limits")
            return

    async def _refresh_limits(self) -> None:
        """Re-read every topic's ``max.message.bytes`` now and then: an operator may change it."""
        while not self._closing:
            await asyncio.sleep(self.LIMITS_REFRESH_S)
            c = self._client
            if c is None:
                continue
            try:
                c.limits = await asyncio.to_thread(self._max_message_bytes, max(2.0, self._timeout_s))
            except Exception as e:  # keep the last known limits
                log.debug("producer.limits_refresh_failed", error=repr(e))

    def _inspect(self, client: _Client) -> dict[str, int]:
        """(Blocking) metadata and ``max.message.bytes`` of the topics we write.

        Refuses to be ready while a topic is missing: a broker with ``auto.create.topics.enable``
        would otherwise create it with its default partition count on the first send, and keys
        would land on other partitions than once the catalogue is applied. Listing creates nothing.
        """
        timeout = max(2.0, self._timeout_s)
        meta = client.producer.list_topics(timeout=timeout)
        missing = sorted(set(self._required_topics) - set(meta.topics))
        if missing:
            raise RuntimeError(f"topics missing: {', '.join(missing)} (run `parley topics apply`)")
        return self._max_message_bytes(timeout)

    def _max_message_bytes(self, timeout: float) -> dict[str, int]:
        if not self._required_topics:
            return {}
        admin = AdminClient(self._kafka.librdkafka_config())
        futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t) for t in self._required_topics],
                                         request_timeout=timeout)
        out = {}
        for resource, future in futures.items():
            entry = future.result(timeout=timeout).get("max.message.bytes")
            out[resource.name] = (int(entry.value) if entry is not None and entry.value
                                  else BROKER_DEFAULT_MAX_MESSAGE_BYTES)
        return out

    async def stop(self) -> None:
        """Deliver what is queued (bounded by the deadline) and close."""
        self._closing = True
        for task in (self._connector, self._prober, self._refresher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        c, self._client = self._client, None
        if c is not None:
            await c.drain(self._timeout_s)
            c.close(purge=True)
        self._publish_ready()

    @property
    def timeout_s(self) -> float:
        """How long ``send_all`` waits for Kafka's acknowledgement."""
        return self._timeout_s

    # -- producing ---------------------------------------------------------------------------

    async def send_all(self, records: Sequence[Record]) -> list[Stored]:
        """Produce ``records`` and wait for every ack; ``Unavailable`` or ``TooLarge`` otherwise."""
        return await self.acked(self.submit(records))

    def submit(self, records: Sequence[Record]) -> Sent | None:
        """``send_all``'s first half, synchronous: check the records and hand them to librdkafka
        now (not on a later turn of the loop); ``acked`` waits for them. Raises ``Unavailable``
        or ``TooLarge`` at once; None for no records."""
        c = self._client
        if c is None or c.brokers_down:
            raise Unavailable("not connected to Kafka" if c is None else "all brokers are down")
        for r in records:
            limit = c.limits.get(r.topic, BROKER_DEFAULT_MAX_MESSAGE_BYTES)
            if r.size() > limit:
                raise TooLarge(r, limit)
        if not records:
            return None
        loop = c.loop
        pending = _Pending(loop.create_future(), len(records), loop.time() + self._timeout_s)
        try:
            c.produce(records, pending)
        except BufferError:  # some records of the request may be queued: they must not land
            self._replace(c, "the producer's queue is full")
            raise Unavailable("the producer's queue is full") from None
        except KafkaException as e:
            self._replace(c, f"produce refused: {e}")
            raise Unavailable(f"Kafka error: {e}") from None
        return Sent(c, pending)

    async def acked(self, sent: Sent | None) -> list[Stored]:
        """``send_all``'s second half: where each submitted record is, once Kafka acknowledged all
        of them; ``Unavailable`` otherwise (the producer is replaced if it may be out of step)."""
        if sent is None:
            return []
        c, pending = sent
        await pending.future
        if pending.timed_out:
            self._replace(c, "produce timeout")
            raise Unavailable(f"Kafka did not acknowledge within {self._timeout_s}s") from None
        if pending.error is not None:
            if pending.error.code() not in _PURGED:
                self._replace(c, f"delivery failed: {pending.error.str()}")
            raise Unavailable(f"Kafka error: {pending.error.str()}")
        if c.brokers_down:
            c.brokers_down = False
            self._publish_ready()
        return pending.results  # type: ignore[return-value]  # every slot is set once all are acknowledged

    def _client_error(self, client: _Client, err: KafkaError) -> None:
        """librdkafka's global errors (on the loop): fatal -> replace; all brokers down -> not ready."""
        if client is not self._client:
            return
        if err.fatal():
            self._replace(client, f"fatal: {err.str()}")
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("producer.brokers_down", error=err.str())
            client.brokers_down = True
            self._publish_ready()
            if self._prober is None or self._prober.done():
                self._prober = asyncio.create_task(self._probe(client), name="kafka-probe")

    async def _probe(self, client: _Client) -> None:
        """While every broker is down: ask for metadata every second; an answer means ready again."""
        while client is self._client and client.brokers_down and not self._closing:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(client.producer.list_topics, timeout=1.0)
            except KafkaException:
                continue
            if client is self._client:
                client.brokers_down = False
                log.info("producer.brokers_back")
                self._publish_ready()

    def _replace(self, client: _Client, why: str) -> None:
        """Abandon ``client`` (once, however many requests failed with it) and reconnect."""
        if self._client is not client or self._closing:
            return
        self._client = None
        self._publish_ready()
        log.warning("producer.abandoned", reason=why)
        client.close(purge=True)
        self._connector = asyncio.create_task(self._connect_loop(), name="kafka-reconnect")
