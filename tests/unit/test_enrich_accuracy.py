"""Accuracy floors of the builtin enricher on tests/data/labelled_messages.jsonl.

Floors sit a little under the figures measured by parley/app/bench/enrich_accuracy.py
(all 281 rows: language 1.000, sentiment 0.82 (fr 0.85, en 0.78), intent 0.97).
A drop below them means a lexicon, pattern or rule change made things worse.
"""

import json
from pathlib import Path

import pytest

from streams.enrich.logic import BuiltinEnricher

LABELLED = Path(__file__).parents[1] / "data" / "labelled_messages.jsonl"
INTENTS = {
    "refund", "order_status", "cancellation", "complaint", "billing", "delivery_problem",
    "account_access", "product_question", "greeting", "human_request", "thanks", "other",
}
FLOORS = {
    ("all", "language"): 0.99,
    ("all", "sentiment"): 0.78,
    ("fr", "sentiment"): 0.82,
    ("en", "sentiment"): 0.75,
    ("all", "intent"): 0.93,
    ("fr", "intent"): 0.93,
    ("en", "intent"): 0.93,
}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def predictions(rows) -> list[tuple[dict, tuple[str | None, str, str]]]:
    enricher = BuiltinEnricher()
    out = []
    for row in rows:
        r = enricher.enrich(row["text"], "default")
        out.append((row, (r.language, r.sentiment_label, r.intents[0].name if r.intents else "other")))
    return out


def test_labelled_set_is_well_formed(rows):
    assert len(rows) >= 240
    assert all(set(r) == {"text", "language", "sentiment", "intent"} for r in rows)
    assert {r["language"] for r in rows} == {"fr", "en"}
    assert {r["sentiment"] for r in rows} == {"negative", "neutral", "positive"}
    assert {r["intent"] for r in rows} <= INTENTS
    french = sum(r["language"] == "fr" for r in rows)
    assert 0.4 < french / len(rows) < 0.6


@pytest.mark.parametrize(("lang", "field"), sorted(FLOORS))
def test_accuracy_stays_above_floor(predictions, lang, field):
    column = ("language", "sentiment", "intent").index(field)
    subset = [(row, got) for row, got in predictions if lang == "all" or row["language"] == lang]
    accuracy = sum(got[column] == row[field] for row, got in subset) / len(subset)
    assert accuracy >= FLOORS[(lang, field)], f"{lang} {field} accuracy {accuracy:.3f}"
