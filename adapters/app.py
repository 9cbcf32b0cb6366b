"""`parley ingress`: the webhook HTTP service (aiohttp).

Routes: ``POST|GET /webhooks/{adapter}/{account_id}`` (one per channel account), the agent API
(``adapters/agent_api.py``), ``/healthz`` (the process answers), ``/readyz`` (200 only while the
Kafka producer can produce and the dedup memory has caught up) and Prometheus ``/metrics``.

The pipeline a webhook request goes through, step by step, is ``adapters/ingress.py``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from adapters import accounts as accounts_mod
from adapters import agent_api
from adapters.accounts import Accounts
from adapters.channels import AdapterUnavailable, Registry, UnknownAdapter
from adapters.dedup import Dedup
from adapters.ingress import Ingress, now_ms
from adapters.metrics import IngressMetrics
from adapters.producer import Producer
from adapters.records import (  # noqa: F401 - re-exported: tests and the demo import them from here
    REDACTED,
    SECRET_HEADERS,
    SECRET_PARAMS,
    check_event,
    dead_letter_event,
    raw_request_event,
)
from adapters.sealing import sealer_from
from parley import gc_tuning, logs, processes
from parley.settings import IngressSettings
from schemas import topics

log = logs.get("adapters.app")

WRITES = (topics.RAW_INGRESS, topics.MESSAGES, topics.DEAD_LETTER, topics.AGENT_STATUS,  # what the ingress produces to
          topics.CONVERSATION_MESSAGES, topics.CUSTOMER_CONTEXT, topics.IDENTITY_COMMANDS, topics.INGRESS_CLAIMS)


# -- wiring -------------------------------------------------------------------------------------

INGRESS = web.AppKey("ingress", Ingress)


def build_app(settings: IngressSettings, *, accounts: Accounts | None = None, registry: Registry | None = None,
              producer: Any = None, metrics: IngressMetrics | None = None,
              clock_ms: Callable[[], int] = now_ms, dedup: Any = "auto") -> web.Application:
    """The aiohttp application; tests pass accounts, a registry with fakes, or a fake producer.

    ``dedup``: ``"auto"`` builds the Kafka claim log's dedup when the real producer is built and
    ``settings.dedup`` is on (a fake producer gets none); None turns it off; or pass one.
    """
    registry = registry or Registry()
    if accounts is None:
        accounts = accounts_mod.load(settings.accounts_file, known_adapters=registry.names())
    metrics = metrics or IngressMetrics()
    prefix = settings.kafka.topic_prefix
    if producer is None:
        producer = Producer(settings.kafka, timeout_s=settings.produce_timeout_s, linger_ms=settings.linger_ms,
                            required_topics=[topics.named(prefix, t) for t in WRITES],
                            on_ready_change=lambda ready: metrics.producer_ready.set(1 if ready else 0))
        if dedup == "auto":
            dedup = _dedup(settings, producer, clock_ms) if settings.dedup else None
    elif dedup == "auto":
        dedup = None
    ingress = Ingress(settings, accounts, registry, producer, metrics, clock_ms, dedup, sealer_from(settings))
    app = web.Application(client_max_size=settings.max_record_bytes + 1024 * 1024)
    app[INGRESS] = ingress
    app.router.add_get("/healthz", ingress.healthz)
    app.router.add_get("/readyz", ingress.readyz)
    app.router.add_get("/metrics", ingress.metrics_page)
    app.router.add_route("POST", "/webhooks/{adapter}/{account_id}", ingress.webhook)
    app.router.add_route("GET", "/webhooks/{adapter}/{account_id}", ingress.webhook)
    agent_api.setup(app, ingress)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app


def _dedup(settings: IngressSettings, producer: Producer, clock_ms: Callable[[], int]) -> Dedup:
    return Dedup(settings.kafka, topics.named(settings.kafka.topic_prefix, topics.INGRESS_CLAIMS), producer,
                 horizon_s=settings.dedup_horizon_s, claim_ttl_s=settings.dedup_claim_ttl_s,
                 wait_s=settings.dedup_wait_s, clock_ms=clock_ms)


async def _on_startup(app: web.Application) -> None:
    ingress = app[INGRESS]
    for adapter in sorted(ingress.accounts.adapters()):
        try:
            ingress.registry.get(adapter)
        except (UnknownAdapter, AdapterUnavailable) as e:
            log.error("ingress.adapter_unavailable", adapter=adapter, error=str(e))
    await ingress.codec.aprepare(WRITES)  # registry ids before the first request
    await ingress.producer.start()
    if ingress.dedup is not None:
        await ingress.dedup.start()


async def _on_cleanup(app: web.Application) -> None:
    ingress = app[INGRESS]
    if ingress.dedup is not None:
        await ingress.dedup.stop()
    await ingress.producer.stop()


def serve(settings: IngressSettings) -> None:
    """Run the ingress until interrupted (blocking). Raises ``AccountsError`` on a bad accounts file.

    ``settings.workers`` > 1 runs that many processes on the same port (``SO_REUSEPORT``: the
    kernel spreads connections; ``parley.processes`` supervises them); each has its own producer
    and reads the claim log itself, so dedup holds across them exactly as across hosts.
    """
    logs.configure(settings.log, service="ingress")
    registry = Registry()
    accounts = accounts_mod.load(settings.accounts_file, known_adapters=registry.names())
    log.info("ingress.starting", host=settings.host, port=settings.port, accounts=len(accounts),
             tenants=sorted(accounts.tenants), workers=settings.workers, settings=settings.safe_dict())
    if settings.workers <= 1:
        _serve_one(settings, accounts, registry, reuse_port=False)
        return
    code = processes.supervise("ingress", _worker, [(settings,)] * settings.workers, restart=True)
    if code:
        raise SystemExit(code)


def _worker(settings: IngressSettings) -> None:
    logs.configure(settings.log, service="ingress")
    registry = Registry()
    accounts = accounts_mod.load(settings.accounts_file, known_adapters=registry.names())
    _serve_one(settings, accounts, registry, reuse_port=True)


class _QuietClientErrors(logging.Filter):
    """aiohttp logs a traceback at ERROR for every malformed HTTP request it answers 400: a
    client's error, not ours, and a way to flood the logs. Dropped; real server errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


def _serve_one(settings: IngressSettings, accounts: Accounts, registry: Registry, *, reuse_port: bool) -> None:
    logging.getLogger("aiohttp.server").addFilter(_QuietClientErrors())

    app = build_app(settings, accounts=accounts, registry=registry)
    gc_tuning.tune()  # requests allocate many short-lived containers and few cycles
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, reuse_port=reuse_port)
