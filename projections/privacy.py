"""The projections' side of crypto-shredding (docs/PRIVACY.md): open, anonymise, expire, export.

- **Open**: the runner opens each sealed event with the process's keyring before the pure
  ``route``/``apply`` functions see it (``opener_from``), so the tables hold what analysts and
  agents read, as before. What a destroyed key sealed reads as nothing (NULL, ``[]``).
- **Destroy**: the key store's log says which subjects were erased and up to which day each
  tenant's content expired. ``PrivacyPass`` applies it to the rows, in one transaction with a
  checkpoint (``privacy_checkpoint``): an erased customer's personal columns are blanked (name,
  attributes, identities' values and names, messages' text, subject, attachments, rich content
  and party, threads' subjects, delivery errors, the egress's renderings) and ``erased_at`` set;
  KPI tables, counts, times and enrichments stay, so the KPIs keep their counts. Expired content
  is blanked the same way by event time. A rebuild yields the same rows: the keys are gone, so
  the events open to nothing, and the pass is applied again from the start.
- **Files**: SQLite runs with ``secure_delete`` on every connection (``projections.store``:
  overwritten and deleted content is zeroed, from the first write on) and gets a WAL checkpoint
  that truncates the log after each pass that changed something, so the plaintext is gone from
  the files at once; PostgreSQL runs ``VACUUM`` on the tables it touched
  (old row versions; its WAL and backups age out on their own schedule).
- **Export**: everything held on a customer (``export``), decrypted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from parley.privacy.keyring import DAY_MS, Keyring, keyring_from
from parley.privacy.keystore import KeyStore, LogEntry
from parley.privacy.seal import Opener
from parley.settings import PrivacySettings
from projections.store import Store, Tx

NAME = "projections"
ERASE = (
    ("customers", "name = NULL, name_source = NULL, attributes = '{}', erased_at = COALESCE(erased_at, ?)",
     "customer_id", True),
    ("customer_identities", "display_name = NULL", "customer_id", False),
    ("threads", "subject = NULL", "customer_id", False),
    ("messages", "text = NULL, subject = NULL, attachments = '[]', rich = NULL, party_id = NULL, party_name = NULL, "
                 "author_id = CASE WHEN direction = 'in' THEN NULL ELSE author_id END", "customer_id", False),
    ("outbound_deliveries", "rendering = NULL, recipient_id = NULL, error_reason = NULL", "customer_id", False),
)
EXPIRE = (
    ("messages", "text = NULL, subject = NULL, attachments = '[]', rich = NULL", "occurred_at"),
    ("threads", "subject = NULL", "first_message_at"),
    ("message_deliveries", "error_message = NULL", "status_at"),
    ("outbound_deliveries", "rendering = NULL, error_reason = NULL", "updated_at"),
)


def opener_from(settings: PrivacySettings) -> Opener | None:
    """An opener when a master key is configured (else sealed events stay sealed)."""
    keyring = keyring_from(settings)
    return Opener(keyring) if keyring is not None else None


class PrivacyPass:
    """Applies the key store's destructions to the projection rows of one database."""

    def __init__(self, store: Store, keys: KeyStore, keyring: Keyring | None = None) -> None:
        self.store, self.keys, self.keyring = store, keys, keyring
        self.seq = self.checkpoint()  # what this process applied itself (its caches are clean up to here)

    def checkpoint(self) -> int:
        rows = self.store.query("SELECT seq FROM privacy_checkpoint WHERE name = ?", (NAME,))
        return int(rows[0]["seq"]) if rows else 0

    def apply(self, since: int | None = None) -> dict[str, int]:
        """Apply the destructions after ``since`` (default: what this process has not applied
        itself); rows changed per table. The caller drops its row caches when it is not empty."""
        entries = self.keys.log(self.seq if since is None else since)
        if not entries:
            return {}
        if self.keyring is not None:
            self.keyring.refresh(force=True)  # nothing opened from here on with a destroyed key
        changed: dict[str, int] = {}
        with self.store.transaction() as tx:
            for e in entries:
                for table, n in self._one(tx, e).items():
                    changed[table] = changed.get(table, 0) + n
            last = entries[-1].seq
            tx.execute("INSERT INTO privacy_checkpoint (name, seq) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                       "SET seq = CASE WHEN excluded.seq > privacy_checkpoint.seq THEN excluded.seq "
                       "ELSE privacy_checkpoint.seq END", (NAME, last))
        self.seq = max(self.seq, entries[-1].seq)
        purge_files(self.store, [t for t, n in changed.items() if n])
        return changed

    def _one(self, tx: Tx, e: LogEntry) -> dict[str, int]:
        if e.action == "erased" and e.subject:
            return erase_rows(tx, e.tenant, [e.subject], e.at)
        if e.action == "expired" and e.period is not None:
            return expire_rows(tx, e.tenant, e.period * DAY_MS)
        return {}


def _count(tx: Tx, sql: str, params: Sequence[Any]) -> int:
    return int(tx.query(f"SELECT COUNT(*) AS n FROM {sql}", params)[0]["n"])


