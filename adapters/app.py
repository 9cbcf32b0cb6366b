"""`parley ingress`: the webhook HTTP service (aiohttp).

Routes: ``POST|GET /webhooks/{adapter}/{account_id}`` (one per channel account), the agent API
(``adapters/agent_api.py``), ``/healthz`` (the process answers), ``/readyz`` (200 only while the
Kafka producer is connected) and Prometheus ``/metrics``.

A webhook request, step by step (each refusal is a 4xx with a JSON ``reason`` and a log line):
  1. adapter known (404) -> body within the adapter's ``max_body_bytes`` and the storable record
     size (413) -> account known for that adapter (404);
  2. the adapter's ``handshake`` (Meta ``hub.challenge``, WeChat ``echostr``, RBM ``secret``...):
     answered at once, nothing stored; any other GET is 405;
  3. ``verify`` over the raw bytes (``Rejected`` -> 401/403);
  4. the RawRequest record (id from tenant, adapter, account and the body's sha256, so a
     redelivery has the same id; secret-bearing headers redacted);
  5. ``parse``: ``Rejected`` -> 4xx, nothing stored. ``Unmappable``, an unexpected exception, or
     events that break the contract (wrong tenant, partition key other than
     ``tenant|channel|customer id``, a type that is not a message event, a schema violation) ->
     a DeadLetter with the raw bytes and the error, and the answer is the adapter's normal 2xx:
     the request verified, its bytes are stored (raw and dead-letter topics) and can be replayed
     after a fix, and a provider retrying it for days would only repeat the same failure;
  6. the raw record and the events (raw topic; message events to the messages topic keyed by
     ``envelope.partition_key``, Kafka timestamp = event time) are produced and every ack is
     awaited; ``envelope.recorded_at`` is stamped just before (processing time, for latency
     measurement only). No ack within ``produce_timeout_s`` or no connection: 503 with
     ``Retry-After``, never a 2xx for something not stored;
  7. ``ack``: the adapter's reply to the provider.
Nothing answers 500: an unexpected failure of the service itself answers 503 (not stored, retry).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from adapters import accounts as accounts_mod
from adapters.accounts import Accounts
from adapters.base import Account, Adapter, Rejected, Reply, Request, Unmappable
from adapters.channels import AdapterUnavailable, Registry, UnknownAdapter
from adapters.metrics import CONTENT_TYPE, IngressMetrics
from adapters.producer import Producer, Record, Stored, Unavailable
from parley import logs
from parley.settings import IngressSettings
from schemas import topics
from schemas.codec import Codec, EncodeError
from schemas.events import derive_id, envelope, make

log = logs.get("adapters.app")

# Never written to the raw topic as received: they are credentials, not evidence.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-telegram-bot-api-secret-token"})
SECRET_PARAMS = frozenset({"token", "access_token", "secret", "api_key", "key"})  # e.g. e-mail's ?token=
REDACTED = "<redacted>"
MESSAGE_TYPES = frozenset(topics.MESSAGES.value_types)
WRITES = (topics.RAW_INGRESS, topics.MESSAGES, topics.DEAD_LETTER, topics.AGENT_STATUS,  # what the ingress produces to
          topics.CONVERSATION_MESSAGES, topics.CUSTOMER_CONTEXT, topics.IDENTITY_COMMANDS)


class Refusal(Exception):
    """Answer ``status`` with ``reason``; ``metric`` is the reason's category for the counters."""

    def __init__(self, status: int, reason: str, metric: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {reason}")
        self.status, self.reason, self.metric, self.headers = status, reason, metric, dict(headers or {})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ingress:
    """The service's state and the webhook pipeline; one per aiohttp application."""

    def __init__(self, settings: IngressSettings, accounts: Accounts, registry: Registry,
                 producer: Any, metrics: IngressMetrics, clock_ms: Callable[[], int] = now_ms) -> None:
        self.settings, self.accounts, self.registry = settings, accounts, registry
        self.producer, self.metrics, self.clock_ms = producer, metrics, clock_ms
        self.codec = Codec()
        prefix = settings.kafka.topic_prefix
        self.raw_topic = topics.named(prefix, topics.RAW_INGRESS)
        self.messages_topic = topics.named(prefix, topics.MESSAGES)
        self.dead_letter_topic = topics.named(prefix, topics.DEAD_LETTER)
        self.agents_topic = topics.named(prefix, topics.AGENT_STATUS)
        self.conversation_messages_topic = topics.named(prefix, topics.CONVERSATION_MESSAGES)
        self.context_topic = topics.named(prefix, topics.CUSTOMER_CONTEXT)
        self.identity_commands_topic = topics.named(prefix, topics.IDENTITY_COMMANDS)

    # -- HTTP handlers -------------------------------------------------------------------------

    async def webhook(self, request: web.Request) -> web.Response:
        t0 = time.perf_counter()
        name = request.match_info["adapter"]
        label = name if name in self.registry.names() else "unknown"
        try:
            resp = await self._webhook(request, name)
        except Refusal as r:
            resp = self.refused(r, label, adapter=name, account_id=request.match_info.get("account_id"))
        except Exception:  # a bug of ours: say "not stored, retry" rather than 500
            log.exception("ingress.internal_error", adapter=name, account_id=request.match_info.get("account_id"))
            resp = self.refused(Refusal(503, "internal error: not stored, retry later", "unavailable",
                                        {"Retry-After": str(self.settings.retry_after_s)}), label)
        self.metrics.requests.labels("webhook", label, str(resp.status)).inc()
        self.metrics.request_seconds.labels("webhook").observe(time.perf_counter() - t0)
        return resp

    def refused(self, r: Refusal, label: str, **context: Any) -> web.Response:
        self.metrics.rejected(label, r.metric)
        level = log.warning if r.status in (401, 403, 503) else log.info
        level("ingress.rejected", status=r.status, reason=r.reason, category=r.metric, **context)
        return web.json_response({"status": r.status, "reason": r.reason}, status=r.status, headers=r.headers)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.producer.ready:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": "not connected to Kafka, or its topics are missing"}, status=503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    # -- the pipeline --------------------------------------------------------------------------

    async def _webhook(self, request: web.Request, name: str) -> web.Response:
        account_id = request.match_info["account_id"]
        adapter = self._adapter(name)
        body = await read_body(request, min(adapter.max_body_bytes, self.settings.max_record_bytes))
        account = self.accounts.get(name, account_id)
        if account is None:
            raise Refusal(404, f"unknown account {account_id!r} for adapter {name!r}", "unknown_account")
        req = self._request(request, name, account, body)
        handshake = _handshake(adapter, req, account)
        if handshake is not None:
            log.info("ingress.handshake", adapter=name, account_id=account_id, status=handshake.status)
            return _response(handshake, ok=range(200, 500), fallback=400)
        if request.method != "POST":
            raise Refusal(405, "only POST, or GET for the channel's verification handshake", "bad_method",
                          {"Allow": "POST, GET"})
        _verify(adapter, req, account)
        raw = raw_request_event(name, account, req, remote=request.remote,
                                secret_headers=SECRET_HEADERS | set(getattr(adapter, "secret_headers", ())),
                                secret_params=SECRET_PARAMS | set(getattr(adapter, "secret_params", ())))
        events, failure = _parse(adapter, req, account)
        records, events = self._records(name, account, req, raw, events, failure)
        await self.produce(records)
        for e in events:
            self.metrics.events.labels(name, e["envelope"]["event_type"]).inc()
        return _response(_ack(adapter, req, events), ok=range(200, 300), fallback=200)

    def _adapter(self, name: str) -> Adapter:
        try:
            return self.registry.get(name)
        except UnknownAdapter:
            raise Refusal(404, f"unknown adapter {name!r}", "unknown_adapter") from None
        except AdapterUnavailable as e:
            log.error("ingress.adapter_unavailable", adapter=name, error=str(e))
            raise Refusal(404, f"adapter {name!r} is not available on this server", "adapter_unavailable") from None

    def _request(self, request: web.Request, name: str, account: Account, body: bytes) -> Request:
        raw_id = derive_id(account.tenant_id, name, account.account_id, "raw", hashlib.sha256(body).hexdigest())
        return Request(method=request.method, url=self._url(request), path=request.path,
                       query=dict(request.query), headers={k.lower(): v for k, v in request.headers.items()},
                       body=body, received_at_ms=self.clock_ms(), raw_event_id=raw_id)

    def _url(self, request: web.Request) -> str:
        """The URL the provider called (and signed): the public base URL when configured."""
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/") + request.raw_path
        try:
            return str(request.url)
        except ValueError:  # a Host header yarl cannot parse
            return f"http://{self.settings.host}:{self.settings.port}{request.raw_path}"

    def _records(self, name: str, account: Account, req: Request, raw: dict[str, Any],
                 events: list[dict[str, Any]], failure: tuple[str, str] | None) -> tuple[list[Record], list[dict]]:
        """(records to produce, events they carry); a failure turns the events into a dead letter."""
        recorded = self.clock_ms()
        raw["envelope"]["recorded_at"] = recorded
        records = [Record(self.raw_topic, raw["envelope"]["partition_key"].encode(),
                          self.codec.encode(raw, self.raw_topic), timestamp_ms=req.received_at_ms)]
        if failure is None:
            try:
                records += [self._event_record(e, recorded) for e in events]
                return records, events
            except EncodeError as e:
                failure = ("schema_invalid", str(e))
                records = records[:1]
        reason, error = failure
        self.metrics.dead_letters.labels(name, reason).inc()
        log.warning("ingress.dead_letter", adapter=name, account_id=account.account_id, reason=reason,
                    error=error, raw_event_id=req.raw_event_id)
        dead = dead_letter_event(name, account, req, reason, error, self.raw_topic)
        dead["envelope"]["recorded_at"] = recorded
        headers = tuple((f"parley.error.{k}", v.encode()) for k, v in dead["headers"].items())
        records.append(Record(self.dead_letter_topic, dead["stage"].encode(),
                              self.codec.encode(dead, self.dead_letter_topic), headers, req.received_at_ms))
        return records, []

    def _event_record(self, event: dict[str, Any], recorded: int) -> Record:
        env = event["envelope"]
        env["recorded_at"] = recorded
        return Record(self.messages_topic, env["partition_key"].encode(),
                      self.codec.encode(event, self.messages_topic),
                      (("event_type", env["event_type"].encode()),), env["occurred_at"])

    async def produce(self, records: Sequence[Record]) -> list[Stored]:
        """Produce and await every ack; ``Refusal(503)`` when Kafka did not acknowledge."""
        t0 = time.perf_counter()
        try:
            stored = await self.producer.send_all(records)
        except Unavailable as e:
            self.metrics.produce_seconds.labels("unavailable").observe(time.perf_counter() - t0)
            raise Refusal(503, f"not stored: {e}; retry later", "unavailable",
                          {"Retry-After": str(self.settings.retry_after_s)}) from None
        self.metrics.produce_seconds.labels("acked").observe(time.perf_counter() - t0)
        return stored


# -- pure steps ---------------------------------------------------------------------------------

async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing with 413 as soon as it exceeds ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise Refusal(413, f"body of {request.content_length} bytes exceeds the limit of {limit}", "too_large")
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"body exceeds the limit of {limit} bytes", "too_large")
            chunks.append(chunk)
    except (HttpProcessingError, ConnectionError) as e:
        raise Refusal(400, f"could not read the body: {e}", "malformed") from None
    return b"".join(chunks)


