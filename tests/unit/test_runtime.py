"""The stream runtime's pure parts (streams/runtime): sequencing, offsets, stores, a task."""

from __future__ import annotations

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.app.synthetic import events as f
from schemas import topics
from schemas.codec import Codec
from streams.runtime.sequencer import NEG_INF, POS_INF, OffsetBook, Sequencer, ranges
from streams.runtime.stage import Input, Stage, StoreSpec
from streams.runtime.store import Store
from streams.runtime.task import Env, Record, Task, Upstream, combine, wake

CODEC = Codec()


# --- sequencer -------------------------------------------------------------------------------

@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3), st.text("ab", min_size=1, max_size=3)),
                min_size=1, max_size=40, unique=True), st.randoms())
def test_release_order_is_the_sorted_order_whatever_the_push_order(items, rnd) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    seq = Sequencer()
    for t, rank, eid in shuffled:
        assert seq.push(t, rank, eid, (t, rank, eid))
    released = [item for _, item in seq.release(POS_INF)]
    assert released == sorted(items)
    assert seq.frontier == max(t for t, _, _ in items)


def test_only_what_the_watermark_passed_is_released_and_older_records_are_late() -> None:
    seq = Sequencer()
    for t in (30, 10, 20):
        seq.push(t, 0, str(t), t)
    assert [x for _, x in seq.release(20)] == [10, 20]
    assert len(seq) == 1 and seq.frontier == 20
    assert not seq.push(15, 0, "late", 15) and seq.late == 1  # the caller processes it at once
    assert seq.push(20, 1, "tie", 20)  # the frontier's own time is not late
    assert [x for _, x in seq.release(POS_INF)] == [20, 30]


def test_timers_fire_in_time_order_before_records_of_their_time_and_can_be_moved() -> None:
    seq = Sequencer()
    seq.push(100, 0, "e100", "e100")
    seq.push(50, 0, "e50", "e50")
    seq.set_timer("k1", 100)
    seq.set_timer("k2", 70)
    seq.set_timer("k2", 120)  # moved: the old time no longer fires
    seq.set_timer("k3", 10)
    seq.set_timer("k3", None)  # cancelled
    out = list(seq.release(110))
    assert out == [("event", "e50"), ("timer", ("k1", 100)), ("event", "e100")]
    assert seq.timers == {"k2": 120} and seq.next_time() == 120


# --- offsets ---------------------------------------------------------------------------------

def test_the_commit_point_never_passes_a_held_record_and_processed_ones_are_skipped_on_reread() -> None:
    book = OffsetBook(committed=10)
    book.fed(10, held=True)
    book.fed(11, held=False)  # processed at once (unsequenced, or late) while 10 is held
    book.fed(12, held=True)
    book.processed(12)
    assert book.commit_point() == 10
    assert book.compact() == 10
    saved = book.to_json()
    assert saved == {"base": 10, "done": [[11, 12]]}
    # restart: re-read from 10; 11 and 12 were done
    again = OffsetBook.from_json(orjson.loads(orjson.dumps(saved)), committed=10)
    assert [o for o in (10, 11, 12) if not again.seen(o)] == [10]
    assert OffsetBook.from_json(saved, committed=13).done == set()  # another commit point: nothing
    book.processed(10)
    assert book.compact() == 13 and book.done == set()


def test_ranges() -> None:
    assert ranges([3, 4, 5, 9, 11, 12]) == [[3, 5], [9, 9], [11, 12]]


# --- stores ----------------------------------------------------------------------------------

def test_a_store_writes_each_changed_key_once_and_restores_from_its_changelog() -> None:
    s = Store("s", dump=lambda v: {"v": v}, load=lambda d: d["v"])
    s["a"], s["b"], s["a"] = 1, 2, 3
    del s["b"]
    s.forget("b")  # memory only: not a change
    changes = dict(s.take_changes())
    assert changes == {b"a": orjson.dumps({"v": 3}), b"b": None}
    assert s.take_changes() == []
    restored = Store("s", load=lambda d: d["v"])
    for k, v in changes.items():
        restored.restore(k, v)
    assert dict(restored.items()) == {"a": 3}


# --- a task ----------------------------------------------------------------------------------

class Echo(Stage):
    """Sends every event it is given, in the order given, and counts them."""

    name = "echo"
    inputs = (Input(topics.MESSAGES), Input(topics.AGENT_STATUS, sequenced=False))
    outputs = (topics.CONVERSATIONS,)
    stores = (StoreSpec("n"),)

    def process(self, ctx: Task, event: dict) -> None:
        if event.get("text") == "boom":
            raise RuntimeError("boom")
        ctx.store("n")["n"] = ctx.store("n").get("n", 0) + 1
        ctx.send(topics.CONVERSATIONS, event)


