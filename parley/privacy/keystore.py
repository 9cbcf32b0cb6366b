"""The key store: one SQL table of wrapped keys, and what erasures and retention did to it.

Why a table, not a compacted topic: a key must be *gone* when a subject is erased. A compacted
topic keeps the old value on disk until its segment is no longer active and the cleaner has
run (hours, or never for a quiet topic), and a wrapped key next to its master key is not
destroyed. A row deleted with SQLite's ``secure_delete`` (deleted content overwritten with
zeros) followed by a WAL checkpoint that truncates the log is gone from the file at once.
PostgreSQL keeps dead tuples until ``VACUUM`` and old pages in WAL until it is recycled: there,
erasure runs ``VACUUM`` on the key table, and the WAL (and backups) retention bounds the rest
(docs/PRIVACY.md). A table also makes creating a key race-free across processes
(``INSERT ... ON CONFLICT DO NOTHING``, then read the row that won).

Tables (``sqlite:///path`` or ``postgresql://...``, created on first use):

- ``privacy_keys``: (tenant, subject, kind, period, gen) -> the key wrapped under the master key;
- ``privacy_subjects``: a subject's current generation and when it was last erased;
- ``privacy_identities``: the identity-key tokens each subject showed (erasure tells the stream
  stages which entries to drop, by these keys);
- ``privacy_tenants``: each tenant's index key (tokens), wrapped;
- ``privacy_log``: what was destroyed, in order (``seq``): every process's key cache follows it.

No personal data is stored here: subjects are customer ids, identities are tokens.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TABLES = """
CREATE TABLE IF NOT EXISTS privacy_keys (
  tenant_id TEXT NOT NULL, subject_id TEXT NOT NULL, kind TEXT NOT NULL, period BIGINT NOT NULL,
  gen INTEGER NOT NULL, wrapped TEXT NOT NULL, kek TEXT NOT NULL, created_at BIGINT NOT NULL,
  PRIMARY KEY (tenant_id, subject_id, kind, period, gen));
CREATE INDEX IF NOT EXISTS privacy_keys_period ON privacy_keys (tenant_id, kind, period);
CREATE TABLE IF NOT EXISTS privacy_subjects (
  tenant_id TEXT NOT NULL, subject_id TEXT NOT NULL, gen INTEGER NOT NULL, erased_at BIGINT,
  PRIMARY KEY (tenant_id, subject_id));
CREATE TABLE IF NOT EXISTS privacy_identities (
  tenant_id TEXT NOT NULL, subject_id TEXT NOT NULL, identity_key TEXT NOT NULL,
  PRIMARY KEY (tenant_id, subject_id, identity_key));
CREATE TABLE IF NOT EXISTS privacy_tenants (
  tenant_id TEXT NOT NULL PRIMARY KEY, wrapped TEXT NOT NULL, kek TEXT NOT NULL, created_at BIGINT NOT NULL);
