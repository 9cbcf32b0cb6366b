"""`parley kpi`: the KPI tables in the terminal, as CSV or JSON, or exported to Parquet.

Tables: ``intervals`` (SL(300)/SL(20) and the other figures per 15-minute interval, from the
streaming IntervalStat records), ``channels`` (the period's figures per channel and overall,
recomputed from the contact measures with the KPI processor's own arithmetic,
``streams.kpi.arithmetic``; bot containment from its per-thread counts), ``agents`` (online,
idle, occupancy, time-weighted concurrency, peak, time at each level), ``contacts`` (the contact
measures themselves).
Filters: ``--from/--to`` (the interval a contact was offered in), ``--channel``, ``--queue``,
``--agent``, ``--tenant``. Wire it with ``app.command("kpi")(projections.cli_kpi.main)``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from projections import query
from projections.store import Store, open_store

TABLES = ("intervals", "channels", "agents", "contacts")


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def collect(store: Store, f: query.KpiFilter, tables: tuple[str, ...] = TABLES) -> dict[str, list[dict]]:
    """The selected tables as flat rows (one dict per row, JSON-ready)."""
    out: dict[str, list[dict]] = {}
    if "intervals" in tables:
        out["intervals"] = [_interval_row(r) for r in query.kpi_intervals(store, f)]
    if "channels" in tables:
        s = query.kpi_summary(store, f)
        out["channels"] = [_figures_row(ch, v) for ch, v in s["channels"].items()]
        out["channels"].append(_figures_row("(all)", s["overall"]))
    if "agents" in tables:
        out["agents"] = query.kpi_agents(store, f)
    if "contacts" in tables:
        out["contacts"] = query.kpi_contacts(store, f)
    return out


def flat(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for CSV and Parquet: nested values (levels, extra fields) as JSON text."""
    return [{k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
             for k, v in r.items()} for r in rows]


def _interval_row(r: dict[str, Any]) -> dict[str, Any]:
    row = {"interval_start": r["interval_start"], "interval_utc": r["interval"],
           "tenant_id": r["tenant_id"], "dimension": r["dimension"],
           "dimension_value": r["dimension_value"], "sl_300_met": r["met_300"],
           "sl_20_met": r["met_20"], "definition_version": r["definition_version"]}
    row.update({k: r["metrics"][k] for k in sorted(r["metrics"])})
    return row


def _figures_row(channel: str, v: dict[str, Any]) -> dict[str, Any]:
    return {"channel": channel, "offered": v["offered"], "answered": v["answered"],
            "resolved": v["resolved"], "sl_300": v["sl_300"]["sl"], "sl_300_met": v["sl_300"]["met"],
            "sl_20": v["sl_20"]["sl"], "sl_20_met": v["sl_20"]["met"],
            "frt_mean_ms": v["frt_mean_ms"], "frt_p50_ms": v["frt_p50_ms"],
            "frt_p90_ms": v["frt_p90_ms"], "reply_gap_mean_ms": v["reply_gap_mean_ms"],
            "negative_share": v["negative_share"], "threads": v["threads"],
            "bot_contained": v["bot_contained"], "bot_containment": v["bot_containment"]}


