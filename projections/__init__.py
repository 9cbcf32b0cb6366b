"""Projections: the event topics materialised into SQL for people to read.

``customers`` (unified profiles), ``threads`` (threads and their messages), ``kpis`` (KPI
tables). Each is declared as data in its module (``PROJECTION``): topics, tables, and pure
``route``/``apply`` functions; ``engine`` applies them in batches, ``runner`` feeds them from
Kafka, ``store`` hides SQLite/PostgreSQL, ``query`` reads them for ``parley kpi`` and ``parley api``.
"""

from __future__ import annotations

from projections import customers, kpis, threads
from projections.engine import Projection

PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (customers.PROJECTION, threads.PROJECTION, kpis.PROJECTION)
}


def get(name: str) -> Projection:
    """The projection called ``name``; ValueError names the known ones."""
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise ValueError(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}") from None
