"""`parley api`: a read-only JSON API over profiles, threads and KPIs, and the dashboard.

Every route is a GET (aiohttp answers 405 to anything else); the database is opened read-only
(SQLite ``query_only``, PostgreSQL ``default_transaction_read_only``). The two privacy routes
are the exception, for other services and back offices, guarded by a bearer token
(``PARLEY_PRIVACY__ADMIN_TOKENS``; none configured: 403) and not part of the analysts'
OpenAPI description: ``POST /api/privacy/{tenant}/{customer_id}/erase`` (optional JSON body
``{"also": [...], "reason": ..., "requested_by": ..., "at": ms}``; answers what was done, as
ErasureCompleted records it) and ``GET /api/privacy/{tenant}/{customer_id}/export`` (everything
held on the customer, decrypted; ``?log=false`` for the projections only). docs/PRIVACY.md. Queries run in worker
threads, each with its own connection, so SQLite in WAL mode serves reads while the projector
writes. The OpenAPI 3 description is at ``/openapi.json``; the dashboard at ``/dashboard``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from parley import logs
from parley.settings import ApiSettings
from projections import dashboard, query
from projections.openapi import MAX_LIMIT, openapi_spec
from projections.store import Store, open_store

STATIC = Path(__file__).parent / "static"
log = logs.get("projections.api")

STORE = web.AppKey("store", Store)
SETTINGS = web.AppKey("settings", ApiSettings)


class BadRequest(ValueError):
    """A query parameter is malformed."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str, ensure_ascii=False), status=status,
                        content_type="application/json")


async def _run(request: web.Request, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(partial(fn, request.app[STORE], *args, **kw))


def _int(request: web.Request, name: str, default: int, hi: int = MAX_LIMIT) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not 0 <= v <= hi:
        raise BadRequest(f"{name} must be between 0 and {hi}")
    return v


def _filter(request: web.Request) -> query.KpiFilter:
    q = request.query
    try:
        return query.KpiFilter.of(q.get("from"), q.get("to"), tenant=q.get("tenant"),
                                  channel=q.get("channel"), queue=q.get("queue"), agent=q.get("agent"))
    except ValueError as e:
        raise BadRequest(f"from/to: {e}") from None


# -- handlers ------------------------------------------------------------------------------------
async def customers(request: web.Request) -> web.Response:
    q = request.query
    rows = await _run(request, query.list_customers, tenant=q.get("tenant") or None,
                      q=q.get("q") or None, limit=_int(request, "limit", 50),
                      offset=_int(request, "offset", 0, 10**9))
    return _json({"customers": rows})


async def customer(request: web.Request) -> web.Response:
    m = request.match_info
    row = await _run(request, query.customer_profile, m["tenant"], m["customer_id"])
    return _json(row) if row else _json({"error": "customer not found"}, 404)


async def threads(request: web.Request) -> web.Response:
    q = request.query
    rows = await _run(request, query.list_threads, tenant=q.get("tenant") or None,
                      customer_ids=[q["customer_id"]] if q.get("customer_id") else None,
                      status=q.get("status") or None, queue=q.get("queue") or None,
                      assignee=q.get("assignee") or None, limit=_int(request, "limit", 50),
                      offset=_int(request, "offset", 0, 10**9))
    return _json({"threads": rows})


async def thread(request: web.Request) -> web.Response:
    m = request.match_info
    row = await _run(request, query.thread_detail, m["tenant"], m["thread_id"])
    return _json(row) if row else _json({"error": "thread not found"}, 404)


async def kpi_intervals(request: web.Request) -> web.Response:
    dim = request.query.get("dimension") or None
    if dim and dim not in ("overall", "channel", "queue", "agent"):
        raise BadRequest("dimension must be overall, channel, queue or agent")
    rows = await _run(request, query.kpi_intervals, _filter(request), dim,
                      request.query.get("value") or None)
    return _json({"intervals": rows})


async def kpi_summary(request: web.Request) -> web.Response:
    return _json(await _run(request, query.kpi_summary, _filter(request)))


async def kpi_agents(request: web.Request) -> web.Response:
    return _json({"agents": await _run(request, query.kpi_agents, _filter(request))})


async def kpi_contacts(request: web.Request) -> web.Response:
    rows = await _run(request, query.kpi_contacts, _filter(request),
                      limit=_int(request, "limit", 1000, 100_000))
    return _json({"contacts": rows})


async def deliveries(request: web.Request) -> web.Response:
    return _json({"channels": await _run(request, query.delivery_summary, _filter(request))})


async def dashboard_data(request: web.Request) -> web.Response:
    return _json(await _run(request, dashboard.build, _filter(request)))


async def health(request: web.Request) -> web.Response:
    versions = await _run(request, Store.applied_migrations)
    return _json({"status": "ok", "migrations": versions})


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_spec())