"""
_LOG = {
    "sqlite": "CREATE TABLE IF NOT EXISTS privacy_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
              "tenant_id TEXT NOT NULL, subject_id TEXT, action TEXT NOT NULL, period BIGINT, gen INTEGER, "
              "at BIGINT NOT NULL, keys INTEGER NOT NULL)",
    "postgresql": "CREATE TABLE IF NOT EXISTS privacy_log (seq BIGSERIAL PRIMARY KEY, "
                  "tenant_id TEXT NOT NULL, subject_id TEXT, action TEXT NOT NULL, period BIGINT, gen INTEGER, "
                  "at BIGINT NOT NULL, keys INTEGER NOT NULL)",
}


@dataclass(frozen=True)
class LogEntry:
    """One destruction: ``erased`` (every key of a subject, generations below ``gen``) or
    ``expired`` (every content key of a tenant with a period below ``period``)."""

    seq: int
    tenant: str
    subject: str | None
    action: str
    period: int | None
    gen: int | None
    at: int
    keys: int


class KeyStore:
    """The SQL side; one connection per thread. All methods are short transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self._ready = False

    # --- connections -----------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.dialect == "postgresql":
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        path = self.url.split("sqlite:///", 1)[1] if self.url.startswith("sqlite:///") else self.url
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA secure_delete=ON")  # a deleted key's bytes are overwritten, not left in free pages
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _conn(self) -> Any:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self._connect()
            with self._lock:
                self._conns.append(c)
            if not self._ready:
                self._migrate(c)
        return c

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._conn().execute(self._sql(sql), tuple(params)).fetchall())

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self._sql(sql), tuple(params))

    def _migrate(self, conn: Any) -> None:
        with self._tx(conn):
            for statement in [s for s in _TABLES.split(";") if s.strip()] + [_LOG[self.dialect]]:
                conn.execute(statement)
        self._ready = True

    class _Tx:
        def __init__(self, store: KeyStore, conn: Any) -> None:
            self.store, self.conn = store, conn

        def __enter__(self) -> Any:
            self.conn.execute("BEGIN IMMEDIATE" if self.store.dialect == "sqlite" else "BEGIN")
            return self.conn

        def __exit__(self, exc_type: Any, *_: Any) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self, conn: Any | None = None) -> KeyStore._Tx:
        return KeyStore._Tx(self, conn or self._conn())

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._local = threading.local()

    # --- keys --------------------------------------------------------------------------------

    def generation(self, tenant: str, subject: str) -> tuple[int, int | None]:
        """(the subject's current generation, when it was last erased)."""
        rows = self._rows("SELECT gen, erased_at FROM privacy_subjects WHERE tenant_id = ? AND subject_id = ?",
                          (tenant, subject))
        return (int(rows[0][0]), rows[0][1]) if rows else (0, None)

    def wrapped(self, tenant: str, subject: str, kind: str, period: int, gen: int) -> tuple[str, str] | None:
        """(wrapped key, master key id) or None when there is no such key (never made, or destroyed)."""
        rows = self._rows("SELECT wrapped, kek FROM privacy_keys WHERE tenant_id = ? AND subject_id = ? "
                          "AND kind = ? AND period = ? AND gen = ?", (tenant, subject, kind, period, gen))
        return (rows[0][0], rows[0][1]) if rows else None

    def create(self, tenant: str, subject: str, kind: str, period: int, gen: int, wrapped: str, kek: str,
               at: int) -> tuple[str, str] | None:
        """Store a new key unless one exists (another process won the race): the key that is
        stored now. None when the subject was erased past ``gen`` meanwhile (seal again)."""
        with self._tx() as c:
            row = self._exec(c, "SELECT gen FROM privacy_subjects WHERE tenant_id = ? AND subject_id = ?",
                             (tenant, subject)).fetchone()
            if row is not None and int(row[0]) != gen:
                return None
            if row is None:
                self._exec(c, "INSERT INTO privacy_subjects (tenant_id, subject_id, gen, erased_at) "
                              "VALUES (?, ?, ?, NULL) ON CONFLICT (tenant_id, subject_id) DO NOTHING",
                           (tenant, subject, gen))
            self._exec(c, "INSERT INTO privacy_keys (tenant_id, subject_id, kind, period, gen, wrapped, kek, "
                          "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
                          "(tenant_id, subject_id, kind, period, gen) DO NOTHING",
                       (tenant, subject, kind, period, gen, wrapped, kek, at))
            got = self._exec(c, "SELECT wrapped, kek FROM privacy_keys WHERE tenant_id = ? AND subject_id = ? "
                                "AND kind = ? AND period = ? AND gen = ?",
                             (tenant, subject, kind, period, gen)).fetchone()
        return (got[0], got[1]) if got else None

    def index_key(self, tenant: str, wrapped: str, kek: str, at: int) -> tuple[str, str]:
        """The tenant's wrapped index key, stored now if it had none."""
        with self._tx() as c:
            self._exec(c, "INSERT INTO privacy_tenants (tenant_id, wrapped, kek, created_at) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (tenant_id) DO NOTHING", (tenant, wrapped, kek, at))
            row = self._exec(c, "SELECT wrapped, kek FROM privacy_tenants WHERE tenant_id = ?", (tenant,)).fetchone()
        return row[0], row[1]

    def note_identities(self, tenant: str, subject: str, keys: Iterable[str]) -> None:
        rows = [(tenant, subject, k) for k in keys]
        if not rows:
            return
        with self._tx() as c:
            for r in rows:
                self._exec(c, "INSERT INTO privacy_identities (tenant_id, subject_id, identity_key) VALUES (?, ?, ?) "
                              "ON CONFLICT (tenant_id, subject_id, identity_key) DO NOTHING", r)

    def identities(self, tenant: str, subjects: Sequence[str]) -> dict[str, list[str]]:
        """subject -> the identity-key tokens it showed."""
        if not subjects:
            return {}
        marks = ", ".join("?" for _ in subjects)
        out: dict[str, list[str]] = {s: [] for s in subjects}
        for subject, key in self._rows(f"SELECT subject_id, identity_key FROM privacy_identities WHERE tenant_id = ? "
                                       f"AND subject_id IN ({marks}) ORDER BY identity_key", (tenant, *subjects)):
            out[subject].append(key)
        return out

    def subjects(self, tenant: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT subject_id FROM privacy_subjects WHERE tenant_id = ? "
                                         "ORDER BY subject_id", (tenant,))]

    def key_periods(self, tenant: str, subject: str) -> list[tuple[str, int, int]]:
        """(kind, period, gen) of the subject's keys (for an export: what is held)."""
        return [(r[0], int(r[1]), int(r[2])) for r in self._rows(
            "SELECT kind, period, gen FROM privacy_keys WHERE tenant_id = ? AND subject_id = ? ORDER BY kind, period",
            (tenant, subject))]

    # --- destruction -------------------------------------------------------------------------

    def erase(self, tenant: str, subjects: Sequence[str], at: int) -> dict[str, int]:
        """Destroy every key of ``subjects``; their next keys are a new generation. subject -> keys destroyed."""
        out = {}
        with self._tx() as c:
            for s in subjects:
                row = self._exec(c, "SELECT gen FROM privacy_subjects WHERE tenant_id = ? AND subject_id = ?",
                                 (tenant, s)).fetchone()
                gen = (int(row[0]) if row else 0) + 1
                n = self._exec(c, "DELETE FROM privacy_keys WHERE tenant_id = ? AND subject_id = ?",
                               (tenant, s)).rowcount
                self._exec(c, "DELETE FROM privacy_identities WHERE tenant_id = ? AND subject_id = ?", (tenant, s))
                self._exec(c, "INSERT INTO privacy_subjects (tenant_id, subject_id, gen, erased_at) "
                              "VALUES (?, ?, ?, ?) "
                              "ON CONFLICT (tenant_id, subject_id) DO UPDATE SET gen = excluded.gen, "
                              "erased_at = excluded.erased_at", (tenant, s, gen, at))
                self._exec(c, "INSERT INTO privacy_log (tenant_id, subject_id, action, period, gen, at, keys) "
                              "VALUES (?, ?, 'erased', NULL, ?, ?, ?)", (tenant, s, gen, at, n))
                out[s] = n
        self.purge_freed()
        return out

    def expire(self, tenant: str, before_period: int, at: int) -> int:
        """Destroy the tenant's content keys of periods before ``before_period``; how many."""
        with self._tx() as c:
            n = self._exec(c, "DELETE FROM privacy_keys WHERE tenant_id = ? AND kind = 'c' AND period < ?",
                           (tenant, before_period)).rowcount
            last = self._exec(c, "SELECT MAX(period) FROM privacy_log WHERE tenant_id = ? AND action = 'expired'",
                              (tenant,)).fetchone()
            if n or last[0] is None or last[0] < before_period:
                self._exec(c, "INSERT INTO privacy_log (tenant_id, subject_id, action, period, gen, at, keys) "
                              "VALUES (?, NULL, 'expired', ?, NULL, ?, ?)", (tenant, before_period, at, n))
        if n:
            self.purge_freed()
        return n

    def purge_freed(self) -> None:
        """Make deleted rows unrecoverable from the files now: SQLite's WAL is checkpointed and
        truncated (the deleted pages were zeroed by ``secure_delete``); PostgreSQL vacuums the
        key table (its WAL is recycled on its own schedule)."""
        conn = self._conn()
        if self.dialect == "sqlite":
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.execute("VACUUM privacy_keys")

    def log(self, after: int = 0) -> list[LogEntry]:
        """Destructions after ``seq``, oldest first."""
        return [LogEntry(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), int(r[7])) for r in self._rows(
            "SELECT seq, tenant_id, subject_id, action, period, gen, at, keys FROM privacy_log WHERE seq > ? "
            "ORDER BY seq", (after,))]

    def last_seq(self) -> int:
        row = self._rows("SELECT MAX(seq) FROM privacy_log")
        return int(row[0][0] or 0)

    def expired_before(self, tenant: str) -> int | None:
        """The tenant's retention cut: content of periods before it is shredded."""
        row = self._rows("SELECT MAX(period) FROM privacy_log WHERE tenant_id = ? AND action = 'expired'", (tenant,))
        return None if row[0][0] is None else int(row[0][0])

    def tenants(self) -> list[str]:
        rows = self._rows("SELECT tenant_id FROM privacy_tenants UNION SELECT DISTINCT tenant_id FROM privacy_keys")
        return sorted({r[0] for r in rows})