def _handshake(adapter: Adapter, req: Request, account: Account) -> Reply | None:
    try:
        return adapter.handshake(req, account)
    except Rejected as e:
        raise Refusal(_client_error(e.status), e.reason, "handshake_failed") from None
    except Exception:
        log.exception("ingress.handshake_error", adapter=account.channel, account_id=account.account_id)
        raise Refusal(400, "handshake failed", "handshake_failed") from None


def _verify(adapter: Adapter, req: Request, account: Account) -> None:
    try:
        adapter.verify(req, account)
    except Rejected as e:
        status = e.status if e.status in (401, 403) else 401
        raise Refusal(status, e.reason, "unauthorized" if status == 401 else "forbidden") from None
    except Exception:
        log.exception("ingress.verify_error", adapter=account.channel, account_id=account.account_id)
        raise Refusal(401, "the request could not be verified", "verify_error") from None


def _parse(adapter: Adapter, req: Request, account: Account) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    """(events, None), or ([], (reason, error)) for a dead letter; ``Refusal`` for bad input."""
    try:
        events = list(adapter.parse(req, account))
    except Rejected as e:
        raise Refusal(_client_error(e.status), e.reason, "malformed") from None
    except Unmappable as e:
        return [], ("unmappable", str(e) or "unmappable")
    except Exception as e:  # a bug in the adapter: keep the bytes, replay after the fix
        log.exception("ingress.parse_error", adapter=account.channel, account_id=account.account_id)
        return [], ("parse_error", f"{type(e).__name__}: {e}")
    problems = [p for p in (check_event(e, account, i) for i, e in enumerate(events)) if p]
    if problems:
        return [], ("invalid_event", "; ".join(problems))
    return events, None


