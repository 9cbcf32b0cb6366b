"""`parley bench rebuild`: projection rebuild speed beside the raw aiokafka consume rate.

Usage: python bench/rebuild.py [--customers N] [--database-url URL] [--json PATH] [--keep]

Produces a synthetic log (``parley.app.synthetic.sample``: identities, context, threads, messages,
delivery statuses, KPI records) under a fresh topic prefix, then for each projection, in the
same run and against the same topics:

* ``raw``: an aiokafka consumer assigned every partition, reading from the beginning to the end
  offsets with ``getmany`` batches of the rebuild's size, doing nothing with the records (the
  ceiling);
* ``decode``: the same, plus Avro decoding of every record;
* ``rebuild``: ``projections.runner.arebuild`` (truncate, replay, apply, batched writes with
  checkpoints, one transaction per batch).

Rates are records read per second of wall time. The topics are deleted afterwards unless
``--keep``. Exposed as ``main(argv)`` for the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]  # the checkout
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

import projections  # noqa: E402
from parley import logs, topics_admin  # noqa: E402
from parley.app.synthetic import sample  # noqa: E402
from parley.settings import KafkaSettings, LogSettings, ProjectionSettings  # noqa: E402
from projections import runner  # noqa: E402
from projections.engine import decode_batch  # noqa: E402
from projections.store import open_store  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.codec import codec_for  # noqa: E402


async def consume_all(kafka: KafkaSettings, names: list[str], batch: int, decode: bool) -> tuple[int, float]:
    """Read every record of ``names`` from the beginning to the end offsets; (records, seconds)."""
    codec = codec_for(kafka)
    await codec.aprepare(())  # a reader: learns the registry's ids, registers nothing
    t0 = time.perf_counter()
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(n, p) for n in names for p in sorted(await _partitions(kafka, n))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        n = 0
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            fetched = await consumer.getmany(timeout_ms=200, max_records=batch)
            records = [r for rs in fetched.values() for r in rs]
            if decode:
                decode_batch(codec, records)
            n += len(records)
    finally:
        await consumer.stop()
    return n, time.perf_counter() - t0


async def _partitions(kafka: KafkaSettings, name: str) -> list[int]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        (d,) = await admin.describe_topics([name])
        return [p["partition"] for p in d["partitions"]]
    finally:
        await admin.close()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    await topics_admin.apply(kafka)
    records = sample.generate(args.customers, seed=args.seed)
    t0 = time.perf_counter()
    await sample.produce(kafka, records)
    produce_s = time.perf_counter() - t0
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='parley-bench-')}/rebuild.db"
    settings = ProjectionSettings(kafka=kafka, database_url=url, rebuild_batch_size=args.batch)
    store = open_store(url)
    store.migrate()
    results = []
    try:
        for name in args.projections:
            results.append(await _one(kafka, settings, store, name, args.batch))
    finally:
        store.close()
        if not args.keep:
            await _delete_topics(kafka)
    return {
        "benchmark": "projection rebuild", "database": url.split(":", 1)[0],
        "records_produced": len(records), "customers": args.customers,
        "produce_records_per_s": round(len(records) / produce_s, 1),
        "batch": args.batch, "results": results,
    }


async def _one(kafka: KafkaSettings, settings: ProjectionSettings, store: Any, name: str,
               batch: int) -> dict[str, Any]:
    p = projections.get(name)
    names = [topics.named(kafka.topic_prefix, t) for t in p.topics]
    raw_n, raw_s = await consume_all(kafka, names, batch, decode=False)
    dec_n, dec_s = await consume_all(kafka, names, batch, decode=True)
    stats = await runner.arebuild(settings, name, store=store)
    rows = sum(store.query(f"SELECT COUNT(*) AS n FROM {t.name}")[0]["n"] for t in p.tables)
    return {
        "projection": name, "records": stats.records, "rows": rows,
        "raw_consume_per_s": round(raw_n / raw_s, 1),
        "consume_decode_per_s": round(dec_n / dec_s, 1),
        "rebuild_per_s": round(stats.rate, 1),
        "rebuild_vs_raw": round(stats.rate / (raw_n / raw_s), 3),
        "rebuild_s": round(stats.seconds, 3), "applied": stats.applied,
        "duplicates": stats.duplicates, "batches": stats.batches,
    }


async def _delete_topics(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        await admin.delete_topics([topics.named(kafka.topic_prefix, t) for t in topics.ALL])
    finally:
        await admin.close()


def render(report: dict[str, Any]) -> str:
    lines = [f"projection rebuild on {report['database']}: {report['records_produced']} records produced "
             f"({report['produce_records_per_s']:.0f}/s), batches of {report['batch']}",
             f"{'projection':<10} {'records':>8} {'rows':>7} {'raw/s':>9} {'decode/s':>9} "
             f"{'rebuild/s':>10} {'vs raw':>7}"]
    for r in report["results"]:
        lines.append(f"{r['projection']:<10} {r['records']:>8} {r['rows']:>7} {r['raw_consume_per_s']:>9.0f} "
                     f"{r['consume_decode_per_s']:>9.0f} {r['rebuild_per_s']:>10.0f} {r['rebuild_vs_raw']:>7.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=2000, help="size of the synthetic log (~25 records each)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bootstrap", default=KafkaSettings().bootstrap_servers)
    ap.add_argument("--database-url", default=None, help="default: a new SQLite file in a temp dir")
    ap.add_argument("--batch", type=int, default=ProjectionSettings.model_fields["rebuild_batch_size"].default)
    ap.add_argument("--projections", nargs="+", default=list(projections.PROJECTIONS))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark's topics")
    args = ap.parse_args(argv)
    logs.configure(LogSettings(level="WARNING"), service="bench")
    report = asyncio.run(bench(args))
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