# -- output ------------------------------------------------------------------------------------
def to_csv(rows: list[dict[str, Any]]) -> str:
    rows = flat(rows)
    cols = _columns(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return cols


def write_parquet(tables: dict[str, list[dict]], path: Path) -> list[Path]:
    """One Parquet file per table: ``path`` itself for one table, ``path/<table>.parquet`` else."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    written = []
    if len(tables) > 1:
        path.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        target = path if len(tables) == 1 else path / f"{name}.parquet"
        rows = flat(rows)
        cols = _columns(rows)
        table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows]) if rows else pa.table({})
        pq.write_table(table, target)
        written.append(target)
    return written


def render(tables: dict[str, list[dict]], console: Any = None) -> None:
    """Rich tables in the terminal; SL figures in green when the target is met, red when not."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for name, rows in tables.items():
        t = Table(title=_TITLES[name], header_style="bold")
        cols = [c for c in _SHOW.get(name, _columns(rows)) if any(c in r for r in rows)] or _SHOW.get(name, [])
        for c in cols:
            t.add_column(c, justify="left" if c in _LEFT else "right")
        for r in rows:
            t.add_row(*[_cell(c, r) for c in cols])
        if not rows:
            t.caption = "no rows for this filter"
        console.print(t)


_TITLES = {"intervals": "Service level per 15-minute interval (target 90 % within 300 s)",
           "channels": "Period per channel (recomputed from contact measures)",
           "agents": "Agents: presence, occupancy, time-weighted concurrency, time at each level",
           "contacts": "Contacts"}
_SHOW = {
    "intervals": ["interval_utc", "dimension", "dimension_value", "offered", "answered", "sl_300",
                  "sl_20", "frt_mean_ms", "frt_p50_ms", "frt_p90_ms"],
    "channels": ["channel", "offered", "answered", "resolved", "sl_300", "sl_20", "frt_p50_ms",
                 "frt_p90_ms", "bot_containment", "negative_share"],
    "agents": ["agent_id", "intervals", "online_ms", "idle_ms", "occupancy", "concurrency",
               "peak_concurrency", "time_at_level_ms"],
    "contacts": ["contact_id", "channel", "queue", "agent_id", "started_at", "frt_ms", "status"],
}
_LEFT = {"interval_utc", "dimension", "dimension_value", "channel", "agent_id", "contact_id",
         "queue", "status"}


def _cell(col: str, r: dict[str, Any]) -> str:
    v = r.get(col)
    if v is None:
        return "–"
    if col in ("sl_300", "sl_20"):
        met = r.get(f"{col}_met")
        colour = "green" if met else "red" if met is False else "white"
        return f"[{colour}]{v * 100:.1f} %{' ✓' if met else ' ✗' if met is False else ''}[/]"
    if col in ("negative_share", "bot_containment", "occupancy"):
        return f"{v * 100:.1f} %"
    if col == "time_at_level_ms":
        return " ".join(f"{lv}:{_duration(ms)}" for lv, ms in v.items())
    if col.endswith("_ms") and col not in ("started_at",):
        return _duration(v)
    if col == "started_at":
        return query.iso(v) or "–"
    if col == "concurrency":
        return f"{v:.2f}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _duration(ms: float) -> str:
    """Whole seconds rounded half up (as the dashboard shows them)."""
    s = int((ms + 500) // 1000)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# -- the command -------------------------------------------------------------------------------
def main(
    start: str = typer.Option(None, "--from", help="Start (UTC): 2026-01-01, 2026-01-01T08:00 or epoch ms."),
    end: str = typer.Option(None, "--to", help="End, exclusive (same forms as --from)."),
    channel: str = typer.Option(None, "--channel", help="Only this channel."),
    queue: str = typer.Option(None, "--queue", help="Only this queue."),
    agent: str = typer.Option(None, "--agent", help="Only this agent."),
    tenant: str = typer.Option(None, "--tenant", help="Only this tenant."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, csv or json."),
    table: str = typer.Option("all", "--table",
                              help=f"all, or one of: {', '.join(TABLES)} (csv: one table, default intervals)."),
    parquet: Path = typer.Option(None, "--parquet",
                                 help="Also write Parquet: a file (one table) or a directory (several)."),
    database_url: str = typer.Option(None, "--database-url", help="Default: the API settings' database URL."),
) -> None:
    """KPI tables in the terminal: SL(300) against 90 % per interval, per channel, per agent."""
    tables = _tables(table, fmt)
    url = database_url or _default_url()
    store = open_store(url, readonly=True)
    try:
        data = collect(store, query.KpiFilter.of(start, end, tenant=tenant, channel=channel,
                                                 queue=queue, agent=agent), tables)
    finally:
        store.close()
    if parquet:
        for p in write_parquet(data, parquet):
            typer.echo(f"wrote {p}", err=True)
    if fmt is Format.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif fmt is Format.csv:
        sys.stdout.write(to_csv(data[tables[0]]))
    else:
        render(data)


def _tables(table: str, fmt: Format) -> tuple[str, ...]:
    if table == "all":
        return ("intervals",) if fmt is Format.csv else ("intervals", "channels", "agents")
    if table not in TABLES:
        raise typer.BadParameter(f"--table must be all or one of {', '.join(TABLES)}")
    return (table,)


def _default_url() -> str:
    from parley.settings import ApiSettings

    return ApiSettings().database_url


app = typer.Typer(add_completion=False, help=__doc__)
app.command()(main)


if __name__ == "__main__":
    app()