def check_event(event: Any, account: Account, index: int = 0) -> str | None:
    """Why an adapter's event breaks the contract, or None: type, tenant, key, event time."""
    try:
        env = event["envelope"]
        etype = env["event_type"]
        if etype not in MESSAGE_TYPES:
            return f"event {index}: {etype!r} is not a message event"
        if env["tenant_id"] != account.tenant_id:
            return f"event {index}: tenant {env['tenant_id']!r} is not the account's {account.tenant_id!r}"
        who = event["sender"] if etype == "MessageReceived" else event["recipient"]
        expected = f"{account.tenant_id}|{event['channel']}|{who['id']}"
        if env["partition_key"] != expected:
            return f"event {index}: partition key {env['partition_key']!r}, expected {expected!r}"
        if not isinstance(env["occurred_at"], int) or env["occurred_at"] < 0:
            return f"event {index}: occurred_at {env['occurred_at']!r} is not epoch milliseconds"
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        return f"event {index}: not shaped like an event ({e!r})"
    return None


def _ack(adapter: Adapter, req: Request, events: list[dict[str, Any]]) -> Reply:
    try:
        return adapter.ack(req, events)
    except Exception:  # stored already: the provider must hear success
        log.exception("ingress.ack_error", path=req.path)
        return Reply(200, b"")


