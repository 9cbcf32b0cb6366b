"""The dashboard in headless Chromium (Debian's ``chromium``): served by `parley api` over a
SQLite file, the page loads, fetches its data and draws every chart and table with it.

Two databases: the projections' sample log (every chart has data), and a generated day through
the real KPI engine (``tests.kpi_day``: agents with capacity, shifts and breaks, assignments,
queues that build up), where the agents' concurrency, idle time and occupancy and the waiting
contacts are not zero, and the page must show the very figures `/api/kpi/summary` gives.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import web

from parley.app.synthetic import sample
from parley.settings import ApiSettings
from projections import api, dashboard, query
from projections.store import open_store
from tests.kpi_day import run_day
from tests.projection_support import project_all, reference

pytestmark = pytest.mark.integration
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-quic",
         "--disable-dev-shm-usage", "--window-size=1400,2600", "--virtual-time-budget=20000"]
SCREENSHOT = Path(os.environ.get("PARLEY_SCREENSHOT_DIR", "/tmp"))


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        msg = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {msg}", pytrace=False)
        pytest.skip(msg)
    return path


async def _serve(url: str):
    port = _free_port()
    runner = web.AppRunner(api.make_app(ApiSettings(database_url=url)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def served(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/kpi.db"
    reference(sample.generate(120, seed=31), url)  # fills every projection table
    runner, base = await _serve(url)
    yield base, url
    await runner.cleanup()


@pytest.fixture(scope="module")
def day_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('day')}/day.db"
    project_all(url, run_day(5, 0.5).records()).close()
    return url


@pytest.fixture
async def served_day(day_db: str):
    runner, base = await _serve(day_db)
    yield base, day_db
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _chromium(binary: str, tmp: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        binary, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def _dom(binary: str, tmp: Path, url: str) -> Marks:
    marks = Marks()
    marks.feed(await _chromium(binary, tmp, "--dump-dom", url))
    assert marks.body.get("data-ready") == "1", marks.body
    return marks


class Marks(HTMLParser):
    """The DOM's SVG marks, grouped by the ``data-chart`` of their enclosing <svg>; the tiles;
    the cells of each table (``{table id: {row key: {column: data-value}}}``)."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, list[tuple[str, dict]]] = {}
        self.body: dict = {}
        self._chart: str | None = None
        self.tiles: dict[str, dict] = {}
        self.tables: dict[str, dict[str, dict[str, str | None]]] = {}
        self._table: str | None = None
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "svg":
            self._chart = a.get("data-chart")
            self.charts.setdefault(self._chart or "?", [])
        elif self._chart and tag in ("rect", "circle", "line", "text"):
            self.charts[self._chart].append((tag, a))
        elif tag == "div" and "data-tile" in a:
            self.tiles[a["data-tile"]] = a
        elif tag == "table":
            self._table = a.get("id")
            self.tables[self._table or "?"] = {}
        elif tag == "tr" and self._table and "data-key" in a:
            self._row = a["data-key"]
            self.tables[self._table][self._row] = {}
        elif tag == "td" and self._row is not None and self._table:
            self.tables[self._table][self._row][a["data-col"]] = a.get("data-value")

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        elif tag == "table":
            self._table = self._row = None


def _num(v: str | None) -> float | None:
    return None if v is None else float(v)


# -- the sample log: every chart draws its data ------------------------------------------------------
async def test_dashboard_renders_every_chart_with_data(chromium: str, served, tmp_path: Path):
    base, url = served
    marks = await _dom(chromium, tmp_path, f"{base}/dashboard")
    store = open_store(url, readonly=True)
    expected = dashboard.build(store, query.KpiFilter())
    store.close()

    bars = [a for tag, a in marks.charts["sl"] if tag == "rect" and a.get("class") == "bar"]
    points = [p for p in expected["sl_by_interval"]["points"] if p["sl_300"] is not None]
    assert len(bars) == len(points) > 20
    assert [(b["data-interval"], b["data-value"]) for b in bars] == [
        (p["interval"], f"{p['sl_300']:.4f}") for p in points]
    assert all(b["data-met"] == ("1" if float(b["data-value"]) >= 0.9 else "0") for b in bars)
    target = [a for tag, a in marks.charts["sl"] if tag == "line" and a.get("class") == "target"]
    assert [t["data-value"] for t in target] == ["0.9"]

    frt = [a for tag, a in marks.charts["frt"] if tag == "rect"]
    assert [int(a["data-value"]) for a in frt] == [b["count"] for b in expected["frt_histogram"]]
    assert sum(int(a["data-value"]) for a in frt) == expected["summary"]["answered"]

    means = {a["data-agent"]: float(a["data-value"]) for tag, a in marks.charts["concurrency"]
             if tag == "text" and a.get("class") == "mean"}
    assert means == {a["agent_id"]: a["concurrency"] for a in expected["agents"]}

    vol = [a for tag, a in marks.charts["volumes"] if tag == "rect"]
    assert len(vol) == 4 * len(expected["volumes_by_channel"])
    offered = {a["data-channel"]: int(a["data-value"]) for a in vol if a["data-series"] == "offered"}
    assert offered == {v["channel"]: v["offered"] for v in expected["volumes_by_channel"]}

    sent = [a for tag, a in marks.charts["sentiment"] if tag == "rect"]
    assert sum(int(a["data-value"]) for a in sent) == sum(r["total"] for r in expected["sentiment_by_interval"])


