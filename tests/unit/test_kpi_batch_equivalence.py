"""The streaming KPIs equal the independent batch recomputation, exactly, on a generated day.

The day (``parley.app.synthetic.simulate``) is delivered out of order with redeliveries; the streaming engine
runs over stores that copy values in and out as JSON with the stage's codecs (as the worker's
changelogs do),
flushing every few events or only at the end; the batch (``parley.app.batch.kpi_batch``, DuckDB) reads the
same delivery. Every contact, every (interval, dimension, value) and every agent-interval must be
equal: same keys, same integers to the millisecond, same doubles.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest

from parley.app.batch.kpi_batch import compute
from parley.app.synthetic.simulate import shuffled_with_duplicates, simulate_day
from streams.kpi.agents import TABLES
from streams.kpi.engine import KpiEngine
from streams.kpi.logic import fold_outputs
from streams.kpi.state import CODECS, Stores


class JsonStore(MutableMapping):
    """Values stored as JSON text: a mutation not written back is lost, as it would be from a changelog."""

    def __init__(self, dump: Callable[[Any], Any], load: Callable[[Any], Any]) -> None:
        self._d: dict[str, str] = {}
        self._dump, self._load = dump, load

    def __getitem__(self, key: str) -> Any:
        return self._load(json.loads(self._d[key]))

    def __setitem__(self, key: str, value: Any) -> None:
        self._d[key] = json.dumps(self._dump(value))

    def __delitem__(self, key: str) -> None:
        del self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


def json_stores() -> Stores:
    """The KPI stage's stores, each value through its changelog codec (``state.CODECS``)."""
    return Stores(**{name: JsonStore(*CODECS[name]) for name in TABLES})


def stream(delivery: list[dict], flush_every: int) -> dict:
    engine = KpiEngine(json_stores())
    out: list[dict] = []
    for i, event in enumerate(delivery):
        engine.apply(event)
        if flush_every and i % flush_every == 0:
            out += engine.flush()
    out += engine.flush()
    return fold_outputs(out)


def assert_same(got: dict, want: dict) -> None:
    for part in ("contacts", "intervals", "agents"):
        g, w = got[part], want[part]
        assert g.keys() == w.keys(), (part, sorted(g.keys() ^ w.keys(), key=repr)[:5])
        diff = [k for k in w if g[k] != w[k]]
        assert not diff, (part, [(k, g[k], w[k]) for k in diff[:2]])


@pytest.mark.parametrize("seed,scale,full_shuffle,flush_every", [
    (7, 1.0, False, 200),   # a full day, jitter + late events + repeats, flushes on the way
    (11, 0.3, True, 1),     # any order at all, a flush after every event
    (5, 0.3, False, 1),     # near event order, a flush after every event (the live case)
    (3, 0.3, False, 0),     # one flush at the end
])
def test_streaming_kpis_equal_the_batch_recomputation(seed, scale, full_shuffle, flush_every):
    day = simulate_day(seed, scale)
    delivery = shuffled_with_duplicates(day, seed, duplicate_rate=0.08,
                                        full_shuffle=full_shuffle)
    assert len(delivery) > len(day)
    got, want = stream(delivery, flush_every), compute(delivery)
    assert_same(got, want)
    dims = {k[2] for k in want["intervals"]}
    assert dims == {"overall", "channel", "queue", "agent"}
    assert len(want["contacts"]) > 50 and len(want["agents"]) > 10
    assert compute(day) == want  # the batch, too, ignores order and repeats


