"""``parley egress``: outbound messages from the log to the providers, outcomes back to the log.

Consumes: ``parley.conversations`` (key tenant|customer, read_committed, consumer group
``<prefix>parley-egress``): threaded MessageSent (every author: agents' replies from the agent
API, bots, routing's automation notices) and MessageReceived (they open the windows); the rest
is skipped by its schema id, undecoded. Produces: ``parley.outbound`` (the delivery events,
keyed like the input, so co-partitioned with it) and ``parley.outbound.windows`` (the customers'
recent message times per account).

Delivery, at least once towards providers that have no transactions, with no avoidable repeat:
1. a message whose delivery is final in ``parley.outbound`` is skipped (dedup by event id: the
   partition's delivery events are read back on assignment, over the send horizon);
2. ``plan`` decides, purely: refused (unknown account, bad recipient, template, window, media
   too large) -> OutboundFailed(permanent), or the parts to send;
3. OutboundAttempted is written and acknowledged *before* the call;
4. the call (the account's token bucket first; one call at a time per recipient, in order);
5. OutboundSent (the provider's ids) or OutboundFailed (code, reason; transient ones retried
   with back-off and jitter, or the provider's Retry-After, which also pauses that account);
6. the input offset is committed once every record before it is done.
A kill at any point: attempts without an outcome are *in doubt* and resent, with the same
idempotency keys where the provider takes one (LINE, RBM: then it does not deliver twice);
elsewhere a resend may duplicate: at most the calls in flight at the kill. A stop (SIGTERM)
lets the calls in progress finish first (``drain_s``). A partition moved to another egress on a
rebalance is the same as a kill for the calls in flight on it.
State: ``deliveries`` (message event id -> Delivery, from ``parley.outbound``) and ``windows``
(tenant|channel|account|identity -> recent customer message times; the whole windows topic is
read again at each assignment), in memory. Pacing per account: ``lanes.py``.
Sealed messages (privacy on) are opened only to build the provider's request.
Replay: a MessageSent older than the send horizon (by its recorded_at) is not sent (expired).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from egress import events, windows
from egress.accounts import SendAccounts
from egress.kafka_io import AsyncProducer, Offsets, partitions_of, read_back
from egress.lanes import Job, Lane
from egress.limits import backoff
from egress.model import Refusal, SendAccount
from egress.plan import plan
from egress.providers import PROVIDERS
from egress.providers.base import Result
from egress.sender import Sender
from egress.state import Delivery, fold
from parley import logs
from schemas import topics
from schemas.codec import Codec, DecodeError, codec_for

log = logs.get("egress.runner")
OUTCOMES = frozenset({"OutboundAttempted", "OutboundSent", "OutboundFailed"})
MESSAGES = ("MessageSent", "MessageReceived")  # what it reads of parley.conversations


@dataclass
class Stats:
    read: int = 0
    planned: int = 0
    sent: int = 0
    failed: int = 0
    refused: int = 0
    retried: int = 0
    skipped: int = 0
    in_doubt: int = 0


class Egress:
    def __init__(self, settings: Any, accounts: SendAccounts, *, sender: Sender | None = None,
                 codec: Codec | None = None, rand: random.Random | None = None) -> None:
        self.s, self.accounts = settings, accounts
        k = settings.kafka
        self.codec = codec or codec_for(k)
        self.input = topics.named(k.topic_prefix, topics.CONVERSATIONS)
        self.outbound = topics.named(k.topic_prefix, topics.OUTBOUND)
        self.windows_topic = topics.named(k.topic_prefix, topics.SERVICE_WINDOWS)
        self.sender = sender or Sender(emulator_url=settings.emulator_url, emulator_smtp=settings.emulator_smtp,
                                       timeout_s=settings.call_timeout_s, connections=settings.connections)
        self.rand = rand or random.Random()
        self.deliveries: dict[str, Delivery] = {}
        self.windows: dict[str, tuple[int, ...]] = {}
        self.jobs: dict[str, Job] = {}
        self.lanes: dict[tuple[str, str], Lane] = {}
        self.offsets: dict[int, Offsets] = {}
        self.to_load: list[int] = []
        self.stats = Stats()
        self.consumer: Consumer | None = None
        self.producer: AsyncProducer | None = None
        self.ids = self.codec.ids_of(MESSAGES)  # schema ids of the records it reads (again after prepare)
        self.opener = _opener(settings)
        self._kept = (0, 0)  # sizes of deliveries and windows after the last prune
        self.failure: BaseException | None = None
        self.draining = False

    # --- set-up --------------------------------------------------------------------------------

    def _conf(self, **extra: Any) -> dict[str, Any]:
        return self.s.kafka.librdkafka_config(**extra)

    async def start(self) -> None:
        await self.codec.aprepare((topics.OUTBOUND, topics.SERVICE_WINDOWS))  # registry ids, once
        self.ids = self.codec.ids_of(MESSAGES)
        await self.sender.start()
        self.producer = AsyncProducer(self._conf(**{
            "acks": "all", "enable.idempotence": True, "linger.ms": self.s.linger_ms,
            "partitioner": "murmur2_random"}))
        self.producer.start()
        self.consumer = Consumer(self._conf(**{
            "group.id": f"{self.s.kafka.topic_prefix}{self.s.group_id}", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "fetch.wait.max.ms": self.s.fetch_wait_ms, "max.poll.interval.ms": 600_000,
            "session.timeout.ms": self.s.session_timeout_ms, "partition.assignment.strategy": "range",
            **({"group.instance.id": self.s.instance_id} if self.s.instance_id else {})}))
        self.consumer.subscribe([self.input], on_assign=self._assigned, on_revoke=self._revoked)

    def _running(self) -> tuple[Consumer, AsyncProducer]:
        """The consumer and producer ``start`` made (the loop runs between start and stop)."""
        if self.consumer is None or self.producer is None:
            raise RuntimeError("the egress is not started")
        return self.consumer, self.producer

    def _load_windows(self) -> None:
        parts = partitions_of(self._conf(), self.windows_topic)
        for _, e in read_back(self._conf(), self.windows_topic, parts, None, self.codec, frozenset({"ServiceWindow"})):
            windows.fold(self.windows, e)

    def _assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.to_load += [p.partition for p in parts]
        for p in parts:
            self.offsets[p.partition] = Offsets()
        consumer.assign(parts)
        consumer.pause(parts)  # read nothing before the partition's deliveries are known

    def _revoked(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._commit(sync=True)
        for p in parts:
            self.offsets.pop(p.partition, None)

    def _load_deliveries(self, partitions: list[int]) -> None:
        """On an assignment: the partitions' delivery events, and the windows again (the previous
        owner of a partition wrote its customers' windows before committing their offsets)."""
        t0 = time.perf_counter()
        self._load_windows()
        log.info("egress.windows_loaded", identities=len(self.windows), seconds=round(time.perf_counter() - t0, 2))
        since = int(time.time() * 1000) - int(self.s.send_horizon_s * 1000) - 3_600_000
        n = 0
        for _, e in read_back(self._conf(), self.outbound, partitions, since, self.codec, OUTCOMES):
            eid = e["message_event_id"]
            self.deliveries[eid] = fold(self.deliveries.get(eid), e)
            n += 1
        log.info("egress.deliveries_loaded", partitions=partitions, events=n,
                 in_doubt=sum(1 for d in self.deliveries.values() if d.in_doubt))

    # --- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> Stats:
        await self.start()
        consumer = self._running()[0]
        loop = asyncio.get_running_loop()
        last_commit = last_log = time.monotonic()
        try:
            while not stop.is_set():
                if self.to_load:
                    parts, self.to_load = self.to_load, []
                    await loop.run_in_executor(None, self._load_deliveries, parts)
                    consumer.resume([TopicPartition(self.input, p) for p in parts])
                room = len(self.jobs) < self.s.max_in_flight
                msgs = consumer.consume(self.s.max_batch, timeout=0) if room else []
                for m in msgs:
                    self._record(m)
                now = time.monotonic()
                if now - last_commit >= self.s.commit_interval_ms / 1000:
                    self._commit()
                    last_commit = now
                if now - last_log >= self.s.stats_interval_s:
                    log.info("egress.progress", in_flight=len(self.jobs), **self.stats.__dict__)
                    last_log = now
                    self._prune()
                if not msgs:
                    await asyncio.sleep(self.s.poll_ms / 1000)
                else:
                    await asyncio.sleep(0)
                if self.failure is not None:
                    raise self.failure
            await self._drain()
        finally:
            await self.stop()
        return self.stats

    def _prune(self) -> None:
        """Forget deliveries older than the send horizon (a message that old is not sent again
        anyway) and windows no customer message refreshed in 8 days, once each map has doubled
        since the last pass (the cost is amortised)."""
        if len(self.deliveries) >= max(100_000, 2 * self._kept[0]):
            horizon = int(time.time() * 1000) - int(self.s.send_horizon_s * 1000) - 3_600_000
            self.deliveries = {k: d for k, d in self.deliveries.items() if d.at >= horizon or k in self.jobs}
        if len(self.windows) >= max(100_000, 2 * self._kept[1]):
            latest = max((t[-1] for t in self.windows.values() if t), default=0)
            cut = latest - topics.SERVICE_WINDOWS.retention_ms
            self.windows = {k: t for k, t in self.windows.items() if t and t[-1] >= cut}
        self._kept = (len(self.deliveries), len(self.windows))

    async def _drain(self) -> None:
        """On a stop: let the calls in progress finish (their outcomes written, their offsets
        committed) for up to ``drain_s``; what is still waiting is read again by the next run."""
        deadline = time.monotonic() + self.s.drain_s
        self.draining = True  # start no new call
        while any(j.in_call for j in self.jobs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._commit(sync=True)
        log.info("egress.drained", left=len(self.jobs), in_call=sum(j.in_call for j in self.jobs.values()))

    async def stop(self) -> None:
        for lane in self.lanes.values():
            if lane.task:
                lane.task.cancel()
        if self.producer:
            await self.producer.close()
        if self.consumer:
            self._commit(sync=True)
            self.consumer.close()
            self.consumer = None
        await self.sender.close()

    def _commit(self, sync: bool = False) -> None:
        if self.consumer is None:
            return
        out = []
        for p, o in self.offsets.items():
            point = o.point()
            if point > o.committed and point >= 0:
                out.append(TopicPartition(self.input, p, point))
                o.committed = point
        if out:
            try:
                if sync:
                    self.consumer.commit(offsets=out, asynchronous=False)
                else:
                    self.consumer.commit(offsets=out, asynchronous=True)
            except Exception as e:  # noqa: BLE001 - a failed commit is retried at the next interval
                log.warning("egress.commit_failed", error=str(e))

    # --- one input record --------------------------------------------------------------------

    def _record(self, m: Any) -> None:
        if m.error():
            return
        p, off, value = m.partition(), m.offset(), m.value()
        track = self.offsets.get(p)
        if track is None:
            return
        track.add(off)
        if not self.stats.read:
            log.info("egress.first_record", partition=p, offset=off)
        self.stats.read += 1
        if value is None or len(value) < 5 or int.from_bytes(value[1:5], "big") not in self.ids:
            track.finish(off)  # not a message: skipped undecoded (schema id in the wire header)
            return
        try:
            event = self.codec.decode(value)
        except DecodeError as e:
            log.warning("egress.undecodable", partition=p, offset=off, error=str(e))
            track.finish(off)
            return
        kind = event["envelope"]["event_type"]
        key = m.key() or event["envelope"]["partition_key"].encode()
        try:
            if kind == "MessageReceived":
                self._inbound(event, p, off)
            elif kind == "MessageSent":
                self._outbound(event, key, p, off)
            else:
                track.finish(off)
        except Exception as e:  # noqa: BLE001 - a message that breaks the egress fails alone, visibly
            log.exception("egress.poison", partition=p, offset=off, event_id=event["envelope"]["event_id"])
            if kind == "MessageSent" and event["envelope"]["event_id"] not in self.jobs:
                why = f"the egress could not handle this message ({type(e).__name__}: {e})"
                self._refuse(event, key, p, off, Refusal("internal_error", why), Delivery())
            else:
                track.finish(off)

    def _inbound(self, e: dict[str, Any], p: int, off: int) -> None:
        tenant, channel = e["envelope"]["tenant_id"], e["channel"]
        if not windows.has_window(channel):
            self.offsets[p].finish(off)
            return
        k = topics.SERVICE_WINDOWS.key(tenant, channel, e["channel_account_id"], e["sender"]["id"])
        before = self.windows.get(k, ())
        after = windows.remember(before, e["envelope"]["occurred_at"])
        self.windows[k] = after
        if after == before:
            self.offsets[p].finish(off)
            return
        record = events.window(tenant, channel, e["channel_account_id"], e["sender"]["id"], after, e, k)
        fut = self._running()[1].send(self.windows_topic, k.encode(), self._encode(record, self.windows_topic))
        fut.add_done_callback(lambda f: self._finish([(p, off)]) if not f.exception() else self._fatal(f))

    def _outbound(self, msg: dict[str, Any], key: bytes, p: int, off: int) -> None:
        eid = msg["envelope"]["event_id"]
        done = self.deliveries.get(eid) or Delivery()
        if done.final or msg.get("channel_message_id"):
            self.stats.skipped += 1  # delivered before (dedup), or sent outside Parley (provider id known)
            self.offsets[p].finish(off)
            return
        if eid in self.jobs:
            self.jobs[eid].offsets.append((p, off))  # the same message again while it is being sent
            return
        recorded = msg["envelope"].get("recorded_at")
        now_ms = int(time.time() * 1000)
        if recorded and now_ms - recorded > self.s.send_horizon_s * 1000:
            why = (f"not sent: the egress read it {(now_ms - recorded) // 1000} s after it was written, past the "
                   f"send horizon of {self.s.send_horizon_s} s")
            self._refuse(msg, key, p, off, Refusal("expired", why), done)
            return
        account = self.accounts.find(msg["channel"], msg["channel_account_id"])
        # the window key as the log carries the customer (a token when sealed), like the inbound side
        k = topics.SERVICE_WINDOWS.key(msg["envelope"]["tenant_id"], msg["channel"], msg["channel_account_id"],
                                       str(msg["recipient"].get("id")))
        opened = self._open(msg)
        if isinstance(opened, Refusal):
            self._refuse(msg, key, p, off, opened, done)
            return
        decided = plan(opened, account, self.windows.get(k, ()))
        if isinstance(decided, Refusal):
            self._refuse(msg, key, p, off, decided, done)
            return
        assert account is not None
        # the delivery events are built from ``msg`` as the log has it (sealed: no personal data);
        # the provider's request from the opened one
        job = Job(msg, account, decided, PROVIDERS[account.provider].requests(account, decided, opened), key, done,
                  [(p, off)])
        self.jobs[eid] = job
        self.stats.planned += 1
        self._lane(account).add(job)

    def _open(self, msg: dict[str, Any]) -> dict[str, Any] | Refusal:
        """``msg`` with its sealed fields opened (``parley/privacy``), or why it cannot be sent."""
        if not msg.get("privacy"):
            return msg
        if self.opener is None:
            return Refusal("sealed", "the message is sealed and the egress holds no privacy keys "
                                     "(PARLEY_PRIVACY__MASTER_KEY): it cannot be sent")
        opened = self.opener.open(msg)
        marks = opened.get("_privacy") or {}
        if marks.get("identity") != "open" or marks.get("content") != "open":
            return Refusal("erased", "not sent: the customer's data was erased or has expired "
                                     f"(identity {marks.get('identity')}, content {marks.get('content')})")
        return opened

    def _refuse(self, msg: dict[str, Any], key: bytes, p: int, off: int, r: Refusal, done: Delivery) -> None:
        self.stats.refused += 1
        log.info("egress.refused", event_id=msg["envelope"]["event_id"], code=r.code, reason=r.reason)
        e = events.failed(msg, done.attempts, r.code, r.reason, permanent=True, final=True, key=key.decode(),
                          now_ms=int(time.time() * 1000), decision=r.decision)
        fut = self._emit(e, key)
        fut.add_done_callback(lambda f: self._finish([(p, off)]) if not f.exception() else self._fatal(f))

    def _emit(self, event: dict[str, Any], key: bytes) -> asyncio.Future:
        eid = event["message_event_id"]
        self.deliveries[eid] = fold(self.deliveries.get(eid), event)
        return self._running()[1].send(self.outbound, key, self._encode(event, self.outbound))

    def _encode(self, event: dict[str, Any], topic: str) -> bytes:
        return self.codec.encode(event, topic)  # the codec's compiled writer for the type

    def _finish(self, offsets: list[tuple[int, int]]) -> None:
        for p, off in offsets:
            track = self.offsets.get(p)
            if track is not None:
                track.finish(off)

    def _fatal(self, fut: asyncio.Future | None = None, error: BaseException | None = None) -> None:
        """A record Kafka did not take (librdkafka retried it for message.timeout.ms) or a bug:
        the process stops; its uncommitted offsets are read again by the next run."""
        self.failure = self.failure or error or (fut.exception() if fut is not None else None) or RuntimeError("fatal")
        log.error("egress.fatal", error=str(self.failure))

    # --- lanes: per-account dispatch ---------------------------------------------------------

    def _lane(self, account: SendAccount) -> Lane:
        k = (account.provider, account.account_id)
        lane = self.lanes.get(k)
        if lane is None:
            lane = self.lanes[k] = Lane(account, self.s.account_concurrency)
            lane.task = asyncio.get_running_loop().create_task(self._dispatch(lane))
        return lane

    async def _dispatch(self, lane: Lane) -> None:
        while True:
            job = lane.take() if not self.draining else None
            if job is None:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            await lane.bucket.take()
            await lane.acquire()
            asyncio.get_running_loop().create_task(self._deliver(lane, job))

    async def _deliver(self, lane: Lane, job: Job) -> None:
        try:
            await self._attempts(lane, job)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - Kafka refused a delivery event: stop, a restart redoes it
            log.exception("egress.delivery_error", event_id=job.msg["envelope"]["event_id"])
            self._fatal(error=e)
        finally:
            lane.release()
            lane.done(job)
            self.jobs.pop(job.msg["envelope"]["event_id"], None)

    async def _attempts(self, lane: Lane, job: Job) -> None:
        key = job.key.decode()
        attempt = job.done.attempts
        in_doubt = job.done.in_doubt
        if in_doubt:
            self.stats.in_doubt += 1
        while True:
            attempt += 1
            job.in_call = True
            await self._emit(events.attempted(job.msg, job.plan, attempt, in_doubt, key, _ms()), job.key)
            result = await self._calls(job)
            if result.ok:
                await self._emit(events.sent(job.msg, job.plan, attempt, job.ids, job.duplicate, key, _ms()), job.key)
                job.in_call = False
                lane.succeeded()
                self.stats.sent += 1
                break
            final = result.permanent or attempt >= self.s.max_attempts
            delay = backoff(attempt, result.retry_after_s, self.rand.random(), self.s.backoff_base_s,
                            self.s.backoff_max_s)
            retry_at = None if final else _ms() + int(delay * 1000)
            await self._emit(events.failed(job.msg, attempt, result.code, result.reason, permanent=result.permanent,
                                           final=final, key=key, now_ms=_ms(), http_status=result.http_status,
                                           retry_at=retry_at, decision=job.plan.decision), job.key)
            job.in_call = False
            if final:
                self.stats.failed += 1
                log.info("egress.failed", event_id=job.msg["envelope"]["event_id"], code=result.code,
                         reason=result.reason)
                break
            self.stats.retried += 1
            in_doubt = False
            if result.retry_after_s is not None or result.code in ("429", "RESOURCE_EXHAUSTED"):
                lane.bucket.block(delay)  # the provider throttles the account: every call of it waits
                lane.throttled()
            lane.release()
            try:
                await asyncio.sleep(delay)
                await lane.bucket.take()
                while self.draining:  # a stop: the next run retries it (its attempts are on the log)
                    await asyncio.sleep(3600)
            finally:
                await lane.acquire()
        self._finish(job.offsets)

    async def _calls(self, job: Job) -> Result:
        """The job's remaining calls in order; the first failure stops them (a retry resumes there)."""
        result = Result(True)
        while job.next_call < len(job.calls):
            call = job.calls[job.next_call]
            result = await self.sender.call(job.account, call)
            if not result.ok:
                return result
            job.ids += [i for i in result.ids if i]
            job.duplicate = job.duplicate or result.duplicate
            job.next_call += 1
        return Result(True, tuple(job.ids), duplicate=job.duplicate)


def _opener(settings: Any) -> Any:
    """An opener of sealed messages when the settings hold a privacy master key, else None."""
    privacy = getattr(settings, "privacy", None)
    if privacy is None or getattr(privacy, "master_key", None) is None:
        return None
    from parley.privacy.keyring import keyring_from
    from parley.privacy.seal import Opener

    keyring = keyring_from(privacy)
    return Opener(keyring) if keyring is not None else None


def _ms() -> int:
    return int(time.time() * 1000)


async def arun(settings: Any, accounts: SendAccounts, stop: asyncio.Event, *, hub: Any = None) -> Stats:
    sender = Sender(emulator_url=settings.emulator_url, emulator_smtp=settings.emulator_smtp,
                    timeout_s=settings.call_timeout_s, connections=settings.connections, hub=hub)
    return await Egress(settings, accounts, sender=sender).run(stop)

