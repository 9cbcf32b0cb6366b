"""A generated day through the real KPI engine, as records the projections read.

``run_day(seed, scale)`` simulates a day (``parley.app.synthetic.simulate``: agents with capacity, shifts and
breaks, assignments, transfers, abandons, reopens, bots), delivers it out of order with
redeliveries to a ``KpiEngine`` flushing on the way (as the worker does), and returns the KPI
records it published plus the day's conversation and presence events, all as ``(topic, key,
event)`` in production order: what ``projection_support.project_all`` folds into a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parley.app.synthetic.simulate import shuffled_with_duplicates, simulate_day
from schemas import topics
from schemas.topics import Topic
from streams.kpi import logic
from streams.kpi.engine import KpiEngine

_KPI_TOPIC = {"ContactMeasured": topics.KPI_CONTACTS, "IntervalStat": topics.KPI_INTERVALS,
              "AgentIntervalStat": topics.KPI_INTERVALS}


@dataclass
class Day:
    events: list[dict[str, Any]]      # the day, in event time
    delivery: list[dict[str, Any]]    # as the KPI processor received it
    published: list[dict[str, Any]]   # what it published, in order
    watermark: dict[str, int]         # its as-of time per tenant at the end

    @property
    def folded(self) -> dict[str, dict]:
        return logic.fold_outputs(self.published)

    def records(self) -> list[tuple[Topic, str, dict]]:
        """Conversation and presence events, then the KPI records, keyed as on Kafka."""
        out = []
        for e in self.events:
            topic = topics.AGENT_STATUS if e["envelope"]["event_type"] == logic.AGENT_STATUS \
                else topics.CONVERSATIONS
            out.append((topic, e["envelope"]["partition_key"], e))
        out += [(_KPI_TOPIC[r["envelope"]["event_type"]], r["envelope"]["partition_key"], r)
                for r in self.published]
        return out


def run_day(seed: int, scale: float, flush_every: int = 150) -> Day:
    events = simulate_day(seed, scale)
    delivery = shuffled_with_duplicates(events, seed)
    engine, published = KpiEngine(), []
    for i, e in enumerate(delivery):
        engine.apply(e)
        if i % flush_every == 0:
            published += engine.flush()
    published += engine.flush()
    wm = {t: v.watermark for t, v in engine.stores.tenants.items()}
    return Day(events, delivery, published, wm)