class EchoCoPartitioned(Echo):
    inputs = (Input(topics.MESSAGES), Input(topics.CONVERSATION_MESSAGES))


def _task(stage: Stage | None = None, upstream: dict | None = None, lateness: int = 1000) -> Task:
    task = Task(stage or Echo(), 0, Env(CODEC, upstream or {}, lateness_ms=lateness, idle_ms=500))
    task.start({})
    return task


def _rec(event: dict, offset: int, topic: str = topics.MESSAGES.name, origin: str | None = None) -> Record:
    return Record(topic, 0, offset, b"k", CODEC.encode(event), origin)


def _msg(i: int, at: int) -> dict:
    return f.received("acme", f.identity("sms", "+33612345678"), f"m{i}", at, n=i)


def test_a_task_releases_outside_records_in_event_time_once_past_the_lateness_bound() -> None:
    task = _task()
    for off, at in enumerate((3000, 1000, 2000)):
        task.feed(_rec(_msg(off, f.T0 + at), off), now=0.0)
    task.advance({}, now=0.0)  # newest 3000, bound 1000: up to 2000
    out, changes, offsets = task.finish()
    assert [CODEC.decode(o.value)["text"] for o in out] == ["m1", "m2"]
    assert offsets == {topics.MESSAGES.name: 0, topics.AGENT_STATUS.name: 0}  # offset 0 still held
    for clock in task.clocks.values():
        clock.caught_up = True
    task.advance({}, now=0.2)  # caught up and quiet: the bound shrinks
    assert task.watermark == f.T0 + 3000 - 800 and task.finish()[0] == []
    task.advance({}, now=0.6)  # idle: event time stands at the newest record
    out, changes, offsets = task.finish()
    assert [CODEC.decode(o.value)["text"] for o in out] == ["m0"]
    assert offsets[topics.MESSAGES.name] == 3 and task.output_watermark() == (f.T0 + 3000, True)


def test_an_upstream_watermark_counts_only_once_its_data_is_read() -> None:
    up = "identity/0"
    task = _task(EchoCoPartitioned(), {topics.CONVERSATION_MESSAGES.name: (up,)})
    table = {up: Upstream(f.T0 + 5000, False, {f"{topics.CONVERSATION_MESSAGES.name}/0": 2})}
    task.feed(_rec(_msg(0, f.T0 + 100), 0, topics.CONVERSATION_MESSAGES.name, origin=up), now=0.0)
    task.advance(table, now=0.0)
    assert task.watermark == NEG_INF  # its end (2) is not read yet: the watermark may not be used
    task.feed(_rec(_msg(1, f.T0 + 50), 1, topics.CONVERSATION_MESSAGES.name, origin=up), now=0.0)
    task.advance(table, now=0.0)
    assert task.watermark == f.T0 + 5000
    assert [CODEC.decode(o.value)["text"] for o in task.finish()[0]] == ["m1", "m0"]


def test_undecodable_records_are_dead_lettered_with_their_bytes_and_the_task_goes_on() -> None:
    task = _task()
    task.feed(Record(topics.AGENT_STATUS.name, 0, 0, b"acme", b"\x07garbage"), now=0.0)
    task.feed(Record(topics.AGENT_STATUS.name, 0, 1, b"acme", CODEC.encode(f.agent_status("acme", "a2", f.T0))),
              now=0.0)
    out, _, offsets = task.finish()
    dead = [CODEC.decode(o.value) for o in out if o.topic == topics.DEAD_LETTER.name]
    assert [(d["reason"], d["source_offset"], d["payload"]) for d in dead] == [("undecodable", 0, b"\x07garbage")]
    assert [o.topic for o in out].count(topics.CONVERSATIONS.name) == 1
    assert offsets[topics.AGENT_STATUS.name] == 2 and task.counts["dead"] == 1


def test_an_exception_in_a_stage_parks_the_record() -> None:
    task = _task()
    boom = f.received("acme", f.identity("sms", "+33612345678"), "boom", f.T0)
    task.feed(_rec(boom, 0), now=0.0)
    task.feed(_rec(_msg(1, f.T0 + 1), 1), now=0.0)
    task.clocks[topics.MESSAGES.name].caught_up = True
    task.advance({}, now=10.0)
    out, _, _ = task.finish()
    kinds = [(o.topic, CODEC.decode(o.value).get("reason")) for o in out]
    assert kinds == [(topics.DEAD_LETTER.name, "poison"), (topics.CONVERSATIONS.name, None)]
    assert task.store("n")["n"] == 1