def _response(reply: Reply, *, ok: range, fallback: int) -> web.Response:
    status = reply.status if isinstance(reply.status, int) and reply.status in ok else fallback
    body = reply.body.encode() if isinstance(reply.body, str) else bytes(reply.body or b"")
    return web.Response(status=status, body=body, headers={"Content-Type": reply.content_type or "text/plain"})


def _client_error(status: int) -> int:
    return status if isinstance(status, int) and 400 <= status < 500 else 400


def raw_request_event(adapter: str, account: Account, req: Request, *, remote: str | None,
                      secret_headers: frozenset[str] | set[str] = SECRET_HEADERS,
                      secret_params: frozenset[str] | set[str] = SECRET_PARAMS) -> dict[str, Any]:
    """The RawRequest record of a verified request (its id is ``req.raw_event_id``).

    Headers and query parameters that are credentials are replaced by ``<redacted>`` (an adapter
    may name more in optional ``secret_headers`` / ``secret_params`` attributes); everything else
    is kept as received, so signatures can be re-checked on audit or replay.
    """
    key = f"{account.tenant_id}|{adapter}|{account.account_id}"
    env = envelope("RawRequest", event_id=req.raw_event_id, occurred_at=req.received_at_ms,
                   tenant_id=account.tenant_id, partition_key=key, producer=f"ingress/{adapter}")
    headers = {k: (REDACTED if k in secret_headers else v) for k, v in req.headers.items()}
    query = _redact_query(req.url.partition("?")[2], secret_params)
    return make("RawRequest", env, channel=adapter, channel_account_id=account.account_id, method=req.method,
                path=req.path, query=query, headers=headers, body=req.body, remote_addr=remote, verified=True)


