"""The demo's day, twice, through the whole system: real broker, ingress, stream worker,
projections (SQLite), API, egress (the processes `parley demo` starts).

Both runs drive the same seed and day at a small scale under their own topics. The worker must
process no record late (it decides in event time, and the driver sends in event-time order,
acting only on decisions already made), so the two runs give the same threads, customers,
identities, messages and KPI tables, row for row; and every feature of the day shows in what
the pipeline did (assignments, concurrency, the bot, out-of-hours replies, identity links and
a merge, transfers, reopens, a VIP, an escalation).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from parley import topics_admin
from parley.app.demo.main import Outcome, play
from parley.settings import DemoSettings, KafkaSettings

pytestmark = pytest.mark.integration

SCALE, SEED, DAY = 0.05, 11, "2026-11-17"
TABLES = ("threads", "messages", "message_enrichments", "message_deliveries", "customers", "customer_identities",
          "kpi_contacts", "kpi_intervals", "kpi_agent_intervals", "agents")
# Which KPI record last wrote a row, and its as-of time (the KPI processor's watermark when it
# emitted it): how the processor batched its emissions, not a figure. Every other column counts.
BOOKKEEPING = {"kpi_contacts": ("event_id", "updated_at"), "kpi_intervals": ("event_id", "updated_at"),
               "kpi_agent_intervals": ("event_id", "updated_at")}


def _run(kafka_bootstrap: str, data_dir: Path, run_id: str) -> Outcome:
    s = DemoSettings(kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap), scale=SCALE, seed=SEED, day=DAY,
                     data_dir=data_dir)
    return play(s, console=Console(file=open(data_dir.parent / f"{run_id}.txt", "w"), width=160),  # noqa: SIM115
                run_id=run_id)


def _rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for t in TABLES:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({t})") if r[1] not in BOOKKEEPING.get(t, ())]
            out[t] = sorted(conn.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall(), key=repr)
        return out
    finally:
        conn.close()


@pytest.fixture
def two_runs(kafka_bootstrap: str, tmp_path: Path):
    ids = [f"demotest{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        yield [_run(kafka_bootstrap, tmp_path / f"run{i}", run_id) for i, run_id in enumerate(ids)]
    finally:
        for run_id in ids:
            try:
                asyncio.run(topics_admin.delete_prefixed(KafkaSettings(bootstrap_servers=kafka_bootstrap,
                                                                       topic_prefix=f"{run_id}.")))
            except Exception as e:  # cleanup only  # noqa: BLE001
                import warnings

                warnings.warn(f"could not delete the topics of {run_id}: {e}", stacklevel=1)


def test_the_same_seed_gives_the_same_day_twice_and_every_feature_works(two_runs: list[Outcome]) -> None:
    a, b = two_runs
    for o in (a, b):
        assert o.late == 0, "the worker processed records late: the runs may differ"
        assert o.report.ok, "\n".join(o.report.lines())
        assert not o.diffs, o.diffs
        assert o.code == 0
    first, second = _rows(a.db_path), _rows(b.db_path)
    for t in TABLES:
        assert first[t], f"{t} is empty"
        only_a = set(first[t]) - set(second[t])
        only_b = set(second[t]) - set(first[t])
        assert not only_a and not only_b, (t, sorted(only_a, key=repr)[:2], sorted(only_b, key=repr)[:2])
    assert a.summary["overall"] == b.summary["overall"] and a.agents == b.agents
    assert a.features == b.features

    got = {f.feature: f.counts for f in a.features}
    text = {f.feature: f.text for f in a.features}
    assert got["routing"]["assigned"] > 0 and got["queues"]["peak"] > 0
    assert got["concurrency"]["agents_worked"] == len(a.agents) and got["concurrency"]["idle_ms"] > 0
    assert all(ag["concurrency"] > 0 for ag in a.agents if ag["answered"]) and got["reply gaps"]["gaps"] > 0
    assert got["bot"]["bot_first"] > 0 and got["bot"]["handed_off"] > 0, text["bot"]
    assert got["out of hours"]["auto_replies"] > 0 and got["out of hours"]["served_at_opening"] > 0
    assert got["identity"]["linked_by_agent"] >= 1 and got["identity"]["merged_by_agent"] >= 1, text["identity"]
    assert got["identity"]["merged"] > got["identity"]["merged_by_agent"], text["identity"]  # and the graph's own
    assert got["transfer"].get("reason:billing_question", 0) >= 1 and got["transfer"]["taken"] >= 1, text["transfer"]
    assert got["reopen"]["reopened"] >= 1 and got["vip"]["contacts"] >= 1 and got["escalation"]["contacts"] >= 1