def test_combine_takes_the_least_active_source_else_the_latest_idle_one() -> None:
    assert combine([(5, False), (9, False), (1, True)], NEG_INF) == (5, False)
    assert combine([(5, True), (9, True)], NEG_INF) == (9, True)
    assert combine([], 42) == (42, True)


def test_a_restarted_task_skips_what_was_done_and_re_holds_what_was_held() -> None:
    task = _task()
    for off, at in enumerate((3000, 1000, 2500)):
        task.feed(_rec(_msg(off, f.T0 + at), off), now=0.0)
    task.advance({}, now=0.0)  # releases 1000 (offset 1); 3000 and 2500 held
    first, changes, offsets = task.finish()
    assert [CODEC.decode(o.value)["text"] for o in first] == ["m1"]
    restarted = Task(Echo(), 0, task.env)
    stores = restarted.all_stores()
    for store, key, value in changes:
        stores[store].restore(key, value)
    restarted.start(offsets)
    for off in range(offsets[topics.MESSAGES.name], 3):  # re-read from the commit point
        restarted.feed(_rec(_msg(off, f.T0 + (3000, 1000, 2500)[off]), off), now=0.0)
    restarted.clocks[topics.MESSAGES.name].caught_up = True
    restarted.advance({}, now=10.0)
    assert [CODEC.decode(o.value)["text"] for o in restarted.finish()[0]] == ["m2", "m0"]
    assert restarted.store("n")["n"] == 3


def test_a_restarted_task_reads_past_records_done_before_so_an_upstream_watermark_covering_them_counts() -> None:
    """Found with two worker processes: the last records of a partition were processed ahead of
    a held one, the task moved, and its next owner skipped them on the re-read without reading
    past them; the upstream watermark (its end is after them) never became usable and the held
    record stayed held."""
    up, topic = "identity/0", topics.CONVERSATION_MESSAGES.name
    events = [_msg(0, f.T0 + 3000), _msg(1, f.T0 + 1000), _msg(2, f.T0 + 2000)]
    table = {up: Upstream(f.T0 + 1500, False, {f"{topic}/0": 3})}
    task = _task(EchoCoPartitioned(), {topic: (up,)})
    for off, e in enumerate(events):
        task.feed(_rec(e, off, topic, origin=up), now=0.0)
    task.advance(table, now=0.0)  # releases offset 1 (1000); offsets 0 and 2 held
    _, changes, offsets = task.finish()
    assert offsets[topic] == 0
    table[up] = Upstream(f.T0 + 2500, False, {f"{topic}/0": 3})
    task.advance(table, now=0.0)  # releases offset 2 (2000) ahead of the held offset 0
    _, more, offsets = task.finish()
    assert offsets[topic] == 0
    restarted = Task(EchoCoPartitioned(), 0, task.env)
    stores = restarted.all_stores()
    for store, key, value in [*changes, *more]:
        stores[store].restore(key, value)
    restarted.start(offsets)
    for off, e in enumerate(events):
        restarted.feed(_rec(e, off, topic, origin=up), now=0.0)  # 1 and 2 were done: skipped
    assert restarted.books[topic].next == 3
    table[up] = Upstream(f.T0 + 5000, True, {f"{topic}/0": 3})
    restarted.advance(table, now=0.0)
    assert [CODEC.decode(o.value)["text"] for o in restarted.finish()[0]] == ["m0"]


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_held_records_come_out_in_one_order_whatever_the_arrival_order(rnd: random.Random) -> None:
    events = [_msg(i, f.T0 + rnd.randrange(0, 900)) for i in range(15)]
    orders = []
    for _ in range(2):
        rnd.shuffle(events)
        task = _task(lateness=1000)
        for off, e in enumerate(events):
            task.feed(_rec(e, off), now=0.0)
            if rnd.random() < 0.3:
                task.advance({}, now=0.0)
        task.clocks[topics.MESSAGES.name].caught_up = True
        task.advance({}, now=10.0)
        orders.append([CODEC.decode(o.value)["text"] for o in task.finish()[0]])
    assert orders[0] == orders[1]


def test_a_log_store_writes_one_record_per_batch_and_restores_them_all() -> None:
    from streams.runtime.store import LogStore

    s = LogStore("seen")
    s["a"], s["b"] = 1, 2
    first = s.take_changes()
    s["c"] = 3
    second = s.take_changes()
    assert len(first) == len(second) == 1 and s.take_changes() == []
    assert first[0][0] < second[0][0]  # sequence-numbered keys: nothing overwritten by compaction
    s.forget("a")
    assert "a" not in s and s.take_changes() == []
    restored = LogStore("seen")
    for key, value in first + second:
        restored.restore(key, value)
    assert dict(restored.items()) == {"a": 1, "b": 2, "c": 3}
    restored["d"] = 4
    (key, _), = restored.take_changes()
    assert key > second[0][0]  # a restored store goes on numbering after what it read