def _redact_query(query: str, names: frozenset[str] | set[str]) -> str:
    """The query string as received, unless it holds a credential (then re-encoded, redacted)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.lower() in names for k, _ in pairs):
        return query
    return urlencode([(k, REDACTED if k.lower() in names else v) for k, v in pairs])


def dead_letter_event(adapter: str, account: Account, req: Request, reason: str, error: str,
                      raw_topic: str) -> dict[str, Any]:
    """A DeadLetter carrying the raw bytes, the error and the context to find the raw record."""
    stage = f"ingress/{adapter}"
    env = envelope("DeadLetter", event_id=derive_id(req.raw_event_id, "DeadLetter"), occurred_at=req.received_at_ms,
                   tenant_id=account.tenant_id, partition_key=stage, producer=stage)
    headers = {"reason": reason, "adapter": adapter, "tenant_id": account.tenant_id,
               "account_id": account.account_id, "raw_event_id": req.raw_event_id,
               "content_type": req.headers.get("content-type", "")}
    return make("DeadLetter", env, stage=stage, reason=reason, error=error[:8000], payload=req.body,
                source_topic=raw_topic, headers=headers)


# -- wiring -------------------------------------------------------------------------------------

INGRESS = web.AppKey("ingress", Ingress)


def build_app(settings: IngressSettings, *, accounts: Accounts | None = None, registry: Registry | None = None,
              producer: Any = None, metrics: IngressMetrics | None = None,
              clock_ms: Callable[[], int] = now_ms) -> web.Application:
    """The aiohttp application; tests pass accounts, a registry with fakes, or a fake producer."""
    from adapters import (
        agent_api,  # it imports this module: import it once this one is complete
    )

    registry = registry or Registry()
    if accounts is None:
        accounts = accounts_mod.load(settings.accounts_file, known_adapters=registry.names())
    metrics = metrics or IngressMetrics()
    if producer is None:
        prefix = settings.kafka.topic_prefix
        producer = Producer(settings.kafka, timeout_s=settings.produce_timeout_s,
                            max_request_size=settings.max_record_bytes + 128 * 1024,
                            required_topics=[topics.named(prefix, t) for t in WRITES],
                            on_ready_change=lambda ready: metrics.producer_ready.set(1 if ready else 0))
    ingress = Ingress(settings, accounts, registry, producer, metrics, clock_ms)
    app = web.Application()
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


async def _on_startup(app: web.Application) -> None:
    ingress = app[INGRESS]
    for adapter in sorted(ingress.accounts.adapters()):
        try:
            ingress.registry.get(adapter)
        except (UnknownAdapter, AdapterUnavailable) as e:
            log.error("ingress.adapter_unavailable", adapter=adapter, error=str(e))
    await ingress.producer.start()


async def _on_cleanup(app: web.Application) -> None:
    await app[INGRESS].producer.stop()


def serve(settings: IngressSettings) -> None:
    """Run the ingress until interrupted (blocking). Raises ``AccountsError`` on a bad accounts file."""
    logs.configure(settings.log, service="ingress")
    registry = Registry()
    accounts = accounts_mod.load(settings.accounts_file, known_adapters=registry.names())
    app = build_app(settings, accounts=accounts, registry=registry)
    log.info("ingress.starting", host=settings.host, port=settings.port, accounts=len(accounts),
             tenants=sorted(accounts.tenants), settings=settings.safe_dict())
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)


def describe_accounts(accounts: Accounts) -> str:
    """One line per account (for logs and the CLI): tenant, adapter, account, route."""
    return "\n".join(f"{a.tenant_id:16} {a.channel:10} {a.account_id:24} /webhooks/{a.channel}/{a.account_id}"
                     for a in accounts)
