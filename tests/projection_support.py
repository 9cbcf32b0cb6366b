"""Helpers for the projection tests: a reference fold of a log, and table dumps to compare."""

from __future__ import annotations

import projections
from projections.engine import Batcher, Decoded
from projections.store import Store, open_store


def project_all(url: str, records: list) -> Store:
    """A migrated store holding every projection of the log, applied in production order at
    once; the caller closes it."""
    store = open_store(url)
    store.migrate()
    decoded = [Decoded(t.name, 0, i, e) for i, (t, _k, e) in enumerate(records)]
    for p in projections.PROJECTIONS.values():
        b = Batcher(store, p, fresh=True)
        b.apply(decoded)
        b.commit()
    return store


def reference(records: list, url: str) -> dict[str, list[str]]:
    """The tables the projections hold after the log, applied in production order at once."""
    store = project_all(url, records)
    try:
        return dump(store)
    finally:
        store.close()


def dump(store: Store, names: list[str] | None = None) -> dict[str, list[str]]:
    """Every row of every projection table, as sorted text (order-free comparison)."""
    out = {}
    for name in names or list(projections.PROJECTIONS):
        for t in projections.get(name).tables:
            rows = store.query(f"SELECT * FROM {t.name}")
            out[t.name] = sorted(repr(sorted((k, _norm(v)) for k, v in r.items())) for r in rows)
    return out


def _norm(v: object) -> object:
    return float(v) if isinstance(v, float) else v


def applied_offsets(store: Store) -> int:
    """How many records the projections have consumed in all (sum of checkpoints)."""
    rows = store.query("SELECT COALESCE(SUM(next_offset), 0) AS n FROM projection_offsets")
    return int(rows[0]["n"])
