"""The top floor: what runs the processes and what exercises them, above every other package.

* ``cli``: the ``parley`` command (ingress, worker, projections, egress, api, demo, bench, ...);
* ``demo``: the main job, a working day driven through the whole pipeline;
* ``bench``: the benchmarks, each beside a baseline measured in the same run;
* ``batch``: the independent KPI recomputation from the raw log (DuckDB);
* ``synthetic``: every generator of synthetic data, used by tests, benchmarks and the demo.

A deployment needs ``parley`` (foundation), ``schemas``, ``adapters``, ``streams``, ``projections``,
``egress`` and ``parley.app.cli``; the rest is for trying, measuring and testing it.
"""
