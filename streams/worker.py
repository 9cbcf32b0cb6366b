"""`parley worker`: run the stream processors until stopped (SIGINT/SIGTERM)."""

from __future__ import annotations

import asyncio

from parley import logs
from parley.settings import WorkerSettings


def run(settings: WorkerSettings) -> None:
    """Apply the topic catalogue (if enabled), then run the Faust worker; blocks."""
    import faust

    from streams.app import create_app

    logs.configure(settings.log, service="worker")
    log = logs.get("streams.worker")
    log.info("worker.starting", settings=settings.safe_dict())
    if settings.apply_topics:
        from parley import topics_admin

        for line in asyncio.run(topics_admin.apply(settings.kafka)):
            log.debug("worker.topic", line=line)
    app = create_app(settings)
    from streams.app import declare_internal_topics

    for name in asyncio.run(declare_internal_topics(app, settings.kafka)):
        log.debug("worker.internal_topic", name=name)
    worker = faust.Worker(app, loglevel=settings.log.level.lower(), override_logging=False)
    worker.execute_from_commandline()
