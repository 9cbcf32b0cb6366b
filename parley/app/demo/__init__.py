"""`parley demo`: a synthetic working day driven through the whole system.

``parley.app.synthetic.scenario`` makes the day (pure, seeded: the cast, what customers mean to say, the fixed-time
agenda); ``actors`` plans what customers, the bot, agents and the CRM do in each slice of event
time from the pipeline's decisions (``view``, folded from parley.conversations); ``webhooks``
renders each step as the HTTP request a provider or an agent's client sends; ``driver`` sends
them slice by slice in event-time order and waits for the worker between slices (``pipeline``);
``main`` starts the processes and prints what the pipeline did (``evidence``) and the KPI tables
(``report``). The accounts file and the routing rules it runs with are in ``data/``.
"""
