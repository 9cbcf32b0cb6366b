"""The kpis projection holds what the KPI processor means: its records, applied in emission
order, give the tables its own fold (``streams.kpi.logic.fold_outputs``) gives."""

from __future__ import annotations

import projections
from projections import dashboard, query, sample
from projections.engine import Batcher, Decoded
from projections.store import open_store
from streams.kpi import engine, logic


def kpi_records(seed: int) -> list[dict]:
    """What the KPI processor emits for a sample day (its inputs only, with redeliveries)."""
    inputs = [e for _t, _k, e in sample.generate(60, seed=seed)
              if e["envelope"]["event_type"] in logic.KPI_TYPES]
    eng = engine.KpiEngine()
    out: list[dict] = []
    for i, e in enumerate(inputs):
        eng.apply(e)
        if i % 40 == 0:
            out += eng.flush()
    return out + eng.flush()


def test_kpi_tables_equal_the_processors_own_fold(tmp_path):
    records = kpi_records(seed=41)
    assert {r["envelope"]["event_type"] for r in records} == {"ContactMeasured", "IntervalStat", "AgentIntervalStat"}
    store = open_store(f"sqlite:///{tmp_path}/k.db")
    store.migrate()
    b = Batcher(store, projections.get("kpis"))
    topic = {"ContactMeasured": "parley.kpi.contacts"}
    b.apply([Decoded(topic.get(r["envelope"]["event_type"], "parley.kpi.intervals"), 0, i, r)
             for i, r in enumerate(records)])
    b.commit()
    want = logic.fold_outputs(records)

    contacts = {r["contact_id"]: {k: r[k] for k in logic.CONTACT_VIEW}
                for r in store.query("SELECT * FROM kpi_contacts")}
    want_contacts = {k: {f: (int(v) if isinstance(v, bool) else v) for f, v in c.items()}
                     for k, c in want["contacts"].items()}
    assert contacts == want_contacts and contacts

    intervals = {(r["tenant_id"], r["interval_start"], r["dimension"], r["dimension_value"]): m
                 for r in query.kpi_intervals(store, query.KpiFilter(), "overall")
                 + query.kpi_intervals(store, query.KpiFilter(), "channel")
                 + query.kpi_intervals(store, query.KpiFilter(), "queue")
                 + query.kpi_intervals(store, query.KpiFilter(), "agent")
                 for m in [r["metrics"]]}
    assert intervals == want["intervals"]

    agents = {(r["tenant_id"], r["agent_id"], r["interval_start"]):
              {"online_ms": r["online_ms"], "open_ms": r["open_conversation_ms"], "idle_ms": r["idle_ms"],
               "peak": r["peak_concurrency"], "levels": r["time_at_level_ms"]}
              for r in store.query("SELECT * FROM kpi_agent_intervals")
              for r in [projections.get("kpis").tables[2].from_db(r)]}
    assert agents == want["agents"] and agents

    d = dashboard.build(store, query.KpiFilter())
    assert d["sl_by_interval"]["source"] == "kpi_intervals:overall"
    assert any(p["sl_300"] is not None for p in d["sl_by_interval"]["points"])
    store.close()
