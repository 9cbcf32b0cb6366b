"""Accuracy and speed of the builtin enricher on tests/data/labelled_messages.jsonl.

Usage: python bench/enrich_accuracy.py [--errors] [--lingua-modes]

Prints language, sentiment and top-1 intent accuracy per split (``dev`` = the
first 40 % of the file, the only part looked at while building; ``test`` = the
remaining 60 %) and per language, then the mean µs per enrich() call on the labelled texts and on
the synthetic traffic of ``parley.app.synthetic.events.traffic`` (the stream benchmarks' texts).
``--errors`` lists the dev mistakes (never the test ones, to keep them held out).
``--lingua-modes`` compares lingua's high- and low-accuracy modes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the checkout
sys.path.insert(0, str(ROOT))

from streams.enrich.logic import BuiltinEnricher, Enrichment  # noqa: E402

LABELLED = ROOT / "tests" / "data" / "labelled_messages.jsonl"
DEV_FRACTION = 0.4
SPEED_ROUNDS = 5
TRAFFIC_MESSAGES = 5000


def load_rows(path: Path = LABELLED) -> list[dict]:
    """Read the labelled messages, in file order."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def splits(rows: list[dict]) -> dict[str, list[dict]]:
    """dev = first 40 %, test = the rest, all = everything."""
    cut = int(len(rows) * DEV_FRACTION)
    return {"dev": rows[:cut], "test": rows[cut:], "all": rows}


def top_intent(result: Enrichment) -> str:
    """The predicted intent, or "other" when nothing matched."""
    return result.intents[0].name if result.intents else "other"


def score(rows: list[dict], results: list[Enrichment]) -> dict[str, float]:
    """Accuracy of language, sentiment label and top intent."""
    n = len(rows) or 1
    return {
        "language": sum(r.language == row["language"] for row, r in zip(rows, results, strict=True)) / n,
        "sentiment": sum(r.sentiment_label == row["sentiment"] for row, r in zip(rows, results, strict=True)) / n,
        "intent": sum(top_intent(r) == row["intent"] for row, r in zip(rows, results, strict=True)) / n,
    }


def print_table(enricher: BuiltinEnricher, rows: list[dict]) -> None:
    print(f"{'split':<6}{'lang':<6}{'n':>5}{'language':>10}{'sentiment':>11}{'intent':>8}")
    for split, part in splits(rows).items():
        for lang in ("fr", "en", "all"):
            subset = [r for r in part if lang == "all" or r["language"] == lang]
            acc = score(subset, [enricher.enrich(r["text"], "default") for r in subset])
            print(f"{split:<6}{lang:<6}{len(subset):>5}{acc['language']:>10.3f}"
                  f"{acc['sentiment']:>11.3f}{acc['intent']:>8.3f}")


def traffic_items() -> list[tuple[str, str]]:
    """(text, tenant) of the synthetic traffic the stream benchmarks replay."""
    from parley.app.synthetic.events import traffic

    return [(e["text"], e["envelope"]["tenant_id"])
            for e in traffic(TRAFFIC_MESSAGES, customers=500, tenants=("acme", "globex"))]


def time_per_call(enricher: BuiltinEnricher, items: list[tuple[str, str]]) -> float:
    """Mean µs per enrich() call over SPEED_ROUNDS passes of ``items``."""
    start = time.perf_counter()
    for _ in range(SPEED_ROUNDS):
        for text, tenant in items:
            enricher.enrich(text, tenant)
    return 1e6 * (time.perf_counter() - start) / (SPEED_ROUNDS * len(items))


def time_per_text_many(enricher: BuiltinEnricher, items: list[tuple[str, str]]) -> float:
    """Mean µs per text of enrich_many() over SPEED_ROUNDS passes of ``items``, one call a pass."""
    start = time.perf_counter()
    for _ in range(SPEED_ROUNDS):
        enricher.enrich_many(items)
    return 1e6 * (time.perf_counter() - start) / (SPEED_ROUNDS * len(items))


def print_speed(enricher: BuiltinEnricher, rows: list[dict]) -> None:
    print(f"\nspeed (mean of {SPEED_ROUNDS} passes, one core):")
    for name, items in (("labelled", [(r["text"], "default") for r in rows]),
                        ("traffic", traffic_items())):
        us = time_per_call(enricher, items)
        many = time_per_text_many(enricher, items)
        print(f"  {name:<9}{len(items):>6} texts: {us:8.1f} µs per enrich() call "
              f"({1e6 / us:,.0f} calls/s); enrich_many(): {many:.1f} µs per text (lingua on all cores)")


def print_dev_errors(enricher: BuiltinEnricher, rows: list[dict]) -> None:
    print("\ndev errors (expected -> got):")
    for row in splits(rows)["dev"]:
        r = enricher.enrich(row["text"], "default")
        got = (r.language, r.sentiment_label, top_intent(r))
        want = (row["language"], row["sentiment"], row["intent"])
        if got != want:
            diff = [f"{w}->{g}" for w, g in zip(want, got, strict=True) if w != g]
            print(f"  {', '.join(diff):<40} {row['text'][:70]!r} ({r.sentiment_score:+.2f})")


def print_lingua_modes(rows: list[dict]) -> None:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, c.upper()) for c in ("en", "fr", "es", "de", "it", "pt", "nl")]
    print("\nlingua alone (no chat markers), all rows:")
    for low in (False, True):
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models()
        detector = (builder.with_low_accuracy_mode() if low else builder).build()
        start = time.perf_counter()
        found = [detector.detect_language_of(r["text"]) for r in rows]
        rate = len(rows) / (time.perf_counter() - start)
        ok = sum(f is not None and f.iso_code_639_1.name.lower() == r["language"]
                 for f, r in zip(found, rows, strict=True))
        mode = "low " if low else "high"
        print(f"  {mode} accuracy mode: {ok / len(rows):.3f} correct, {rate:,.0f} calls/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="list dev mistakes")
    parser.add_argument("--lingua-modes", action="store_true", help="compare lingua modes")
    args = parser.parse_args()
    rows = load_rows()
    start = time.perf_counter()
    enricher = BuiltinEnricher()
    print(f"enricher built in {time.perf_counter() - start:.2f} s; {len(rows)} labelled messages\n")
    print_table(enricher, rows)
    print_speed(enricher, rows)
    if args.lingua_modes:
        print_lingua_modes(rows)
    if args.errors:
        print_dev_errors(enricher, rows)


if __name__ == "__main__":
    main()
