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
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 50_000


def tune() -> None:
    """Call once start-up is done, before the hot loop."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)


@contextmanager
def tuned() -> Iterator[None]:
    """These settings for a while, in a process that otherwise keeps CPython's (a benchmark that
    measures in its own process what a stage costs in the worker); the old ones back after."""
    saved = gc.get_threshold()
    tune()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