def test_the_end_of_a_partition_counts_as_read_past_an_aborted_tail() -> None:
    """Records of an aborted transaction are never delivered: reaching the partition's end says
    they are behind the reader, so an upstream watermark whose ends lie past them is usable."""
    book = OffsetBook(committed=0)
    book.fed(0, held=False)
    book.fed(1, held=True)  # offsets 2-5: an aborted transaction and its marker, never delivered
    book.read_to(6)
    assert book.next == 6
    assert book.commit_point() == 1  # the held record is still re-read after a crash
    book.read_to(3)  # an older end changes nothing
    assert book.next == 6
    book.processed(1)
    assert book.compact() == 6


def test_after_a_quiet_spell_a_partition_whose_records_come_a_moment_later_still_holds_event_time() -> None:
    """Two partitions idle after a quiet spell; a write reaches both, one a moment after the
    other. The first one's records wake every task of the process (``wake``): the second stays
    active for idle_ms, so a reader of both cannot run past its records before they
    come. Without that it is idle, its reader's event time follows the first partition alone,
    and the second's records come late."""
    a, b = _task(lateness=500), _task(lateness=500)
    b.partition = 1
    b.id = "echo/1"
    for task, off_at in ((a, f.T0 + 1000), (b, f.T0 + 2000)):
        task.feed(_rec(_msg(0, off_at), 0), now=0.0)
        for clock in task.clocks.values():
            clock.caught_up = True
    table = {}
    for task in (a, b):
        task.advance({}, now=1.0)  # quiet for 1 s: idle, event time at the newest record
        table[task.id] = Upstream(*task.output_watermark(), {})
    assert table["echo/0"].idle and table["echo/1"].idle
    # the write after the quiet spell: a's records come first, far ahead in event time
    a.feed(_rec(_msg(1, f.T0 + 80_000), 1), now=1.1)
    wake(table, {a}, {a}, [a, b], now=1.1)
    assert not table["echo/1"].idle
    b.advance({}, now=1.2)  # caught up and quiet, but within idle_ms of the wake
    assert b.output_watermark() == (f.T0 + 2000, False)
    assert combine([(table["echo/1"].watermark, table["echo/1"].idle), (f.T0 + 79_500, False)],
                   NEG_INF)[0] <= f.T0 + 2000  # a reader of both waits for b
    b.advance({}, now=1.7)  # nothing came within idle_ms: idle again, b no longer holds anyone
    assert b.output_watermark() == (f.T0 + 2000, True)


def test_an_upstream_that_said_idle_holds_its_readers_once_it_says_active_with_data_not_yet_read() -> None:
    """Its new mark is not usable before its data is read; meanwhile its last usable mark said
    idle, which would let the other sources alone decide. It holds at that mark, active."""
    here = f"{topics.CONVERSATION_MESSAGES.name}/0"
    task = _task(EchoCoPartitioned(), {topics.CONVERSATION_MESSAGES.name: ("up/0", "up/1")})
    task.feed(_rec(_msg(0, f.T0 + 500), 0, topics.CONVERSATION_MESSAGES.name, origin="up/1"), now=0.0)
    table = {"up/0": Upstream(f.T0 + 1000, True, {here: 1}), "up/1": Upstream(f.T0 + 50_000, False, {here: 1})}
    task.advance(table, now=0.0)
    assert task.watermark == f.T0 + 50_000  # the idle one does not hold the other back
    table["up/0"] = Upstream(f.T0 + 60_000, False, {here: 5})  # woke, wrote offsets 1-4: not read yet
    table["up/1"] = Upstream(f.T0 + 90_000, False, {here: 1})
    task.advance(table, now=0.1)
    assert task.watermark == f.T0 + 1000  # held at up/0's last usable mark, not run to 90 000


def test_a_wake_holds_sources_for_idle_ms_of_wall_time_whatever_the_lateness_bound() -> None:
    """The hold covers a write's skew across partitions (wall time), not the lateness bound
    (event time: a replay of a simulated day may set it to minutes)."""
    task = Task(Echo(), 0, Env(CODEC, {}, lateness_ms=600_000, idle_ms=500))
    task.start({})
    task.feed(_rec(_msg(0, f.T0), 0), now=0.0)
    for clock in task.clocks.values():
        clock.caught_up = True
    task.hold(now=1.0)
    task.advance({}, now=1.4)
    assert task.output_watermark()[1] is False  # held
    task.advance({}, now=1.6)
    assert task.output_watermark() == (f.T0, True)  # idle at its newest record: released
    assert task.finish()[0]
