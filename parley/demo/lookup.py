"""Look up, in the projection database, the ids the stream processors assigned to a demo step.

A Resolve step needs the thread id and the customer id; a Context step the customer id. The
scenario knows neither (the identity processor and the threads processor assign them), so the
driver reads them from the SQLite file the demo's projections are filling. Pure apart from the
connection passed in: ``ids_for(conn, tenant, step)`` -> ``Ids`` (found) or a reason (not yet).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from parley.demo.scenario import Context, Resolve, Step

NO_CUSTOMER = "customer not projected"
NO_THREAD = "no open routed thread"


@dataclass(frozen=True)
class Ids:
    customer_id: str
    thread_id: str | None = None  # None for a Context step


def identity_keys(step: Resolve | Context) -> list[str]:
    """The customer's identity keys as the identity processor stores them, the step's own first."""
    c = step.customer
    first = step.channel if isinstance(step, Resolve) else c.channel
    keys = [f"channel:{first}:{c.handle(first)}"]
    keys += [f"channel:{ch}:{h}" for ch, h in c.handles if ch != first]
    return keys + [f"phone:{c.phone}", f"email:{c.email.strip().lower()}"]


def customer_id(conn: sqlite3.Connection, tenant: str, keys: list[str]) -> str | None:
    """The current owner of the first of ``keys`` the identities table holds, else None."""
    marks = ",".join("?" * len(keys))
    rows = conn.execute(f"SELECT identity_key, customer_id FROM customer_identities "
                        f"WHERE tenant_id = ? AND identity_key IN ({marks}) "
                        "AND customer_id IS NOT NULL", [tenant, *keys]).fetchall()
    owners = {k: c for k, c in rows}
    return next((owners[k] for k in keys if k in owners), None)


def open_thread(conn: sqlite3.Connection, tenant: str, customer: str, before_ms: int) -> str | None:
    """The customer's most recent thread not resolved, started at or before ``before_ms``, and
    already routed: an agent closes what reached them. (The scripted agents act on the
    scenario's clock, ahead of the pipeline; a resolve that overtook the routing decision would
    close a contact before routing counted it.)"""
    row = conn.execute("SELECT thread_id FROM threads WHERE tenant_id = ? AND customer_id = ? "
                       "AND (status IS NULL OR status <> 'resolved') AND started_at <= ? "
                       "AND routed_to IS NOT NULL "
                       "ORDER BY started_at DESC, thread_id DESC LIMIT 1",
                       (tenant, customer, before_ms)).fetchone()
    return row[0] if row else None


def ids_for(conn: sqlite3.Connection, tenant: str, step: Resolve | Context) -> Ids | str:
    """The ids ``step`` needs, or why they are not there (yet): NO_CUSTOMER or NO_THREAD."""
    try:
        customer = customer_id(conn, tenant, identity_keys(step))
    except sqlite3.OperationalError:  # tables not migrated yet
        return NO_CUSTOMER
    if customer is None:
        return NO_CUSTOMER
    if isinstance(step, Context):
        return Ids(customer)
    thread = open_thread(conn, tenant, customer, step.at_ms)
    return Ids(customer, thread) if thread else NO_THREAD


def needs_lookup(step: Step) -> bool:
    return isinstance(step, Resolve | Context)


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to the projections' SQLite file (WAL: never blocks the writer)."""
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, check_same_thread=False,
                           timeout=5)
    conn.execute("PRAGMA query_only=ON")
    return conn
