"""What `parley demo` prints at the end, and the checks behind it.

``worker_stats``: the worker's latest ``worker.stats`` log line (its ``late`` count says whether
the run is reproducible). ``same_figures``: the period's KPI figures as ``parley kpi`` computes
them, compared with what the running API and the dashboard's data endpoint serve. The tables
show them the way ``parley kpi`` does (durations in whole seconds, rounded half up).
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.table import Table


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def worker_stats(log: Path, wait_s: float = 2.5) -> dict[str, Any] | None:
    """The worker's latest ``worker.stats`` line in ``log`` (logged every second in the demo),
    after ``wait_s``, so it covers everything the worker did."""
    time.sleep(wait_s)
    last = None
    for line in log.read_text(errors="replace").splitlines():
        if '"worker.stats"' in line:
            try:
                last = json.loads(line)
            except ValueError:
                continue
    return last


def late_count(stats: dict[str, Any] | None) -> int | None:
    if not stats:
        return None
    return sum(int(v.get("late", 0)) for v in (stats.get("stages") or {}).values())


def same_figures(database_url: str, api: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The period's figures as ``parley kpi`` computes them, the agents as the dashboard shows
    them, and where the API at ``api`` (base URL) or the dashboard's data differ from them."""
    from projections import cli_kpi, dashboard, query
    from projections.store import open_store

    store = open_store(database_url, readonly=True)
    try:
        cli = cli_kpi.collect(store, query.KpiFilter(), ("channels", "agents"))
        summary = query.kpi_summary(store, query.KpiFilter())
        board_local = dashboard.build(store, query.KpiFilter())
    finally:
        store.close()
    served = get_json(f"{api}/api/kpi/summary")
    board = get_json(f"{api}/api/dashboard")
    agents = get_json(f"{api}/api/kpi/agents")["agents"]
    want = json.loads(json.dumps(summary, default=str))
    want = {k: want[k] for k in ("overall", "channels")}
    diffs = [f"{name} differs from parley kpi" for name, got in (
        ("/api/kpi/summary", {k: served[k] for k in ("overall", "channels")}),
        ("/api/dashboard", {"overall": board["summary"], "channels": board["channels"]})) if got != want]
    cli_overall = next(r for r in cli["channels"] if r["channel"] == "(all)")
    if cli_overall["sl_300"] != summary["overall"]["sl_300"]["sl"]:
        diffs.append("parley kpi's table differs from its summary")
    if json.loads(json.dumps(cli["agents"], default=str)) != agents:
        diffs.append("/api/kpi/agents differs from parley kpi --table agents")
    return summary, board_local["agents"], diffs


def channels_table(summary: dict[str, Any]) -> Table:
    t = Table(title=f"KPIs of the simulated day (as of {summary['as_of_utc']}; same figures as `parley kpi`)")
    for col in ("channel", "offered", "answered", "SL(300)", "90/300", "SL(20)", "80/20", "FRT p50",
                "FRT p90", "bot containment"):
        t.add_column(col, justify="left" if col == "channel" else "right")
    for name, f in [*summary["channels"].items(), ("overall", summary["overall"])]:
        t.add_row(name, str(f["offered"]), str(f["answered"]), _pct(f["sl_300"]["sl"]),
                  _met(f["sl_300"]["met"]), _pct(f["sl_20"]["sl"]), _met(f["sl_20"]["met"]),
                  _dur(f["frt_p50_ms"]), _dur(f["frt_p90_ms"]), _pct(f.get("bot_containment")))
    return t


def agents_table(agents: list[dict[str, Any]]) -> Table:
    t = Table(title="Agents (time-weighted concurrency while online; `parley kpi --table agents`)")
    for col in ("agent", "online", "idle", "occupancy", "concurrency", "peak", "answered first",
                "FRT p50", "time at each level"):
        t.add_column(col, justify="left" if col in ("agent", "time at each level") else "right")
    for a in agents:
        levels = " ".join(f"{lv}:{_dur(ms)}" for lv, ms in sorted(a["time_at_level_ms"].items(),
                                                                 key=lambda kv: int(kv[0])))
        t.add_row(a["agent_id"], _dur(a["online_ms"]), _dur(a["idle_ms"]), _pct(a["occupancy"]),
                  "-" if a["concurrency"] is None else f"{a['concurrency']:.2f}", str(a["peak_concurrency"]),
                  str(a["answered"]), _dur(a["frt_p50_ms"]), levels)
    return t


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _met(v: bool | None) -> str:
    return "-" if v is None else ("[green]met" if v else "[red]missed")


def _dur(ms: float | None) -> str:
    from projections.cli_kpi import _duration

    return "-" if ms is None else _duration(ms)
