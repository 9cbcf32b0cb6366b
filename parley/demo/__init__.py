"""The synthetic day of `parley demo`: a seeded scenario, its HTTP rendering, and the driver.

``scenario.build_day`` makes the day (pure); ``webhooks.render`` turns each step into the HTTP
request a provider or an agent's client would send; ``driver.drive`` sends them to a running
ingress and reports what came back.
"""
