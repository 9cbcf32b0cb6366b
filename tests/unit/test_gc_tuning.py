"""The collector settings of the long-running processes, and their use for a while in a benchmark."""

from __future__ import annotations

import gc

from parley import gc_tuning


def test_tuned_sets_the_processes_settings_for_a_while_and_puts_the_old_ones_back() -> None:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        held = [{"n": i} for i in range(1_000)]  # containers alive when the settings are taken
        with gc_tuning.tuned():
            assert gc.get_threshold() == (gc_tuning.YOUNG_THRESHOLD, 20, 20)
            assert gc.get_freeze_count() >= len(held)  # what was alive is out of the collector's sight
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)