def erase_rows(tx: Tx, tenant: str, customers: Sequence[str], at: int) -> dict[str, int]:
    """Blank the personal columns of ``customers``' rows; rows touched per table."""
    marks = ", ".join("?" for _ in customers)
    out: dict[str, int] = {}
    for table, assign, col, stamped in ERASE:
        where = f"{table} WHERE tenant_id = ? AND {col} IN ({marks})"
        out[table] = _count(tx, where, (tenant, *customers))
        tx.execute(f"UPDATE {table} SET {assign} WHERE tenant_id = ? AND {col} IN ({marks})",
                   ((at,) if stamped else ()) + (tenant, *customers))
    idents = tx.query(f"SELECT identity_key FROM customer_identities WHERE tenant_id = ? AND customer_id IN ({marks})",
                      (tenant, *customers))
    for r in tx.query(f"SELECT customer_id, versions FROM customers WHERE tenant_id = ? AND customer_id IN ({marks})",
                      (tenant, *customers)):  # no trace of which event set the name (a rebuild has none)
        versions = {k: v for k, v in json.loads(r["versions"] or "{}").items() if k != "name"}
        tx.execute("UPDATE customers SET versions = ? WHERE tenant_id = ? AND customer_id = ?",
                   (json.dumps(versions, sort_keys=True, separators=(",", ":")), tenant, r["customer_id"]))
    for r in idents:  # the value shown was the opened id: back to the key's own (a token when sealed)
        tx.execute("UPDATE customer_identities SET value = ? WHERE tenant_id = ? AND identity_key = ?",
                   (r["identity_key"].rsplit(":", 1)[-1], tenant, r["identity_key"]))
    tokens = [r["identity_key"].rsplit(":", 1)[-1] for r in idents if r["identity_key"].startswith("channel:")]
    out["message_deliveries"] = 0
    for i in range(0, len(tokens), 400):  # receipts name the recipient's token, not the customer
        chunk = tokens[i:i + 400]
        where = f"tenant_id = ? AND recipient_id IN ({', '.join('?' for _ in chunk)})"
        out["message_deliveries"] += _count(tx, f"message_deliveries WHERE {where}", (tenant, *chunk))
        tx.execute(f"UPDATE message_deliveries SET error_message = NULL WHERE {where}", (tenant, *chunk))
    return out


def expire_rows(tx: Tx, tenant: str, cut_ms: int) -> dict[str, int]:
    """Blank the content older than ``cut_ms`` (event time) of ``tenant``; rows touched per table."""
    out = {}
    for table, assign, col in EXPIRE:
        where = f"{table} WHERE tenant_id = ? AND {col} < ?"
        out[table] = _count(tx, where, (tenant, cut_ms))
        tx.execute(f"UPDATE {table} SET {assign} WHERE tenant_id = ? AND {col} < ?", (tenant, cut_ms))
    return out


def purge_files(store: Store, tables: Sequence[str]) -> None:
    """Make overwritten rows unrecoverable from the files now (see the module docstring)."""
    if not tables:
        return
    if store.dialect == "sqlite":
        store.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        for t in sorted(set(tables)):
            store.conn().execute(f"VACUUM {t}")


# --- export -----------------------------------------------------------------------------------

def profile_ids(store: Store, tenant: str, customer: str) -> list[str]:
    """The customer (followed to the profile it was merged into) and every customer merged into it."""
    current = customer
    for _ in range(16):
        rows = store.query("SELECT merged_into FROM customers WHERE tenant_id = ? AND customer_id = ?",
                           (tenant, current))
        if not rows or not rows[0]["merged_into"]:
            break
        current = rows[0]["merged_into"]
    ids, todo = [current], [current]
    while todo:
        rows = store.query("SELECT customer_id FROM customers WHERE tenant_id = ? AND merged_into = ?",
                           (tenant, todo.pop()))
        for r in rows:
            if r["customer_id"] not in ids:
                ids.append(r["customer_id"])
                todo.append(r["customer_id"])
    return ids


def export(store: Store, tenant: str, customer: str) -> dict[str, Any]:
    """Everything the projections hold on ``customer``'s profile, as plain JSON-able values."""
    ids = profile_ids(store, tenant, customer)
    marks = ", ".join("?" for _ in ids)

    def rows(sql: str, *args: Any) -> list[dict[str, Any]]:
        return [_plain(r) for r in store.query(sql, (tenant, *ids, *args))]

    threads = rows(f"SELECT * FROM threads WHERE tenant_id = ? AND customer_id IN ({marks}) ORDER BY started_at")
    thread_ids = [t["thread_id"] for t in threads]
    return {
        "tenant_id": tenant, "customer_id": ids[0], "customer_ids": ids,
        "profile": rows(f"SELECT * FROM customers WHERE tenant_id = ? AND customer_id IN ({marks})"),
        "identities": rows(f"SELECT * FROM customer_identities WHERE tenant_id = ? AND customer_id IN ({marks}) "
                           "ORDER BY identity_key"),
        "threads": threads,
        "messages": rows(f"SELECT * FROM messages WHERE tenant_id = ? AND customer_id IN ({marks}) "
                         "ORDER BY occurred_at, event_id"),
        "enrichments": rows(f"SELECT * FROM message_enrichments WHERE tenant_id = ? AND customer_id IN ({marks}) "
                            "ORDER BY occurred_at"),
        "kpi_contacts": rows(f"SELECT * FROM kpi_contacts WHERE tenant_id = ? AND customer_id IN ({marks}) "
                             "ORDER BY started_at"),
        "outbound_deliveries": rows(f"SELECT * FROM outbound_deliveries WHERE tenant_id = ? AND customer_id IN "
                                    f"({marks})"),
        "routing": [{k: t.get(k) for k in ("thread_id", "queue", "assignee", "priority", "routed_to", "bot_id",
                                           "routing_reasons", "business_hours_open", "status")} for t in threads],
        "thread_ids": thread_ids,
    }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, str) and v[:1] in "[{":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        out[k] = v
    return out
