"""Parley: an event-sourced backbone for customer-service messaging on Apache Kafka.

Two floors. The foundation (``parley`` itself: settings, logs, topic admin, the local broker and
registry, privacy keys) imports nothing of the processes above it, only ``schemas``. The
application (``parley.app``: the CLI, the demo, the benchmarks, the batch recomputation and the
synthetic data) sits on top of everything. ``tests/contract/test_layout.py`` holds the rule.
"""

__version__ = "0.1.0"
