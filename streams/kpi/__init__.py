"""KPIs in event time: contacts, service level, concurrency... (../shared/KPIS.md).

* ``arithmetic``: the arithmetic of every figure (percentiles, SL(T), containment, levels), pure
  and shared with the projections' read side (``parley kpi``, the API, the dashboard);
* ``logic``: the definitions, as pure functions (read its docstring for the exact rules);
* ``engine``: the order-insensitive, idempotent streaming state over tables, and what to emit;
* ``agents``: the KPI stage's wiring (``KpiStage``); the thread measures come from the
  conversations stage (``streams.conversations``).

``parley/app/batch/`` recomputes the same figures independently from the raw log.
"""
