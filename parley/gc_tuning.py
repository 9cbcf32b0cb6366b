"""Garbage-collector settings for the long-running processes (ingress, stream worker).

Both allocate many short-lived containers (decoded events, dicts of a request) and few
reference cycles. CPython's default collects the youngest generation every 700 allocations,
and each collection walks every young object: under load that is several per message. Here the
youngest generation is collected every 50,000 allocations, and what start-up built (modules,
schemas, rules) is moved out of the collector's sight (``gc.freeze``) so no collection walks it.
Cycles are still collected; memory is not held longer than one young generation.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune() -> None:
    """Call once start-up is done, before the hot loop."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
