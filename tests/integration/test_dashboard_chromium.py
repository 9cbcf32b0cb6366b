"""The dashboard in headless Chromium (Debian's ``chromium``): served by `parley api` over a
SQLite file of KPI rows, the page loads, fetches its data and draws every chart with it."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import web

from parley.settings import ApiSettings
from projections import api, query, sample
from projections.store import open_store
from tests.projection_support import reference

pytestmark = pytest.mark.integration
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-quic",
         "--disable-dev-shm-usage", "--window-size=1400,1500", "--virtual-time-budget=20000"]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        msg = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {msg}", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture
async def served(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/kpi.db"
    reference(sample.generate(120, seed=31), url)  # fills every projection table
    port = _free_port()
    runner = web.AppRunner(api.make_app(ApiSettings(database_url=url)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", url
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


class Marks(HTMLParser):
    """The DOM's SVG marks, grouped by the ``data-chart`` of their enclosing <svg>."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, list[tuple[str, dict]]] = {}
        self.body: dict = {}
        self._chart: str | None = None
        self.tiles: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "svg":
            self._chart = a.get("data-chart")
            self.charts.setdefault(self._chart or "?", [])
        elif self._chart and tag in ("rect", "circle", "line"):
            self.charts[self._chart].append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None


async def test_dashboard_renders_every_chart_with_data(chromium: str, served, tmp_path: Path):
    base, url = served
    dom = await _chromium(chromium, tmp_path, "--dump-dom", f"{base}/dashboard")
    marks = Marks()
    marks.feed(dom)
    assert marks.body.get("data-ready") == "1", dom[-3000:]

    store = open_store(url, readonly=True)
    expected = query.dashboard(store, query.KpiFilter())
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

    conc = {a["data-agent"]: float(a["data-value"]) for tag, a in marks.charts["concurrency"] if tag == "rect"}
    assert conc == {a["agent_id"]: round(a["concurrency"], 3) for a in expected["concurrency_by_agent"]}

    vol = [a for tag, a in marks.charts["volumes"] if tag == "rect"]
    assert len(vol) == 4 * len(expected["volumes_by_channel"])
    offered = {a["data-channel"]: int(a["data-value"]) for a in vol if a["data-series"] == "offered"}
    assert offered == {v["channel"]: v["offered"] for v in expected["volumes_by_channel"]}

    sent = [a for tag, a in marks.charts["sentiment"] if tag == "rect"]
    assert sum(int(a["data-value"]) for a in sent) == sum(r["total"] for r in expected["sentiment_by_interval"])


async def test_dashboard_filters_reach_the_charts(chromium: str, served, tmp_path: Path):
    base, url = served
    dom = await _chromium(chromium, tmp_path, "--dump-dom", f"{base}/dashboard?channel=sms&from=2026-01-01T10:00")
    marks = Marks()
    marks.feed(dom)
    assert marks.body.get("data-ready") == "1"
    vol = {a["data-channel"] for tag, a in marks.charts["volumes"] if tag == "rect"}
    assert vol == {"sms"}
    bars = [a for tag, a in marks.charts["sl"] if tag == "rect"]
    assert bars and all(b["data-interval"] >= "2026-01-01T10:00:00Z" for b in bars)


async def test_dashboard_screenshot(chromium: str, served, tmp_path: Path):
    base, _url = served
    png = tmp_path / "dashboard.png"
    await _chromium(chromium, tmp_path, f"--screenshot={png}", f"{base}/dashboard")
    assert png.exists() and png.stat().st_size > 50_000  # a page of charts, not a blank one
    keep = os.environ.get("PARLEY_SCREENSHOT_DIR")
    if keep:
        shutil.copy(png, Path(keep) / "dashboard.png")
