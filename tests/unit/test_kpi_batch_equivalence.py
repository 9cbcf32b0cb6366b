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