@pytest.mark.parametrize("seed,full_shuffle,at", [(13, False, 0.5), (6, True, 0.8)])
def test_a_restart_mid_stream_loses_and_doubles_nothing(seed, full_shuffle, at):
    """Worker A commits every 100 events (state, figures and offset together, as the stream
    runtime's transactions do), applies 150 more and dies before its next commit: those
    changes and their figures are lost with it. Worker B starts from A's last commit and
    re-reads from its offset. What was published still equals the batch."""
    import copy

    delivery = shuffled_with_duplicates(simulate_day(seed, 0.3), seed, full_shuffle=full_shuffle)
    a, out = KpiEngine(json_stores()), []
    crash = int(len(delivery) * at)
    committed, snapshot = 0, copy.deepcopy((a.stores, a._thread_events))
    for i, event in enumerate(delivery[:crash], start=1):
        a.apply(event)
        if i % 100 == 0 and i <= crash - 150:
            out += a.flush()
            committed, snapshot = i, copy.deepcopy((a.stores, a._thread_events))
    b = KpiEngine(snapshot[0])
    b._thread_events = snapshot[1]
    for i, event in enumerate(delivery[committed:], start=1):
        b.apply(event)
        if i % 100 == 0:
            out += b.flush()
    out += b.flush()
    assert_same(fold_outputs(out), compute(delivery))


def test_a_worker_reads_the_interval_index_an_older_worker_wrote():
    """Before ``members``, an interval's episodes were inside its ``buckets`` value (JSON key
    ``episodes``). A worker of today started on such state moves them into ``members`` and
    publishes what the batch computes, as if it had run from the start."""
    delivery = shuffled_with_duplicates(simulate_day(9, 0.3), 9)
    half = len(delivery) // 2
    a, out = KpiEngine(json_stores()), []
    for event in delivery[:half]:
        a.apply(event)
    out += a.flush()
    old = json_stores()  # the same state, in the layout an older worker wrote
    for name in TABLES:
        if name != "members":
            for key, value in getattr(a.stores, name).items():
                getattr(old, name)[key] = value
    moved = 0
    for key, thread in a.stores.members.items():
        bkey, ep_id = key.rsplit("|", 1)
        interval = old.buckets[bkey]
        interval.legacy_episodes[ep_id] = thread
        old.buckets[bkey] = interval
        moved += 1
    assert moved > 50 and any("episodes" in json.loads(v) for v in old.buckets._d.values())
    b = KpiEngine(old)
    b._thread_events = a._thread_events  # the events a one-process engine keeps (as above)
    for event in delivery[half:]:
        b.apply(event)
    out += b.flush()
    assert_same(fold_outputs(out), compute(delivery))
    assert len(b.stores.members) > 50
    assert not any("episodes" in json.loads(v) for v in b.stores.buckets._d.values())


def test_a_new_contact_writes_as_much_state_in_a_busy_interval_as_in_a_quiet_one():
    """The state a new contact writes to the changelogs does not grow with the contacts already
    in its interval (it did when the interval's index of contacts was one value)."""
    from parley.app.synthetic import events as f

    written: list[int] = []

    class Counted(JsonStore):
        def __setitem__(self, key: str, value: Any) -> None:
            super().__setitem__(key, value)
            written.append(len(self._d[key]))

    engine = KpiEngine(Stores(**{name: Counted(*CODECS[name]) for name in TABLES}))
    start = 1_741_000_500_000  # an interval's start: 400 contacts, one a second, all in it
    per_contact = []
    for i in range(400):
        sender = f.identity("sms", f"+3360000{i:04d}", phone=f"+3360000{i:04d}")
        written.clear()
        engine.apply(f.received("acme", sender, "hello", start + i * 1000, n=i, customer_id=f"c{i}",
                                thread_id=f"th{i}"))
        engine.flush()
        per_contact.append(sum(written))
    assert per_contact[-1] < 1.2 * per_contact[20], (per_contact[20], per_contact[-1])
    assert len(engine.stores.members) == 400


def test_every_store_value_round_trips_its_changelog_codec():
    """What the stage writes to a changelog (orjson of ``CODECS[name][0]``) reads back equal."""
    import orjson

    engine = KpiEngine()
    for event in shuffled_with_duplicates(simulate_day(4, 0.2), 4):
        engine.apply(event)
    engine.flush()
    for name in TABLES:
        dump, load = CODECS[name]
        values = getattr(engine.stores, name)
        assert values, name
        for value in values.values():
            assert load(orjson.loads(orjson.dumps(dump(value)))) == value, name
