"""The projection store on SQLite and PostgreSQL: migrations, transactions, upserts, WAL reads,
and the engine writing the same tables whatever the batch size (no broker needed)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

import projections
from parley.app.synthetic import sample
from projections.engine import Batcher, Decoded, truncate
from projections.store import Store, migrations, open_store, split_sql


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/p.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str):
    s = open_store(store_url)
    s.migrate()
    yield s
    s.close()


def _columns(store: Store, table: str) -> list[str]:
    if store.dialect == "sqlite":
        return [r["name"] for r in store.query(f"PRAGMA table_info({table})")]
    return [r["column_name"] for r in store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", (table,))]


def test_migrations_are_numbered_and_pick_the_dialect_file():
    for dialect in ("sqlite", "postgresql"):
        ms = migrations(dialect)
        assert [m.version for m in ms] == list(range(1, len(ms) + 1))
    assert "json_each" in migrations("sqlite")[1].sql
    assert "jsonb_each_text" in migrations("postgresql")[1].sql


def test_split_sql_drops_comments_and_splits_statements():
    assert split_sql("-- c\nCREATE TABLE a (x INT);\n\nCREATE INDEX i ON a (x);\n") == [
        "CREATE TABLE a (x INT)", "CREATE INDEX i ON a (x)"]


def test_migrate_applies_once_and_records(store_url: str):
    s = open_store(store_url)
    try:
        assert s.migrate() == ["0001_init", "0002_views", "0003_kpi_figures", "0004_outbound", "0005_privacy"]
        assert s.migrate() == []
        assert s.applied_migrations() == [1, 2, 3, 4, 5]
        rows = s.query("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(1, "init"), (2, "views"),
                                                             (3, "kpi_figures"), (4, "outbound"), (5, "privacy")]
    finally:
        s.close()


def test_table_specs_match_the_migrated_schema(store: Store):
    for p in projections.PROJECTIONS.values():
        for t in p.tables:
            assert tuple(_columns(store, t.name)) == t.columns, t.name


def test_upsert_inserts_then_updates(store: Store):
    sql = Store.upsert_sql("projection_offsets", ("projection", "topic", "partition"),
                           ("projection", "topic", "partition", "next_offset"))
    with store.transaction() as tx:
        tx.executemany(sql, [("p", "t", 0, 5), ("p", "t", 1, 7)])
    with store.transaction() as tx:
        tx.executemany(sql, [("p", "t", 0, 9)])
    rows = store.query("SELECT partition, next_offset FROM projection_offsets ORDER BY partition")
    assert [(r["partition"], r["next_offset"]) for r in rows] == [(0, 9), (1, 7)]


def test_a_failed_transaction_leaves_nothing(store: Store):
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.execute("INSERT INTO projection_events (projection, event_id) VALUES (?, ?)", ("p", "e1"))
            raise RuntimeError("boom")
    assert store.query("SELECT COUNT(*) AS n FROM projection_events")[0]["n"] == 0


def test_composite_key_filter_reads_the_right_rows(store: Store):
    with store.transaction() as tx:
        tx.executemany("INSERT INTO projection_offsets VALUES (?, ?, ?, ?)",
                       [("a", "t", 0, 1), ("a", "t", 1, 2), ("b", "t", 0, 3)])
    where = Store.key_filter(("projection", "partition"), 2)
    rows = store.query(f"SELECT next_offset FROM projection_offsets WHERE {where} ORDER BY next_offset",
                       ["a", 1, "b", 0])
    assert [r["next_offset"] for r in rows] == [2, 3]


def test_read_only_store_refuses_writes(store_url: str, store: Store):
    ro = open_store(store_url, readonly=True)
    try:
        with pytest.raises(Exception, match="(?i)read.only|readonly|query_only|attempt to write"):
            with ro.transaction() as tx:
                tx.execute("INSERT INTO projection_events VALUES (?, ?)", ("p", "x"))
    finally:
        ro.close()


def test_sqlite_is_in_wal_mode_and_readers_do_not_wait_for_the_writer(tmp_path):
    url = f"sqlite:///{tmp_path}/wal.db"
    writer, reader = open_store(url), open_store(url, readonly=True)
    writer.migrate()
    assert writer.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    with writer.transaction() as tx:
        tx.execute("INSERT INTO projection_events VALUES (?, ?)", ("p", "committed"))
    inside, seen = threading.Event(), []
    with writer.transaction() as tx:  # an open write transaction...
        tx.execute("INSERT INTO projection_events VALUES (?, ?)", ("p", "pending"))

        def read() -> None:
            seen.extend(r["event_id"] for r in reader.query("SELECT event_id FROM projection_events"))
            inside.set()

        t = threading.Thread(target=read)
        t.start()
        assert inside.wait(5), "the reader waited for the writer"  # ...does not block a reader
        t.join()
    assert seen == ["committed"]
    writer.close()
    reader.close()


def test_interval_metrics_view_unpivots_the_metrics(store: Store):
    with store.transaction() as tx:
        tx.execute("INSERT INTO kpi_intervals (tenant_id, interval_start, dimension, dimension_value, "
                   "metrics) VALUES (?, ?, ?, ?, ?)",
                   ("acme", 1767225600000, "overall", "all", '{"offered": 4.0, "sl_300": 0.75}'))
    rows = store.query("SELECT metric, value FROM kpi_interval_metrics ORDER BY metric")
    assert [(r["metric"], r["value"]) for r in rows] == [("offered", 4.0), ("sl_300", 0.75)]


# -- the engine over a real database -----------------------------------------------------------
def _decoded(records: list) -> list[Decoded]:
    """Records as if read from one partition per topic, offsets in production order."""
    offsets: dict[str, int] = {}
    out = []
    for topic, _key, event in records:
        n = offsets[topic.name] = offsets.get(topic.name, -1) + 1
        out.append(Decoded(topic.name, 0, n, event))
    return out


def _fold(store: Store, records: list, batch: int, fresh: bool) -> dict[str, list]:
    decoded = _decoded(records)
    for p in projections.PROJECTIONS.values():
        b = Batcher(store, p, fresh=fresh)
        for i in range(0, len(decoded), batch):
            b.apply(decoded[i:i + batch])
            b.commit()
    return dump(store)


def dump(store: Store) -> dict[str, list]:
    out = {}
    for p in projections.PROJECTIONS.values():
        for t in p.tables:
            out[t.name] = sorted(repr(sorted(r.items())) for r in store.query(f"SELECT * FROM {t.name}"))
    return out


def test_batch_size_and_fresh_mode_do_not_change_the_tables(store_url: str, tmp_path):
    records = sample.generate(60, seed=3)
    one = open_store(store_url)
    one.migrate()
    small = _fold(one, records, batch=7, fresh=False)
    for p in projections.PROJECTIONS.values():
        truncate(one, p)
    big = _fold(one, records, batch=10_000, fresh=True)
    one.close()
    assert small == big
    assert all(small[t] for t in small), "every table has rows"


def test_duplicates_and_replayed_batches_count_once(store: Store):
    records = sample.generate(40, seed=5, duplicates=0.0)
    once = _fold(store, records, batch=50, fresh=False)
    for p in projections.PROJECTIONS.values():
        truncate(store, p)
    doubled = [r for r in records for _ in (0, 1)]  # every event delivered twice
    twice = _fold(store, doubled, batch=50, fresh=False)
    assert once == twice


def test_cache_eviction_falls_back_to_reading_rows(store: Store):
    records = sample.generate(40, seed=9)
    p = projections.get("threads")
    b = Batcher(store, p, fresh=True, cache_rows=10)  # evicts after almost every batch
    decoded = _decoded(records)
    for i in range(0, len(decoded), 25):
        b.apply(decoded[i:i + 25])
        b.commit()
    evicted = {t.name: store.query(f"SELECT * FROM {t.name}") for t in p.tables}
    truncate(store, p)
    b = Batcher(store, p, fresh=True)
    b.apply(decoded)
    b.commit()
    kept = {t.name: store.query(f"SELECT * FROM {t.name}") for t in p.tables}
    assert {k: sorted(map(repr, v)) for k, v in evicted.items()} == \
           {k: sorted(map(repr, v)) for k, v in kept.items()}


def test_a_poison_event_is_set_aside_and_the_batch_goes_on(store: Store):
    from dataclasses import replace

    threads = projections.get("threads")
    records = sample.generate(5, seed=13, duplicates=0)
    bad_id = next(e["envelope"]["event_id"] for _t, _k, e in records
                  if e["envelope"]["event_type"] == "MessageSent")

    def apply(table, row, event):
        if event["envelope"]["event_id"] == bad_id:
            raise KeyError("boom")
        return threads.apply(table, row, event)

    b = Batcher(store, replace(threads, apply=apply))
    decoded = _decoded(records)
    b.apply(decoded)
    b.commit()
    failed = b.take_failed()
    assert [d.event["envelope"]["event_id"] for d in failed] == [bad_id]
    assert "boom" in failed[0].error
    assert store.query("SELECT COUNT(*) AS n FROM messages WHERE event_id = ?", (bad_id,))[0]["n"] == 0
    assert store.query("SELECT COUNT(*) AS n FROM messages")[0]["n"] > 0
    offsets = {r["topic"]: r["next_offset"] for r in store.query("SELECT * FROM projection_offsets")}
    assert offsets["parley.conversations"] == 1 + max(d.offset for d in decoded if d.topic == "parley.conversations")


# -- docs/SQL.md stays true --------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "SQL.md"


def test_every_table_and_column_is_documented():
    text = DOC.read_text()
    sections = dict(re.findall(r"^### (\w+)\n(.*?)(?=^### |^## |\Z)", text, re.S | re.M))
    for p in projections.PROJECTIONS.values():
        for t in p.tables:
            assert t.name in sections, f"docs/SQL.md has no section for {t.name}"
            missing = [c for c in t.columns if f"`{c}`" not in sections[t.name]]
            assert not missing, f"{t.name}: undocumented columns {missing}"


def test_the_documented_example_queries_run(store: Store):
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    params = {":as_of": "1767300000000", ":day_start": "1767225600000", ":thread": "'th-1'"}
    ran = 0
    for sql in blocks:
        first = sql.strip().splitlines()[0]
        if first.endswith(" only") and store.dialect not in first:
            continue
        for k, v in params.items():
            sql = sql.replace(k, v)
        store.query(sql)
        ran += 1
    assert ran >= 7
