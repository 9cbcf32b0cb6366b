"""`parley bench e2e`: inbound messages through ingress → processors → projections.

Starts the same processes as `parley demo` (ingress, worker, projections, API) under a fresh
topic prefix, then offers web-chat messages at several fixed rates (open loop: a message is sent
on schedule whether or not earlier ones were answered) and measures, per rate:
- the achieved ingress rate (2xx answers/s) and the sustained end-to-end rate (projected rows/s);
- latency from the HTTP request to the row in the projection's ``messages`` table, found by
  polling the SQLite file every ``--poll-ms`` (so latencies are upper bounds within that step).
Beside them, in the same run: the raw aiokafka consume rate of the messages topic (the Python
ceiling for any consumer of it). Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer
from rich.console import Console

from parley import topics_admin
from parley.app.demo import main as demo
from parley.settings import DemoSettings, KafkaSettings, WorkerSettings
from schemas import topics

ACCOUNT, TOKEN = "acme-web", "demo-webchat-token"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="parley bench e2e", description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="50,100,200", help="offered messages/s, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each rate")
    p.add_argument("--poll-ms", type=int, default=50)
    p.add_argument("--drain-s", type=float, default=60.0, help="max wait for the last rows")
    p.add_argument("--json", type=Path, default=Path("parley-data/bench-e2e.json"))
    return p.parse_args(argv)


def _message(run: str, rate: int, i: int, at_ms: int) -> tuple[str, dict]:
    mid = f"{run}-{rate}-{i}"
    return mid, {"type": "message", "message_id": mid, "visitor_id": f"v-{rate}-{i % 500}",
                 "text": f"Bonjour, où en est ma commande CMD-{i:05d} ?", "sent_at": at_ms}


async def offer(base: str, run: str, rate: int, seconds: float, sent: dict[str, float]) -> dict:
    """Send ``rate`` messages/s for ``seconds``; record each message's send time."""
    url = f"{base}/webhooks/webchat/{ACCOUNT}"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    n = int(rate * seconds)
    t0 = time.monotonic()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        mid, body = _message(run, rate, i, int(time.time() * 1000))
        sent[mid] = time.monotonic()
        async with session.post(url, json=body, headers=headers) as r:
            await r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1

    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(one(session, i) for i in range(n)))
    took = time.monotonic() - t0
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {"offered_per_s": rate, "sent": n, "statuses": statuses, "ingress_ok_per_s": ok / took}


def watch(d: demo.Demo, prefix: str, sent: dict[str, float], expected: int, poll_ms: int,
          deadline_s: float) -> dict[str, float]:
    """Poll the projection while messages are offered, until all ``expected`` messages whose id
    starts with ``prefix`` have a row (or the deadline); return latencies (s) by id."""
    from projections.store import open_store

    seen: dict[str, float] = {}
    deadline = time.monotonic() + deadline_s
    store = open_store(d.database_url, readonly=True)
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            try:
                rows = store.query("SELECT channel_message_id AS m FROM messages "
                                   f"WHERE channel = 'webchat' AND channel_message_id LIKE '{prefix}%'")
            except Exception:  # noqa: BLE001 - the projection has not created its tables yet
                rows = []
            now = time.monotonic()
            for r in rows:
                if r["m"] in sent and r["m"] not in seen:
                    seen[r["m"]] = now - sent[r["m"]]
            time.sleep(poll_ms / 1000)
    finally:
        store.close()
    return seen


async def measure(d: demo.Demo, base: str, run: str, rate: int, a: argparse.Namespace) -> tuple[dict, dict]:
    """Offer ``rate``/s for ``a.seconds`` while a thread watches the projection for the rows."""
    sent: dict[str, float] = {}
    n = int(rate * a.seconds)
    watcher = asyncio.create_task(asyncio.to_thread(watch, d, f"{run}-{rate}-", sent, n, a.poll_ms,
                                                    a.seconds + a.drain_s))
    res = await offer(base, run, rate, a.seconds, sent)
    return res, await watcher


async def raw_consume_rate(k: KafkaSettings) -> dict:
    """Records/s of a bare aiokafka consumer reading the messages topic from the start."""
    name = topics.named(k.topic_prefix, topics.MESSAGES)
    c = AIOKafkaConsumer(name, **k.client_kwargs(), group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    try:
        parts = list(c.assignment())
        end = sum((await c.end_offsets(parts)).values())
        n, t0 = 0, time.monotonic()
        while n < end:
            for batch in (await c.getmany(timeout_ms=500, max_records=5000)).values():
                n += len(batch)
        took = time.monotonic() - t0
    finally:
        await c.stop()
    return {"records": n, "seconds": took, "per_s": n / took if took else 0.0}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: list[str] | None = None) -> None:
    a = _args(argv)
    console = Console()
    # live traffic, so the worker's own event-time bounds (the demo widens them to its slices)
    live = WorkerSettings.model_fields
    s = DemoSettings(worker_lateness_ms=live["lateness_ms"].default, worker_idle_ms=live["idle_ms"].default)
    run_id = "bench" + time.strftime("%Y%m%d%H%M%S", time.gmtime())
    s.data_dir = s.data_dir / run_id
    s.data_dir.mkdir(parents=True, exist_ok=True)
    bootstrap, _ = demo.broker(s, console)
    d = demo.Demo(s, console, run_id, KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"{run_id}."))

    asyncio.run(topics_admin.apply(d.kafka))
    results = []
    try:
        demo.start_all(d)
        base = f"http://127.0.0.1:{s.ingress_port}"
        demo.wait_http(d, f"{base}/readyz")
        for rate in [int(r) for r in a.rates.split(",")]:
            t0 = time.monotonic()
            res, lat = asyncio.run(measure(d, base, run_id, rate, a))
            took = time.monotonic() - t0
            values = list(lat.values())
            res.update({"projected": len(lat), "e2e_per_s": len(lat) / took,
                        "latency_p50_s": _pct(values, 0.5), "latency_p99_s": _pct(values, 0.99),
                        "latency_mean_s": statistics.fmean(values) if values else None})
            results.append(res)
            console.print(res)
        demo.check_children(d)
    finally:
        demo.stop_all(d)
    raw = asyncio.run(raw_consume_rate(d.kafka))
    out = {"rates": results, "raw_aiokafka_consume": raw,
           "ratios_e2e_to_raw_consume": [r["e2e_per_s"] / raw["per_s"] for r in results if raw["per_s"]]}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(out, indent=2))
    console.print(f"raw aiokafka consume: {raw['per_s']:.0f} records/s ({raw['records']} records)")
    for r in results:
        console.print(f"offered {r['offered_per_s']:>5}/s  ingress {r['ingress_ok_per_s']:7.1f}/s  "
                      f"e2e {r['e2e_per_s']:7.1f}/s  p50 {_ms(r['latency_p50_s'])}  p99 {_ms(r['latency_p99_s'])}  "
                      f"projected {r['projected']}/{r['sent']}")
    console.print(f"results: {a.json}")


def _ms(v: float | None) -> str:
    return "   -   " if v is None else f"{v * 1000:6.0f} ms"


if __name__ == "__main__":
    main()
