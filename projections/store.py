"""One small interface over the projection database: SQLite (default) or PostgreSQL.

``open_store(url)`` picks the backend from the URL: ``sqlite:///relative.db``,
``sqlite:////absolute.db``, ``sqlite:///:memory:`` or ``postgresql://user@host:port/db``.
SQL is written once with ``?`` placeholders and ANSI upserts (``ON CONFLICT ... DO UPDATE``),
which both dialects understand; the PostgreSQL backend rewrites ``?`` to ``%s``.

SQLite runs in WAL mode, so analysts (and ``parley api``) read while the projector writes.
Each thread gets its own connection, so the API can serve reads from a thread pool.

Migrations are numbered files in ``migrations/``: ``NNNN_name.sql`` for both dialects, or
``NNNN_name.sqlite.sql`` / ``NNNN_name.postgresql.sql`` where they differ. ``migrate()`` applies
the missing ones in order, each in its own transaction with its row in ``schema_migrations``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgresql))?\.sql$")
CHUNK = 400  # keys per IN (...) lookup: well under both databases' parameter limits


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations for ``dialect`` in order; a dialect-specific file wins over a shared one."""
    found: dict[int, tuple[int, Migration]] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m or (m.group(3) and m.group(3) != dialect):
            continue
        version, specific = int(m.group(1)), 1 if m.group(3) else 0
        if version in found and found[version][0] >= specific:
            continue
        found[version] = (specific, Migration(version, m.group(2), path.read_text()))
    return [found[v][1] for v in sorted(found)]


class Tx:
    """A cursor inside one transaction: every write of a batch goes through one of these."""

    def __init__(self, store: Store, conn: Any) -> None:
        self._store, self._conn = store, conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._store._exec(self._conn, sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            cur = self._conn.cursor()
            cur.executemany(self._store.sql(sql), rows)
            cur.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._store._rows(self._store._exec(self._conn, sql, params))


class Store:
    """Base of both backends: per-thread connections, transactions, migrations, upserts."""

    dialect = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    # -- backend hooks -------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def sql(self, sql: str) -> str:
        return sql

    def _rows(self, cursor: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    @contextmanager
    def _begin(self, conn: Any, exclusive: bool) -> Iterator[None]:
        raise NotImplementedError

    # -- public surface ------------------------------------------------------------------
    def conn(self) -> Any:
        """This thread's connection (opened on first use)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self._connect()
            with self._lock:
                self._all.append(c)
        return c

    @contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[Tx]:
        """One database transaction: committed on exit, rolled back on an exception."""
        conn = self.conn()
        with self._begin(conn, exclusive):
            yield Tx(self, conn)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read outside any explicit transaction (autocommit)."""
        return self._rows(self._exec(self.conn(), sql, params))

    def _exec(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        return conn.execute(self.sql(sql), tuple(params))

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:  # closing is best effort
                pass
        self._local = threading.local()

    def applied_migrations(self) -> list[int]:
        rows = self.query("SELECT version FROM schema_migrations ORDER BY version")
        return [r["version"] for r in rows]

    def migrate(self) -> list[str]:
        """Apply the missing migrations; return the names applied now."""
        self._ensure_migrations_table()
        done: list[str] = []
        for m in migrations(self.dialect):
            with self.transaction(exclusive=True) as tx:
                if tx.query("SELECT 1 AS x FROM schema_migrations WHERE version = ?", (m.version,)):
                    continue
                self._run_script(tx, m.sql)
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES (?, ?, CURRENT_TIMESTAMP)", (m.version, m.name))
            done.append(f"{m.version:04d}_{m.name}")
        return done

    def _ensure_migrations_table(self) -> None:
        with self.transaction(exclusive=True) as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")

    def _run_script(self, tx: Tx, script: str) -> None:
        for statement in split_sql(script):
            tx.execute(statement)

    # -- helpers used by the projection engine -------------------------------------------
    @staticmethod
    def upsert_sql(table: str, key: Sequence[str], columns: Sequence[str]) -> str:
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        conflict = f"ON CONFLICT ({', '.join(key)}) " + (
            f"DO UPDATE SET {updates}" if updates else "DO NOTHING")
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) {conflict}"

    @staticmethod
    def key_filter(key: Sequence[str], n: int) -> str:
        """``WHERE`` text matching ``n`` keys: ``k IN (?, ...)`` or row values for composites."""
        if len(key) == 1:
            return f"{key[0]} IN ({', '.join('?' for _ in range(n))})"
        one = "(" + ", ".join("?" for _ in key) + ")"
        return f"({', '.join(key)}) IN (VALUES {', '.join(one for _ in range(n))})"


def split_sql(script: str) -> list[str]:
    """Statements of a migration file (``;`` at line end ends one; ``--`` comments dropped)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    out, cur = [], []
    for ln in lines:
        cur.append(ln)
        if ln.rstrip().endswith(";"):
            stmt = "\n".join(cur).strip().rstrip(";").strip()
            if stmt:
                out.append(stmt)
            cur = []
    tail = "\n".join(cur).strip()
    if tail:
        out.append(tail)
    return out


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, url: str, path: str, readonly: bool = False) -> None:
        super().__init__(url)
        self.path = path
        self.readonly = readonly
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        c.row_factory = sqlite3.Row
        if self.path != ":memory:":
            c.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
        c.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; safe in WAL mode
        c.execute("PRAGMA busy_timeout=30000")
        # what a write overwrites or deletes is zeroed in the file, not left in free space: an
        # erasure's blanked text must not survive there (docs/PRIVACY.md)
        c.execute("PRAGMA secure_delete=ON")
        if self.readonly:
            c.execute("PRAGMA query_only=ON")
        return c

    def _rows(self, cursor: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in cursor.fetchall()]

    @contextmanager
    def _begin(self, conn: sqlite3.Connection, exclusive: bool) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE" if exclusive or not self.readonly else "BEGIN")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: str, readonly: bool = False) -> None:
        super().__init__(url)
        self.readonly = readonly

    def _connect(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    def sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _exec(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        # without parameters psycopg leaves ``%`` alone (LIKE patterns, modulo in views)
        return conn.execute(self.sql(sql), tuple(params)) if params else conn.execute(sql)

    def _rows(self, cursor: Any) -> list[dict[str, Any]]:
        return list(cursor.fetchall()) if cursor.description else []

    @contextmanager
    def _begin(self, conn: Any, exclusive: bool) -> Iterator[None]:
        with conn.transaction():
            if exclusive:  # serialise migrations between processes starting at once
                conn.execute("SELECT pg_advisory_xact_lock(7061726)")
            yield


def open_store(url: str, *, readonly: bool = False) -> Store:
    """A store for ``url``; nothing is connected until first use."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):]
        return SqliteStore(url, path or ":memory:", readonly=readonly)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PostgresStore(url.replace("postgresql+psycopg://", "postgresql://"), readonly=readonly)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")
