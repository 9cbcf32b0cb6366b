"""Synthetic data, in one place, for tests, benchmarks and the demo (never used by a deployment).

* ``events``: event builders (an identity, a received message, a reply, a resolve, ...) and the
  benchmarks' traffic;
* ``simulate``: a seeded contact-centre day as events (the KPI tests and the batch equivalence);
* ``sample``: projection sample rows for the API and dashboard tests;
* ``scenario``, ``cast``, ``texts``: the demo's day (who, what they say, what happens when).
"""