async def dashboard_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "dashboard.html")


async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard")


def _admin(request: web.Request) -> None:
    """Only a configured privacy admin token opens the privacy routes."""
    import hmac

    tokens = [t.get_secret_value() for t in request.app[SETTINGS].privacy.admin_tokens if t.get_secret_value()]
    if not tokens:
        raise web.HTTPForbidden(text='{"error": "privacy routes disabled: no admin token configured"}',
                                content_type="application/json")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(t.encode(), given.strip().encode()) for t in tokens):
        raise web.HTTPUnauthorized(text='{"error": "missing or wrong privacy admin token"}',
                                   content_type="application/json", headers={"WWW-Authenticate": "Bearer"})


async def privacy_erase(request: web.Request) -> web.Response:
    from projections import privacy_ops

    _admin(request)
    body = await request.json() if request.can_read_body else {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    m, settings = request.match_info, request.app[SETTINGS]
    if settings.privacy.master_key is None:
        raise BadRequest("no privacy master key is configured: nothing was sealed, nothing can be shredded")
    done = await asyncio.to_thread(privacy_ops.erase, settings, m["tenant"], m["customer_id"],
                                   also=[str(x) for x in body.get("also") or []], at=body.get("at"),
                                   requested_by=body.get("requested_by"), reason=body.get("reason"))
    log.info("api.privacy_erased", tenant=m["tenant"], erasure_id=done["erasure_id"],
             customers=len(done["customer_ids"]))
    return _json(done)


async def privacy_export(request: web.Request) -> web.Response:
    from projections import privacy_ops

    _admin(request)
    m = request.match_info
    found = await asyncio.to_thread(privacy_ops.export, request.app[SETTINGS], m["tenant"], m["customer_id"],
                                    from_log=request.query.get("log", "true") != "false")
    return _json(found)


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as e:
        return _json({"error": str(e)}, 400)
    except web.HTTPException:
        raise
    except Exception:  # a failure is a JSON 500, logged, never a crash
        log.exception("api.error", path=request.path)
        return _json({"error": "internal error"}, 500)


@web.middleware
async def read_only_headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


ROUTES = [
    ("/api/customers", customers), ("/api/customers/{tenant}/{customer_id}", customer),
    ("/api/threads", threads), ("/api/threads/{tenant}/{thread_id}", thread),
    ("/api/kpi/intervals", kpi_intervals), ("/api/kpi/summary", kpi_summary),
    ("/api/kpi/agents", kpi_agents), ("/api/kpi/contacts", kpi_contacts),
    ("/api/deliveries", deliveries), ("/api/dashboard", dashboard_data), ("/healthz", health),
    ("/openapi.json", openapi),
    ("/dashboard", dashboard_page), ("/", index),
]


def make_app(settings: ApiSettings, store: Store | None = None) -> web.Application:
    """The aiohttp application; ``store`` defaults to a read-only store on the settings' URL."""
    app = web.Application(middlewares=[errors, read_only_headers])
    app[STORE] = store or open_store(settings.database_url, readonly=True)
    app[SETTINGS] = settings
    for path, handler in ROUTES:
        app.router.add_get(path, handler)
    app.router.add_post("/api/privacy/{tenant}/{customer_id}/erase", privacy_erase)
    app.router.add_get("/api/privacy/{tenant}/{customer_id}/export", privacy_export)
    app.router.add_static("/static/", STATIC)

    async def close(app: web.Application) -> None:
        app[STORE].close()

    app.on_cleanup.append(close)
    return app


def prepare_database(settings: ApiSettings) -> None:
    """Create the tables if the projector has not yet (so an early API start answers empty)."""
    store = open_store(settings.database_url)
    try:
        store.migrate()
    except Exception as e:  # a read-only database user: the projector migrates instead
        log.warning("api.migrate_skipped", error=str(e))
    finally:
        store.close()


def serve(settings: ApiSettings) -> None:
    """`parley api`: serve until interrupted."""
    logs.configure(settings.log, service="api")
    log.info("api.settings", **settings.safe_dict())
    prepare_database(settings)
    log.info("api.listening", url=f"http://{settings.host}:{settings.port}/dashboard")
    web.run_app(make_app(settings), host=settings.host, port=settings.port, print=None,
                access_log=None)
