"""The privacy operations behind ``parley privacy`` and the API's privacy routes (docs/PRIVACY.md).

Each one is the key store, Kafka and the projection database together: ``erase`` (resolve the
profile's customers from the projections, then ``parley.privacy.erasure``), ``export`` (the
projections' rows and the log's events, opened), ``retention`` (``parley.privacy.retention``
with each tenant's event time from the projections, then the rows).
"""

from __future__ import annotations

import time
from typing import Any

from parley.privacy import erasure, retention
from parley.privacy.export import events
from parley.privacy.keystore import KeyStore
from projections import query
from projections.privacy import PrivacyPass, erase_rows, opener_from, profile_ids, purge_files
from projections.privacy import export as rows_export
from projections.store import Store, open_store


def _store(settings: Any, store: Store | None) -> tuple[Store, bool]:
    if store is not None:
        return store, False
    s = open_store(settings.database_url)
    s.migrate()
    return s, True


def erase(settings: Any, tenant: str, customer: str, *, also: list[str] | None = None, at: int | None = None,
          requested_by: str | None = None, reason: str | None = None, store: Store | None = None,
          projection_rows: bool = True) -> dict[str, Any]:
    """Erase the profile ``customer`` belongs to (every customer merged into it, and ``also``)."""
    db, own = _store(settings, store)
    keys = KeyStore(settings.privacy.keys_url)
    try:
        ids = profile_ids(db, tenant, customer)
        ids += [c for c in also or () if c not in ids]

        def rows(t: str, customers: list[str], when: int) -> dict[str, int]:
            with db.transaction() as tx:
                changed = erase_rows(tx, t, customers, when)
            purge_files(db, [k for k, n in changed.items() if n])
            return changed

        eraser = erasure.Eraser(settings, keys)
        try:
            done = eraser.erase(tenant, ids[0], customer_ids=ids[1:], at=at, requested_by=requested_by,
                                reason=reason, projection=rows if projection_rows else None)
        finally:
            eraser.close()
        return done.as_dict()
    finally:
        keys.close()
        if own:
            db.close()


def export(settings: Any, tenant: str, customer: str, *, from_log: bool = True,
           store: Store | None = None) -> dict[str, Any]:
    """Everything held on the profile ``customer`` belongs to, decrypted: the projections' rows,
    the log's events (opened), and which keys the key store holds for it."""
    db, own = _store(settings, store)
    keys = KeyStore(settings.privacy.keys_url) if settings.privacy.master_key is not None else None
    try:
        out = rows_export(db, tenant, customer)
        if keys is not None:
            out["keys"] = {c: {"generation": keys.generation(tenant, c)[0], "erased_at": keys.generation(tenant, c)[1],
                               "keys": [{"kind": k, "period": p, "generation": g}
                                        for k, p, g in keys.key_periods(tenant, c)]}
                           for c in out["customer_ids"]}
        if from_log:
            opener = opener_from(settings.privacy)
            out["events"] = events(settings.kafka, opener, tenant, out["customer_ids"])
            if opener is not None:
                opener.keyring.close()
        return out
    finally:
        if keys is not None:
            keys.close()
        if own:
            db.close()


def run_retention(settings: Any, *, as_of: int | None = None, store: Store | None = None) -> dict[str, Any]:
    """Shred the content past each tenant's retention (event time: ``as_of``, else the newest
    event time the projections hold for the tenant), then blank it in the rows."""
    db, own = _store(settings, store)
    keys = KeyStore(settings.privacy.keys_url)
    try:
        tenants = set(keys.tenants()) | set(settings.privacy.tenant_retention_days)
        newest = query.as_of_by_tenant(db)
        done = retention.run(settings.privacy, keys, tenants, lambda t: as_of if as_of is not None else newest.get(t),
                             time.time_ns() // 1_000_000)
        rows = PrivacyPass(db, keys).apply()
        return {"expired": [{"tenant": e.tenant, "days": e.days, "as_of": e.as_of, "before": e.cut_ms,
                             "keys_destroyed": e.keys} for e in done], "rows": rows}
    finally:
        keys.close()
        if own:
            db.close()