async def test_dashboard_filters_reach_the_charts(chromium: str, served, tmp_path: Path):
    base, url = served
    marks = await _dom(chromium, tmp_path, f"{base}/dashboard?channel=sms&from=2026-01-01T10:00")
    vol = {a["data-channel"] for tag, a in marks.charts["volumes"] if tag == "rect"}
    assert vol == {"sms"}
    bars = [a for tag, a in marks.charts["sl"] if tag == "rect"]
    assert bars and all(b["data-interval"] >= "2026-01-01T10:00:00Z" for b in bars)
    assert set(marks.tables["channels"]) == {"sms", "overall"}


# -- a generated day through the KPI engine: what the page claims, with real values -----------------
async def test_dashboard_shows_the_api_figures_and_the_agents_day(chromium: str, served_day,
                                                                 tmp_path: Path):
    base, url = served_day
    marks = await _dom(chromium, tmp_path, f"{base}/dashboard")
    store = open_store(url, readonly=True)
    try:
        summary = query.kpi_summary(store, query.KpiFilter())
        d = dashboard.build(store, query.KpiFilter())
    finally:
        store.close()

    # the same figures as /api/kpi/summary and parley kpi: tiles and the per-channel table
    s = summary["overall"]
    for tile, want in (("sl300", s["sl_300"]["sl"]), ("sl20", s["sl_20"]["sl"]),
                       ("frt50", s["frt_p50_ms"]), ("frt90", s["frt_p90_ms"]),
                       ("containment", s["bot_containment"])):
        assert _num(marks.tiles[tile].get("data-value")) == want, tile
    assert marks.tiles["sl300"]["data-met"] == ("1" if s["sl_300"]["met"] else "0")
    rows = marks.tables["channels"]
    assert set(rows) == {*summary["channels"], "overall"}
    for name, f in [*summary["channels"].items(), ("overall", s)]:
        got = {k: _num(rows[name].get(k)) for k in ("sl_300", "sl_20", "frt_p50_ms",
                                                     "frt_p90_ms", "bot_containment")}
        assert got == {"sl_300": f["sl_300"]["sl"], "sl_20": f["sl_20"]["sl"],
                       "frt_p50_ms": f["frt_p50_ms"], "frt_p90_ms": f["frt_p90_ms"],
                       "bot_containment": f["bot_containment"]}, name

    # team tiles: concurrency, occupancy and idle time, none of them zero
    team = d["team"]
    assert team["concurrency"] > 0.3 and 0 < team["occupancy"] < 1 and team["idle_ms"] > 0
    assert _num(marks.tiles["concurrency"]["data-value"]) == team["concurrency"]
    assert _num(marks.tiles["occupancy"]["data-value"]) == team["occupancy"]
    assert _num(marks.tiles["idle"]["data-value"]) == team["idle_ms"]

    # concurrency per agent: the time at each level, drawn, adds up to the agent's levels
    online = [a for a in d["agents"] if a["online_ms"] > 0]
    drawn: dict[str, dict[str, int]] = {}
    for tag, a in marks.charts["concurrency"]:
        if tag == "rect" and a.get("class") == "level":
            drawn.setdefault(a["data-agent"], {})[a["data-level"]] = int(a["data-ms"])
    assert drawn == {a["agent_id"]: {k: v for k, v in a["time_at_level_ms"].items() if v}
                     for a in online}
    assert sum(1 for a in online if a["peak_concurrency"] >= 2) >= 3
    assert all(set(levels) - {"0"} for levels in drawn.values())  # every agent had conversations

    # the per-agent table
    table = marks.tables["agents"]
    assert set(table) == {a["agent_id"] for a in d["agents"]}
    for a in d["agents"]:
        row = table[a["agent_id"]]
        assert {k: _num(row.get(k)) for k in ("online_ms", "idle_ms", "occupancy", "concurrency",
                                              "answered", "frt_p90_ms")} == {
            k: (None if a[k] is None else float(a[k])) for k in (
                "online_ms", "idle_ms", "occupancy", "concurrency", "answered", "frt_p90_ms")}
    assert sum(a["answered"] for a in d["agents"]) == s["answered"]

    # the contacts waiting over the day: bursts, per queue
    waits = [a for tag, a in marks.charts["waiting"] if tag == "circle"]
    assert [int(a["data-value"]) for a in waits] == [p["peak"] for p in d["waiting_by_interval"]]
    assert max(p["peak"] for p in d["waiting_by_interval"]) >= 3
    stacked = [a for tag, a in marks.charts["waiting"] if tag == "rect"]
    assert {a["data-queue"] for a in stacked} == {
        q for p in d["waiting_by_interval"] for q, v in p["by_queue"].items() if v}

    png = tmp_path / "dashboard-day.png"
    await _chromium(chromium, tmp_path, f"--screenshot={png}", f"{base}/dashboard")
    assert png.exists() and png.stat().st_size > 100_000
    shutil.copy(png, SCREENSHOT / "parley-dashboard-day.png")


async def test_dashboard_screenshot(chromium: str, served, tmp_path: Path):
    base, _url = served
    png = tmp_path / "dashboard.png"
    await _chromium(chromium, tmp_path, f"--screenshot={png}", f"{base}/dashboard")
    assert png.exists() and png.stat().st_size > 50_000  # a page of charts, not a blank one
    keep = os.environ.get("PARLEY_SCREENSHOT_DIR")
    if keep:
        shutil.copy(png, Path(keep) / "dashboard.png")
