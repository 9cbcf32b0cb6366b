"""The Kafka side of the stream runtime: one consumer, one transactional producer, one loop.

Each turn of the loop reads a batch from the assigned input partitions, feeds the records to
their tasks, advances every task to its input watermark (which releases held records and fires
timers), and collects what the tasks did. What was collected is written in **one Kafka
transaction**: the tasks' outputs, their stores' changelog records, their published watermarks
and the consumer offsets. A crash anywhere aborts the
transaction: outputs, state changes and offsets are all or nothing (exactly-once; readers of the
outputs use ``read_committed``). ``processing_guarantee="at_least_once"`` writes the same
records without a transaction (outputs and changelogs acknowledged, then offsets committed): a
crash may then repeat outputs, under the same ids.

Group membership: the consumer joins ``<prefix><app_id>`` with the ``range`` assignor, so a
stage's co-partitioned inputs land on the same worker; with ``instance_id`` set, membership is
static (a restarted worker takes its partitions back at once, no rebalance) and the
transactional id is stable (its restart fences its predecessor's open transaction). Tasks are
created on assignment, their stores restored from their stage's changelogs, and dropped on
revocation. A stage has one compacted changelog, ``<prefix><app_id>-<stage>-state-changelog``,
and, if some of its stores forget keys by age, ``...-recent-changelog`` (compact and delete by
retention); a record's key is ``<store>\0<key>``. Few topics: a transaction's cost grows with
the partitions it writes (the coordinator writes a commit marker into each).

A transaction is committed in a background thread while the loop reads and decides the next
batch (the commit's round trips are waits, not work); one at a time: batches collected while it
commits go into the next, begun at most every ``commit_interval_ms``. Watermarks go through
``<prefix><app_id>-watermarks`` (one partition, compacted, key = task id): each task's
watermark, idle flag and the end offsets of
what it wrote to sequenced topics. A watermark computed in a transaction is published in the
next one, when the end offsets of the first are known (acknowledged at its commit), so a reader
never uses a watermark before it has read the data it covers; the tasks of this process use it
as soon as the first commits. Every worker reads the whole topic.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from parley import gc_tuning, logs, processes
from parley.settings import WorkerSettings
from schemas import topics
from schemas.codec import codec_for
from streams.runtime.stage import Stage
from streams.runtime.task import Env, Output, Record, Task, Upstream, wake

log = logs.get("streams.worker")
ORIGIN = "pt"  # header naming the task that produced a record
_INTERNAL = {t.name: t for t in topics.INTERNAL}


@dataclass(frozen=True)
class Names:
    """Real topic names: catalogue topics with the prefix, internal ones with the app id too."""

    prefix: str
    app_id: str

    def topic(self, name: str) -> str:
        t = _INTERNAL.get(name)
        if t is not None:
            return topics.internal_name(self.prefix, self.app_id, t)
        return f"{self.prefix}{name}"

    def changelog(self, stage: str, kind: str) -> str:
        """``kind``: "state" (compacted) or "recent" (stores that forget by age)."""
        return f"{self.prefix}{self.app_id}-{stage}-{kind}-changelog"

    def watermarks(self) -> str:
        return f"{self.prefix}{self.app_id}-watermarks"

    @property
    def group(self) -> str:
        return f"{self.prefix}{self.app_id}"


@dataclass
class Stats:
    """Counters since start, logged every ``interval`` seconds."""

    records: int = 0
    transactions: int = 0
    commit_s: float = 0.0
    per_stage: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))


class Worker:
    """Runs ``stages`` on the partitions the group assigns to this process."""

    def __init__(self, settings: WorkerSettings, stages: list[Stage]) -> None:
        self.settings = settings
        self.stages = {s.name: s for s in stages}
        k = settings.kafka
        self.names = Names(k.topic_prefix, settings.app_id)
        self.codec = codec_for(k)
        from streams.topology import upstream

        self.env = Env(self.codec, upstream(stages), settings.lateness_ms, settings.idle_ms, clock=time.monotonic)
        self.readers = {i.topic.name: s for s in stages for i in s.inputs}
        self._kinds = {s.name: {**{spec.name: "recent" if spec.retention_ms else "state" for spec in s.stores},
                                "_meta": "state"} for s in stages}
        self.real = {self.names.topic(name): name for name in self.readers}
        self.watched = {i.topic.name for s in stages for i in s.inputs if i.sequenced}
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        self.instance = settings.instance_id or f"dyn-{uuid.uuid4().hex[:8]}"
        self.tasks: dict[str, Task] = {}
        self.table: dict[str, Upstream] = {}
        self.ends: dict[str, dict[str, int]] = defaultdict(dict)
        self.published: dict[str, Any] = {}  # task id -> what was last published for it
        self._marks: dict[str, tuple[int, bool]] = {}  # task id -> its latest output watermark
        self._unpublished: set[str] = set()  # own tasks whose committed watermark is not published yet
        self._offsets: dict[tuple[str, int], int] = {}  # offsets to commit with the next transaction
        self._pending: list[Any] = []  # batches collected for the next transaction
        self._dirty = False  # something to commit
        self._began = 0.0  # when the last transaction began
        self._inflight: threading.Thread | None = None  # the transaction being committed
        self._inflight_error: KafkaException | None = None
        self._inflight_started = 0.0
        self._txn_marks: dict[str, tuple[int, bool]] = {}
        self._route: dict[tuple[str, int], Any] = {}  # (topic, partition) -> (name, task, clock)
        self._tps: dict[tuple[str, int], TopicPartition] = {}  # (topic name, partition) -> its TopicPartition
        self.stats = Stats()
        self.stopping = False
        self._delivery_error: KafkaError | None = None
        self._callbacks: dict[str, Any] = {}

    # --- set-up ------------------------------------------------------------------------------

    def declare_topics(self) -> list[str]:
        """Create the internal topics, changelogs and the watermarks topic (idempotent)."""
        k = self.settings.kafka
        admin = AdminClient(k.librdkafka_config())
        wanted: dict[str, NewTopic] = {}
        for t in topics.INTERNAL:
            wanted[self.names.topic(t.name)] = NewTopic(self.names.topic(t.name), t.partitions, k.replication_factor,
                                                        config=t.configs())
        for s in self.stages.values():
            name = self.names.changelog(s.name, "state")
            wanted[name] = NewTopic(name, s.partitions, k.replication_factor,
                                    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
                                            "max.message.bytes": str(topics.STATE_MAX_BYTES)})
            retention = max((spec.retention_ms or 0 for spec in s.stores), default=0)
            if retention:
                name = self.names.changelog(s.name, "recent")
                wanted[name] = NewTopic(name, s.partitions, k.replication_factor,
                                        config={"cleanup.policy": "compact,delete", "retention.ms": str(retention),
                                                "max.message.bytes": str(topics.STATE_MAX_BYTES)})
        wanted[self.names.watermarks()] = NewTopic(self.names.watermarks(), 1, k.replication_factor,
                                                   config={"cleanup.policy": "compact", "segment.ms": "600000"})
        existing = set(admin.list_topics(timeout=30).topics)
        missing = [t for name, t in wanted.items() if name not in existing]
        if missing:
            for fut in admin.create_topics(missing, request_timeout=30).values():
                try:
                    fut.result()
                except KafkaException as e:
                    if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
        _until_visible(admin, list(wanted))
        return sorted(wanted)

    def _consumer_config(self) -> dict[str, Any]:
        conf = self.settings.kafka.librdkafka_config(**{
            "group.id": self.names.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "range",
            "enable.partition.eof": True,
            "session.timeout.ms": self.settings.session_timeout_ms,
            "max.poll.interval.ms": 600_000,
            "fetch.wait.max.ms": self.settings.fetch_wait_ms,
            "queued.max.messages.kbytes": 65536,
        })
        if self.settings.instance_id:
            conf["group.instance.id"] = self.settings.instance_id
        return conf

    def _producer_config(self) -> dict[str, Any]:
        conf = self.settings.kafka.librdkafka_config(**{
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": self.settings.linger_ms,
            "batch.num.messages": 10_000,
            "partitioner": "murmur2_random",  # Java's and aiokafka's default: keys land alike
            # the broker answers CONCURRENT_TRANSACTIONS while a transaction's partitions are being
            # added; at the default 100 ms back-off every commit would wait that long
            "retry.backoff.ms": 5,
            "message.max.bytes": topics.RAW_MAX_BYTES + 1024 * 1024,
        })
        if self.exactly_once:
            conf["transactional.id"] = f"{self.names.group}-{self.instance}"
            conf["transaction.timeout.ms"] = 60_000
        return conf

    def _side_consumer(self, **extra: Any) -> Consumer:
        return Consumer(self.settings.kafka.librdkafka_config(**{
            "group.id": f"{self.names.group}-side-{self.instance}", "enable.auto.commit": False,
            "isolation.level": "read_committed", "enable.partition.eof": True, **extra}))

    # --- the loop ----------------------------------------------------------------------------

    def run(self, *, max_seconds: float | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``max_seconds``); commits what it did, then leaves."""
        self.declare_topics()
        self.codec.prepare({t for s in self.stages.values() for t in s.outputs})  # registry ids, once
        self.producer = Producer(self._producer_config())
        if self.exactly_once:
            self.producer.init_transactions(60)
        self.wm_reader = self._side_consumer()
        self.wm_reader.assign([TopicPartition(self.names.watermarks(), 0, OFFSET_BEGINNING)])
        self.consumer = Consumer(self._consumer_config())
        self.consumer.subscribe(sorted(self.real), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, self._stop)
            except ValueError:  # not the main thread (tests run the worker in a thread)
                pass
        log.info("worker.started", instance=self.instance, group=self.names.group,
                 guarantee=self.settings.processing_guarantee, stages=sorted(self.stages))
        deadline = time.monotonic() + max_seconds if max_seconds else None
        last_log = time.monotonic()
        try:
            while not self.stopping and (deadline is None or time.monotonic() < deadline):
                self.turn()
                if time.monotonic() - last_log >= self.settings.stats_interval_s:
                    self._log_stats()
                    last_log = time.monotonic()
            self.turn(poll_s=0)
        finally:
            self.close()

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def stop(self) -> None:
        self.stopping = True

    def turn(self, poll_s: float | None = None) -> None:
        """One batch: read, feed, advance, write into the open transaction; commit it when it
        is ``commit_interval_ms`` old (or the worker stops)."""
        timeout = self.settings.poll_ms / 1000 if poll_s is None else poll_s
        msgs = self.consumer.consume(self.settings.max_batch, timeout)
        now = time.monotonic()
        self._read_watermarks()
        fed = 0
        woken: set[Task] = set()  # tasks that read records (or have some waiting)
        outside: set[Task] = set()  # tasks that read records from outside the runtime
        route = self._route
        for m in msgs:
            err, topic, partition = m.error(), m.topic(), m.partition()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF and topic is not None and partition is not None:
                    task = self._task_for(topic, partition)
                    if task is not None:
                        name = self.real[topic]
                        task.clocks[name].caught_up = True
                        end = m.offset()
                        if end is not None and end > 0:
                            task.books[name].read_to(end)  # past an aborted tail: nothing more to read there
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("worker.consume_error", error=str(err))
                continue
            offset = m.offset()
            assert topic is not None and partition is not None and offset is not None  # a record has its place
            where = (topic, partition)
            target = route.get(where)
            if target is None:
                task = self._task_for(*where)
                if task is None:
                    continue  # revoked in this very call
                target = route[where] = (self.real[where[0]], task, task.clocks[self.real[where[0]]])
            name, task, clock = target
            clock.caught_up = False
            headers = m.headers()  # the runtime sets "pt" (the producing task); the ingress sets others
            origin = _origin(headers) if isinstance(headers, list) else None
            task.feed(Record(name, partition, offset, m.key(), m.value(), origin), now)
            fed += 1
            woken.add(task)
            if origin is None:
                outside.add(task)
        self._still_queued(woken)
        wake(self.table, woken, outside, self.tasks.values(), now)
        for task in self.tasks.values():
            task.advance(self.table, now)
        self.stats.records += fed
        try:
            self._collect(fed)
            self._commit_if_due(force=self.stopping or poll_s == 0)
        except KafkaException as e:
            self._recover(e)

    def _still_queued(self, woken: set[Task]) -> None:
        """Inputs that reached their end once but have records fetched and not yet handed out
        (the consumer hands out ``max_batch`` at a time, partitions unevenly): not caught up,
        and their task is awake. Idle otherwise, the task would let its readers' event time
        run past records that are already here (they would then come late). The cached high
        watermark also counts a transaction still open: such a partition is not caught up
        either until it commits (or aborts), which errs on the side of holding."""
        for task in self.tasks.values():
            for name, clock in task.clocks.items():
                if not clock.caught_up:
                    continue
                tp = self._tps.get((name, task.partition))
                if tp is None:
                    tp = self._tps[(name, task.partition)] = TopicPartition(self.names.topic(name), task.partition)
                if self.consumer.get_watermark_offsets(tp, cached=True)[1] > task.books[name].next:
                    clock.caught_up = False
                    woken.add(task)

    def _task_for(self, real_topic: str, partition: int) -> Task | None:
        name = self.real.get(real_topic)
        return None if name is None else self.tasks.get(f"{self.readers[name].name}/{partition}")

    # --- transactions ------------------------------------------------------------------------

    def _collect(self, fed: int) -> None:
        """Take every task's outputs, changelog records and offsets since the last turn; they
        go into the next transaction."""
        batch = [(task, *task.finish()) for task in self.tasks.values()]
        marks = {t.id: t.output_watermark() for t in self.tasks.values()}
        changed = any(self._marks.get(tid) != mark for tid, mark in marks.items())
        self._marks.update(marks)
        if fed or changed or any(o or c for _, o, c, _ in batch):
            self._pending.extend(b for b in batch if b[1] or b[2] or b[3])
            self._dirty = True

    def _commit_if_due(self, force: bool = False) -> None:
        """Begin a transaction with what was collected and commit it in the background, so the
        next batch is read and decided while the broker commits (the commit's round trips are
        waits, not work). One transaction at a time: while one commits, batches accumulate."""
        if self._inflight is not None:
            if self._inflight.is_alive() and not force:
                return
            self._finish_commit()
        if not (self._dirty or self._unpublished):
            return
        now = time.monotonic()
        if not force and now - self._began < self.settings.commit_interval_ms / 1000:
            return
        if self.exactly_once:
            self.producer.begin_transaction()
        self._began = now
        self._publish_watermarks()
        pending, self._pending, self._dirty = self._pending, [], False
        self._produce(pending)
        for task, _, _, offsets in pending:
            for name, off in offsets.items():
                self._offsets[(self.names.topic(name), task.partition)] = off
        offsets = [TopicPartition(t, p, off) for (t, p), off in self._offsets.items()]
        self._offsets.clear()
        self._txn_marks = {tid: m for tid, m in self._marks.items() if tid in self.tasks}
        group = self.consumer.consumer_group_metadata() if self.exactly_once else None
        self._inflight_error = None
        self._inflight = threading.Thread(target=self._commit, args=(offsets, group), daemon=True)
        self._inflight_started = time.perf_counter()
        self._inflight.start()
        if force:
            self._finish_commit()

    def _commit(self, offsets: list[TopicPartition], group: Any) -> None:
        """In the background: commit the transaction with the offsets."""
        try:
            if self.exactly_once:
                if offsets:
                    self.producer.send_offsets_to_transaction(offsets, group, 30)
                if self.settings.crash_before_commit == self.stats.transactions + 1:
                    self.producer.flush(30)  # written, not committed: what a crash here must not lose
                    os.kill(os.getpid(), signal.SIGKILL)
                self.producer.commit_transaction(60)
            else:
                self.producer.flush(60)
                self._check_delivery()
                if offsets:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            self._inflight_error = e

    def _finish_commit(self) -> None:
        """Once committed: the watermarks computed for its data are final for this process's
        tasks, and go to the other workers with the next transaction (their end offsets are
        known now that this one's data is acknowledged)."""
        assert self._inflight is not None
        self._inflight.join()
        self._inflight = None
        if self._inflight_error is not None:
            err, self._inflight_error = self._inflight_error, None
            raise err
        self._check_delivery()
        for tid, (w, idle) in self._txn_marks.items():
            if tid in self.tasks:
                # idle when the transaction began, but it may have read records since: then it
                # is not idle now, and must not say so until a later mark does
                still = idle and self._marks.get(tid, (w, idle))[1]
                up = self.table[tid] = Upstream(w, still, dict(self.ends[tid]))
                if self.published.get(tid) != _signature(up):  # else no transaction just to say it again
                    self._unpublished.add(tid)
        self.stats.transactions += 1
        self.stats.commit_s += time.perf_counter() - self._inflight_started
        for task in self.tasks.values():
            counts = self.stats.per_stage[task.stage.name]
            for k, v in task.counts.items():
                counts[k] += v
                task.counts[k] = 0

    def _produce(self, batch: Iterable[tuple[Task, list[Output], list, dict]]) -> None:
        produce = self.producer.produce
        for task, outs, changes, _ in batch:
            headers = [(ORIGIN, task.id.encode())]
            cb = self._callback(task.id)
            for out in outs:
                real = self.names.topic(out.topic)
                if out.topic in self.watched:
                    self._produce_one(produce, real, out.key, out.value, headers, cb)
                else:
                    self._produce_one(produce, real, out.key, out.value, headers, None)
            stage = task.stage.name
            kinds = self._kinds[stage]
            for store, key, value in changes:
                self._produce_one(produce, self.names.changelog(stage, kinds[store]), store.encode() + b"\0" + key,
                                  value, None, None, partition=task.partition)

    def _produce_one(self, produce: Any, topic: str, key: bytes, value: bytes | None, headers: Any,
                     cb: Any, partition: int = -1) -> None:
        while True:
            try:
                if cb is None:
                    produce(topic, value, key, partition=partition, headers=headers,
                            on_delivery=self._on_error)
                else:
                    produce(topic, value, key, partition=partition, headers=headers, on_delivery=cb)
                return
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let deliveries drain

    def _callback(self, task_id: str) -> Any:
        cb = self._callbacks.get(task_id)
        if cb is None:
            ends = self.ends[task_id]
            real = {self.names.topic(name): name for name in self.watched}

            def cb(err: KafkaError | None, msg: Any) -> None:
                if err is not None:
                    self._delivery_error = err
                    return
                key = f"{real[msg.topic()]}/{msg.partition()}"
                end = msg.offset() + 1
                if end > ends.get(key, 0):
                    ends[key] = end

            self._callbacks[task_id] = cb
        return cb

    def _on_error(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._delivery_error = err

    def _check_delivery(self) -> None:
        if self._delivery_error is not None:
            err, self._delivery_error = self._delivery_error, None
            raise KafkaException(err)

    def _publish_watermarks(self) -> None:
        """Into the transaction just opened: what the last commit made final."""
        topic = self.names.watermarks()
        for tid in sorted(self._unpublished):
            up = self.table.get(tid)
            if up is None or tid not in self.tasks:
                continue
            sig = _signature(up)
            if self.published.get(tid) != sig:
                self.producer.produce(topic, orjson.dumps({"w": up.watermark, "idle": up.idle, "ends": up.ends}),
                                      tid.encode(), on_delivery=self._on_error)
                self.published[tid] = sig
        self._unpublished.clear()

    def _read_watermarks(self) -> None:
        for m in self.wm_reader.consume(10_000, 0):
            key, value = m.key(), m.value()
            if m.error() is not None or key is None or value is None:
                continue
            tid = key.decode()
            if tid in self.tasks:
                continue  # our own: the table already has it
            d = orjson.loads(value)
            self.table[tid] = Upstream(d["w"], d["idle"], d["ends"])

    def _abandon(self) -> None:
        """Drop what was not committed: the transaction (aborted), the batches collected for
        the next one and the offsets; the tasks will redo it from the committed offsets."""
        if self._inflight is not None:
            self._inflight.join()
            self._inflight, self._inflight_error = None, None
        self._offsets.clear()
        self._pending, self._dirty = [], False
        self._marks.clear()
        if self.exactly_once:
            try:
                self.producer.abort_transaction(30)
            except KafkaException as abort_error:
                if not _no_transaction(abort_error):
                    log.error("worker.abort_failed", error=str(abort_error))
                    raise
                # it failed before one began (or was aborted already): nothing to abort

    def _recover(self, e: KafkaException) -> None:
        """A transaction failed: abort it, forget the tasks' memory, restart them from their
        changelogs and the committed offsets. A fenced producer (another instance with our
        transactional id) cannot go on: stop."""
        err = e.args[0] if e.args else None
        log.error("worker.transaction_failed", error=str(e))
        if isinstance(err, KafkaError) and err.fatal():
            raise e
        self._abandon()
        assigned = self.consumer.assignment()
        self._on_revoke(self.consumer, assigned)
        self._on_assign(self.consumer, assigned)
        committed = self.consumer.committed(assigned, timeout=30)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    # --- assignment --------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        t0 = time.monotonic()
        self._route.clear()
        wanted: dict[str, list[TopicPartition]] = defaultdict(list)
        for tp in partitions:
            name = self.real[tp.topic]
            wanted[f"{self.readers[name].name}/{tp.partition}"].append(tp)
        new = [tid for tid in wanted if tid not in self.tasks]
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in consumer.committed([tp for tid in new for tp in wanted[tid]], timeout=30)}
        self._read_watermarks()
        tasks = []
        for tid in new:
            stage_name, p = tid.rsplit("/", 1)
            tasks.append(Task(self.stages[stage_name], int(p), self.env))
        self._restore(tasks)
        log_ends = self._log_ends(tasks)
        for task in tasks:
            offsets = {self.real[tp.topic]: max(committed[(tp.topic, tp.partition)], 0) for tp in wanted[task.id]}
            task.start(offsets, time.monotonic())
            self.ends[task.id].update(log_ends.get(task.stage.name, {}))
            # what its predecessor published may say idle; a task just started is not (it has
            # not read its input yet): active at what it has released, and published so
            up = self.table.get(task.id)
            w = task.seq.frontier if up is None else min(up.watermark, task.seq.frontier)
            self.table[task.id] = Upstream(w, False, dict(self.ends[task.id]))
            self._unpublished.add(task.id)
            self.tasks[task.id] = task
        log.info("worker.assigned", tasks=len(new), total=len(self.tasks),
                 restore_s=round(time.monotonic() - t0, 3))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # What the tasks did since the last commit is committed now, while this member still
        # owns their partitions: the next owner starts from these offsets and this state. Left
        # for later, it would be committed after the next owner had started from the older
        # offsets, and both would write the same outputs.
        try:
            if self._inflight is not None:
                self._finish_commit()
            if self._dirty or self._pending:
                self._commit_if_due(force=True)
        except KafkaException as e:
            log.error("worker.commit_failed_on_revoke", error=str(e))
            self._abandon()
        self._route.clear()
        gone = {f"{self.readers[self.real[tp.topic]].name}/{tp.partition}" for tp in partitions}
        for tid in gone:
            self.tasks.pop(tid, None)
            self.published.pop(tid, None)
            self._marks.pop(tid, None)
            self.ends.pop(tid, None)  # the next owner's published ends supersede these
            self._callbacks.pop(tid, None)
        if gone:
            log.info("worker.revoked", tasks=len(gone), total=len(self.tasks))

    def _log_ends(self, tasks: list[Task]) -> dict[str, dict[str, int]]:
        """Per stage of these new tasks: the end offset of every partition of the sequenced
        topics it writes ("topic/partition" -> offset), as the log has it now.

        A task's watermark is usable downstream only once its data is read up to the ends
        published with it. A new owner of a task (after a kill, or a rebalance) cannot know
        where its predecessor's data ends: the predecessor's last ends are published one
        transaction late, or never (a kill). So its first ends are the log's: the predecessor
        can no longer write (fenced), so everything it wrote lies before them. Readers reach
        them at worst at the partition's end (``OffsetBook.read_to`` on end of partition)."""
        writes = {t.stage.name: {o.name for o in t.stage.outputs} & self.watched for t in tasks}
        written = set().union(*writes.values())
        if not written:
            return {}
        reader = self._side_consumer()
        try:
            md = reader.list_topics(timeout=30)
            end: dict[str, int] = {}
            for name in sorted(written):
                real = self.names.topic(name)
                for p in sorted(md.topics[real].partitions):
                    end[f"{name}/{p}"] = _watermark_offsets(reader, TopicPartition(real, p))[1]
        finally:
            reader.close()
        return {stage: {k: v for k, v in end.items() if k.rsplit("/", 1)[0] in names}
                for stage, names in writes.items()}

    def _restore(self, tasks: list[Task]) -> None:
        """Read the tasks' changelog partitions from the start into their stores, all at once."""
        if not tasks:
            return
        stores = {}
        for task in tasks:
            for kind in set(self._kinds[task.stage.name].values()):
                stores[(self.names.changelog(task.stage.name, kind), task.partition)] = task.all_stores()
        reader = self._side_consumer()
        try:
            ends = {}
            for topic, p in sorted(stores):
                lo, hi = _watermark_offsets(reader, TopicPartition(topic, p))
                if hi > lo:
                    ends[(topic, p)] = hi
            if not ends:
                return
            reader.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
            done: set[tuple[str, int]] = set()
            while len(done) < len(ends):
                for m in reader.consume(10_000, 1.0):
                    err, name, partition = m.error(), m.topic(), m.partition()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF and name is not None and partition is not None:
                            done.add((name, partition))
                        continue
                    offset, full_key = m.offset(), m.key()
                    assert name is not None and partition is not None and offset is not None  # a record's place
                    assert full_key is not None  # changelog records are keyed
                    tp = (name, partition)
                    store, _, key = full_key.partition(b"\0")
                    stores[tp][store.decode()].restore(key, m.value())
                    if offset + 1 >= ends[tp]:
                        done.add(tp)
        finally:
            reader.close()

    # --- end -----------------------------------------------------------------------------------

    def _log_stats(self) -> None:
        s = self.stats
        log.info("worker.stats", records=s.records, transactions=s.transactions,
                 commit_ms=round(1000 * s.commit_s / max(1, s.transactions), 2),
                 held=sum(len(t.seq) for t in self.tasks.values()),
                 stages={k: dict(v) for k, v in s.per_stage.items()})

    def close(self) -> None:
        try:
            self.consumer.close()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.wm_reader.close()
        except Exception:  # noqa: BLE001
            pass
        self.producer.flush(10)
        log.info("worker.stopped", records=self.stats.records, transactions=self.stats.transactions)


