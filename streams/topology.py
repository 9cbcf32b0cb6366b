"""The stream worker's topology: which stages run, what each reads and writes, and how keyed.

```
parley.messages ──► identity ─┬─► parley.conversation.messages ──► conversations ─┬─► parley.conversations
 (tenant|channel|identity)    │    (tenant|customer)  agent API ──┘  ▲            ├─► routing.requests ──► routing
                              └─► identity.sightings ─┐              │            │    (tenant)    ▲       │
parley.identity.commands ─────────────────────────────┴► identity-graph           │                │       │
 (tenant)                                                  └► parley.identity.events               │       │
parley.agents.status ──► presence ─┬──────────────────────────────────────────────┼────────────────┘       │
parley.customers.context ──► context ──► routing.requests                          │                        │
                                   └──► kpi.threads ◄─────────────────────────────┘                        │
                                         (tenant) ──► kpi ──► parley.kpi.contacts, parley.kpi.intervals    │
                            routing.decisions (tenant|customer) ◄─────────────────────────────────────────┘
                                         └──► conversations (applies them, publishes them)
```

Per-message stages are keyed by the finest key their decision needs: ``identity`` by channel
identity (a message's customer is a function of it), ``conversations`` by customer (threads,
enrichment, the thread's KPIs). Three stages are keyed by tenant because their decision needs
a tenant-wide view, and each reads one record per decision, not per message: ``identity-graph``
(a new identity's keys, agents' link/merge commands), ``routing`` (the desk: new contacts, bot
turns, resolutions, presence), ``kpi`` (one measure per changed thread per transaction).
``streams.runtime`` runs one task per stage partition and sequences each stage's sequenced
inputs in event time.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from streams import privacy
from streams.conversations.agents import ConversationsStage
from streams.identity.agents import IdentityGraphStage, IdentityStage
from streams.kpi.agents import KpiStage
from streams.routing import config
from streams.routing.agents import ContextStage, PresenceStage, RoutingStage, rules_path
from streams.runtime.stage import Stage
from streams.threads import logic as threads


def threads_rules(settings: Any) -> threads.Rules:
    return threads.Rules(reopen_window_ms=settings.reopen_window_s * 1000,
                         continue_window_ms=settings.continue_window_s * 1000,
                         auto_resolve_after_ms=settings.auto_resolve_after_s * 1000)


def build(settings: Any, *, enricher: Any = None, routing_rules: config.RoutingConfig | None = None) -> list[Stage]:
    """Every stage of ``parley worker``; ``enricher`` and ``routing_rules`` replace the ones the
    settings name (tests, benchmark)."""
    from streams.enrich.agents import enricher_from

    stages: list[Stage] = [
        IdentityStage(), IdentityGraphStage(),
        ConversationsStage(threads_rules(settings), enricher or enricher_from(settings), privacy.texts_from(settings)),
        RoutingStage(routing_rules or config.load(rules_path(settings))),
        PresenceStage(), ContextStage(), KpiStage(),
    ]
    check(stages)
    return stages


def check(stages: list[Stage]) -> None:
    """Co-partitioned inputs per stage, and each topic read by one stage only (its offsets are
    the worker group's)."""
    readers: dict[str, str] = {}
    for s in stages:
        s.check()
        for i in s.inputs:
            if i.topic.name in readers:
                raise ValueError(f"{i.topic.name} is read by {readers[i.topic.name]} and {s.name}")
            readers[i.topic.name] = s.name


def upstream(stages: list[Stage]) -> dict[str, tuple[str, ...]]:
    """Topic name -> ids (``stage/partition``) of the tasks that write it."""
    out: dict[str, list[str]] = defaultdict(list)
    for s in stages:
        for t in s.outputs:
            out[t.name] += [f"{s.name}/{p}" for p in range(s.partitions)]
    return {k: tuple(v) for k, v in out.items()}


def describe(stages: list[Stage]) -> list[dict[str, Any]]:
    """One row per stage: name, partitions, inputs (sequenced or not) with their keys, outputs."""
    return [{"stage": s.name, "partitions": s.partitions,
             "inputs": [(i.topic.name, i.topic.key_shape, i.sequenced) for i in s.inputs],
             "outputs": [(t.name, t.key_shape) for t in s.outputs],
             "stores": [st.name for st in s.stores]} for s in stages]


def stage_table(stages: list[Stage]) -> str:
    """The markdown table of docs/STREAMS.md (between its ``stages`` markers)."""
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    rows = ["| stage | partitions | reads (key; sequenced?) | writes (key) | stores |", "|---|---|---|---|---|"]
    for s in stages:
        reads = ", ".join(f"`{i.topic.name}` ({esc(i.topic.key_shape)}; {'yes' if i.sequenced else 'no'})"
                          for i in s.inputs)
        writes = ", ".join(f"`{t.name}` ({esc(t.key_shape)})" for t in s.outputs)
        stores = ", ".join(st.name for st in s.stores) or "-"
        rows.append(f"| `{s.name}` | {s.partitions} | {reads} | {writes} | {stores} |")
    return "\n".join(rows)


if __name__ == "__main__":
    from parley.settings import WorkerSettings

    print(stage_table(build(WorkerSettings(routing_file=None))))
