"""The egress process: settings, accounts, the push hub's HTTP server, the runner, signals."""

from __future__ import annotations

import asyncio
import gc
import signal

from aiohttp import web

from egress.accounts import load
from egress.runner import Egress
from egress.sender import Sender
from egress.webchat import Hub
from parley import logs

log = logs.get("egress.main")


async def amain(settings, stop: asyncio.Event | None = None) -> None:  # noqa: ANN001
    stop = stop or asyncio.Event()
    accounts = load(settings.accounts_file)
    hub = Hub(keep=settings.webchat_keep, accounts=accounts)
    app = web.Application()
    hub.routes(app)
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    sender = Sender(emulator_url=settings.emulator_url, emulator_smtp=settings.emulator_smtp,
                    timeout_s=settings.call_timeout_s, connections=settings.connections, hub=hub)
    egress = Egress(settings, accounts, sender=sender)
    app["egress"] = egress
    # what exists now lives as long as the process: out of the collector's sight; and collections
    # of the young generation less often (each message makes a few hundred short-lived objects)
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    log.info("egress.started", accounts=len(accounts.all), host=settings.host, port=settings.port)
    try:
        stats = await egress.run(stop)
        log.info("egress.stopped", **stats.__dict__)
    finally:
        await runner.cleanup()


async def _metrics(request: web.Request) -> web.Response:
    """Counters since start, in the Prometheus text format."""
    egress = request.app.get("egress")
    if egress is None:
        return web.Response(status=503, text="starting")
    lines = ["# TYPE parley_egress_messages_total counter"]
    lines += [f'parley_egress_messages_total{{outcome="{k}"}} {v}' for k, v in egress.stats.__dict__.items()]
    lines += ["# TYPE parley_egress_in_flight gauge", f"parley_egress_in_flight {len(egress.jobs)}",
              "# TYPE parley_egress_webchat_pushed_total counter",
              f"parley_egress_webchat_pushed_total {egress.sender.hub.pushed if egress.sender.hub else 0}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def run(settings) -> None:  # noqa: ANN001
    logs.configure(settings.log, service="egress")
    log.info("egress.settings", **settings.safe_dict())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await amain(settings, stop)

    asyncio.run(main())