# The commit thread's flush (at-least-once) serves the producer's delivery reports (a Python
# callback per record, each taking the GIL) while the main thread decides the next batch. At
# CPython's default 5 ms switch interval the commit thread waits up to 5 ms for each hand-over,
# and an at-least-once flush of a few thousand records took most of a second: the next
# transaction, and the watermarks it publishes, waited for it. At 1 ms: at-least-once 1,586-1,709
# msg/s instead of 1,199-1,296 in the same runs (exactly-once unchanged, 1,608-1,636), `parley
# bench streams --messages 20000 --guarantees at_least_once,exactly_once`. The interval only
# matters while a thread waits.
GIL_SWITCH_S = 0.001

_NOT_READY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION}


def _origin(headers: list[tuple[str, str | bytes | None]]) -> str | None:
    """The producing task of a record of the runtime; None for a record from outside (the
    ingress's ``event_type`` header is not an origin)."""
    for name, value in headers:
        if name == ORIGIN:
            return value.decode() if isinstance(value, bytes) else value
    return None


def _signature(up: Upstream) -> tuple[int, bool, tuple[tuple[str, int], ...]]:
    """What a published mark says, to compare with the last one published."""
    return up.watermark, up.idle, tuple(sorted(up.ends.items()))


def _watermark_offsets(consumer: Consumer, tp: TopicPartition, timeout_s: float = 30.0) -> tuple[int, int]:
    """(low, high) offsets, retried while a new partition has no leader yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException as e:
            code = e.args[0].code()
            if time.monotonic() > deadline or not (e.args[0].retriable() or code in _NOT_READY):
                raise
            time.sleep(0.2)


def _until_visible(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10)
        missing = [n for n in names if n not in md.topics or md.topics[n].error is not None
                   or any(p.leader < 0 for p in md.topics[n].partitions.values())]
        if not missing:
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics not visible after {timeout_s}s: {missing[:5]}")


def run(settings: WorkerSettings, stages: list[Stage] | None = None) -> None:
    """`parley worker`: apply the topic catalogue (if enabled), then run until stopped; with
    ``processes`` > 1, that many copies, each a member of the group with its own partitions."""
    logs.configure(settings.log, service="worker")
    log.info("worker.starting", settings=settings.safe_dict())
    if settings.apply_topics:
        import asyncio

        from parley import topics_admin

        for line in asyncio.run(topics_admin.apply(settings.kafka)):
            log.debug("worker.topic", line=line)
    if settings.processes <= 1:
        run_one(settings, stages)
        return
    if stages is not None:
        raise ValueError("with several processes each builds its stages from the settings")
    copies = [(settings.model_copy(update={"processes": 1, "apply_topics": False,
                                           "instance_id": copy_id(settings.instance_id, i)}),)
              for i in range(settings.processes)]
    code = processes.supervise("worker", run_one, copies, restart=True)
    if code:
        raise SystemExit(code)


def run_one(settings: WorkerSettings, stages: list[Stage] | None = None) -> None:
    """One process of the worker."""
    logs.configure(settings.log, service="worker")
    if stages is None:
        from streams import topology

        stages = topology.build(settings)
    gc_tuning.tune()  # decoded events are many and short-lived: fewer young collections
    sys.setswitchinterval(GIL_SWITCH_S)
    Worker(settings, stages).run()


def copy_id(instance_id: str | None, i: int) -> str | None:
    """The static member id of the worker's ``i``-th process (None: dynamic membership)."""
    return None if instance_id is None else f"{instance_id}-{i}"


def _no_transaction(e: KafkaException) -> bool:
    """An abort refused because no transaction is open (the producer is in state Ready)."""
    err = e.args[0] if e.args else None
    return isinstance(err, KafkaError) and err.code() == KafkaError._STATE and "state Ready" in err.str()
