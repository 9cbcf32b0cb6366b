"""The ingress service: its state and the webhook pipeline (``Ingress``), shared by the webhook
routes and the agent API (``adapters/agent_api.py``); ``adapters/app.py`` wires them into the
aiohttp application.

A webhook request, step by step (each refusal is a 4xx with a JSON ``reason`` and a log line):
  1. adapter known (404) -> body within the adapter's ``max_body_bytes`` and the storable record
     size (413) -> account known for that adapter (404);
  2. the adapter's ``handshake`` (Meta ``hub.challenge``, WeChat ``echostr``, RBM ``secret``...):
     answered at once, nothing stored; any other GET is 405;
  3. ``verify`` over the raw bytes (``Rejected`` -> 401/403; 400 for a body too broken to verify);
  4. ``parse``: ``Rejected`` -> 4xx, nothing stored. ``Unmappable``, an unexpected exception, or
     events that break the contract (wrong tenant, partition key other than
     ``tenant|channel|customer id``, a type that is not a message event, a schema violation, a
     record over its topic's ``max.message.bytes`` even within ``adapters/limits``) -> a
     DeadLetter with the raw bytes and the error, and the answer is the adapter's normal 2xx:
     the request verified, its bytes are stored (raw and dead-letter topics) and can be replayed
     after a fix, and a provider retrying it for days would only repeat the same failure;
  5. the account each event names (WhatsApp ``phone_number_id``, Messenger/Instagram
     ``recipient.id``, Twilio ``To``, LINE ``destination``, WeChat ``ToUserName``, RBM ``agentId``,
     e-mail recipients) must be the route's account (``Account.matches``: its id, an alias, an
     ``@domain``), or another account of the same adapter under whose credentials the request
     also verifies (one Meta app serving several numbers): its events are then filed under that
     account's tenant. Anything else is refused 403 and dead-lettered (``account_mismatch``), all
     of the request: nothing of a request signed for one tenant is filed under another;
  6. the RawRequest record (id from tenant, adapter, account and the body's sha256, so a
     redelivery has the same id; credentials redacted: ``adapters/records``), the events cut to
     ``adapters/limits`` (``content_ref`` names the raw record when something was cut); with
     ``PARLEY_PRIVACY__ENABLED``, their personal fields sealed under their data subject's keys
     and the raw body under those of every subject of the request (``adapters/sealing``);
  7. dedup (``adapters/dedup``): the ids of the request are claimed on the claim log; ids already
     stored (a redelivery, minutes or days later, by any ingress process) are not written again;
  8. the records left are produced and every ack awaited; ``envelope.recorded_at`` is stamped
     just before (processing time, for latency measurement only). No ack within
     ``produce_timeout_s`` or no connection: 503 with ``Retry-After``, never a 2xx for something
     not stored;
  9. ``ack``: the adapter's reply to the provider (the same for a redelivery).
Nothing answers 500: an unexpected failure of the service itself answers 503 (not stored, retry).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from adapters import limits
from adapters.accounts import Accounts
from adapters.base import Account, Adapter, Rejected, Reply, Request, Unmappable
from adapters.channels import AdapterUnavailable, Registry, UnknownAdapter
from adapters.dedup import Busy, Dedup, Item, Outcome
from adapters.metrics import CONTENT_TYPE, IngressMetrics
from adapters.producer import Record, Stored, TooLarge, Unavailable
from adapters.records import (
    SECRET_HEADERS,
    SECRET_PARAMS,
    check_event,
    dead_letter_event,
    raw_request_event,
)
from adapters.sealing import Sealer
from parley import logs
from parley.settings import IngressSettings
from schemas import topics
from schemas.codec import EncodeError, codec_for
from schemas.events import derive_id

URL_MEMO = 4096  # request URLs remembered (``Ingress._url``)
log = logs.get("adapters.ingress")

Planned = tuple[str, Record]  # (event id, the record carrying it)


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
                 producer: Any, metrics: IngressMetrics, clock_ms: Callable[[], int] = now_ms,
                 dedup: Dedup | None = None, sealer: Sealer | None = None) -> None:
        self.settings, self.accounts, self.registry = settings, accounts, registry
        self.producer, self.metrics, self.clock_ms, self.dedup = producer, metrics, clock_ms, dedup
        self.sealer = sealer  # personal fields sealed before they reach Kafka (docs/PRIVACY.md)
        self.codec = codec_for(settings.kafka)  # registry ids when a registry is configured
        prefix = settings.kafka.topic_prefix
        self.raw_topic = topics.named(prefix, topics.RAW_INGRESS)
        self.messages_topic = topics.named(prefix, topics.MESSAGES)
        self.dead_letter_topic = topics.named(prefix, topics.DEAD_LETTER)
        self.agents_topic = topics.named(prefix, topics.AGENT_STATUS)
        self.conversation_messages_topic = topics.named(prefix, topics.CONVERSATION_MESSAGES)
        self.context_topic = topics.named(prefix, topics.CUSTOMER_CONTEXT)
        self.identity_commands_topic = topics.named(prefix, topics.IDENTITY_COMMANDS)
        self._fits = getattr(producer, "fits", lambda record: True)
        self._urls: dict[tuple[str, str, str], str] = {}

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
            resp = self.refused(self.unavailable("internal error"), label)
        m = self.metrics
        m.child(m.requests, "webhook", label, str(resp.status)).inc()
        m.child(m.request_seconds, "webhook").observe(time.perf_counter() - t0)
        return resp

    def unavailable(self, why: str) -> Refusal:
        return Refusal(503, f"not stored: {why}; retry later", "unavailable",
                       {"Retry-After": str(self.settings.retry_after_s)})

    def refused(self, r: Refusal, label: str, **context: Any) -> web.Response:
        self.metrics.rejected(label, r.metric)
        level = log.warning if r.status in (401, 403, 503) else log.info
        level("ingress.rejected", status=r.status, reason=r.reason, category=r.metric, **context)
        return web.json_response({"status": r.status, "reason": r.reason}, status=r.status, headers=r.headers)

    @property
    def ready(self) -> bool:
        return bool(self.producer.ready) and (self.dedup is None or self.dedup.ready)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.json_response({"ready": True})
        why = ("the producer cannot produce (not connected, brokers down, or topics missing)"
               if not self.producer.ready else "the dedup memory is still reading the claim log")
        return web.json_response({"ready": False, "reason": why}, status=503)

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
        events, failure = _parse(adapter, req, account)
        mismatch = None
        if failure is None:
            events, mismatch = self._owners(name, adapter, req, account, events)
            if mismatch is not None:
                events, failure = [], ("account_mismatch", mismatch)
        planned, events = self._plan(name, adapter, account, req, request.remote, events, failure)
        _, new = await self.store(planned, name)
        if mismatch is not None:
            raise Refusal(403, mismatch, "account_mismatch")
        for e in events:
            if e["envelope"]["event_id"] in new:
                self.metrics.child(self.metrics.events, name, e["envelope"]["event_type"]).inc()
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
        """The URL the provider called (and signed): the public base URL when configured.
        Remembered by (scheme, host, path): a provider calls the same few URLs again and again,
        and building one (yarl) took ~2 % of a request's time in a profile of the service."""
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/") + request.raw_path
        key = (request.scheme, request.host, request.raw_path)
        url = self._urls.get(key)
        if url is None:
            try:
                url = str(request.url)
            except ValueError:  # a Host header yarl cannot parse
                url = f"http://{self.settings.host}:{self.settings.port}{request.raw_path}"
            if len(self._urls) >= URL_MEMO:  # a fuzzer's paths do not pile up
                self._urls.clear()
            self._urls[key] = url
        return url

    def _owners(self, name: str, adapter: Adapter, req: Request, account: Account,
                events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        """(the events, each under the account its payload names), or ([], why) for a mismatch."""
        named = [e.get("channel_account_id") for e in events]
        foreign = sorted({n for n in named if n is not None and not account.matches(n)})  # naming none: ours
        if not foreign:
            return events, None
        reparsed: dict[str, list[dict[str, Any]]] = {}
        for n in foreign:
            owner = self.accounts.owner(name, n)
            if owner is None:
                return [], (f"the payload names {name} account {n!r}, not this route's ({account.account_id!r}) "
                            "nor any configured")
            try:
                adapter.verify(req, owner)
            except Exception:
                return [], (f"the payload names {name} account {n!r} (tenant {owner.tenant_id!r}), but the request is "
                            f"signed for {account.account_id!r} and does not verify under {n!r}'s credentials")
            again, failure = _parse(adapter, req, owner)
            if failure is not None or len(again) != len(events):
                return [], f"the events naming {n!r} do not map under that account: {failure}"
            reparsed[n] = again
        out = [reparsed[n][i] if n in reparsed else e for i, (e, n) in enumerate(zip(events, named, strict=True))]
        log.info("ingress.rerouted", adapter=name, route=account.account_id, accounts=foreign)
        return out, None

    def _plan(self, name: str, adapter: Adapter, account: Account, req: Request, remote: str | None,
              events: list[dict[str, Any]], failure: tuple[str, str] | None,
              ) -> tuple[list[Planned], list[dict[str, Any]]]:
        """(the records of one request, each with its event id: raw, then events or a dead letter;
        the events they carry: none when they became a dead letter)."""
        recorded = self.clock_ms()
        redact = getattr(adapter, "redact", None)
        safe_body = _redacted_body(redact, req.body)
        raw = raw_request_event(name, account, req, remote=remote,
                                secret_headers=SECRET_HEADERS | set(getattr(adapter, "secret_headers", ())),
                                secret_params=SECRET_PARAMS | set(getattr(adapter, "secret_params", ())),
                                body=safe_body)
        raw["envelope"]["recorded_at"] = recorded
        content_ref = f"{self.raw_topic}:{req.raw_event_id}"
        sealed = None
        if self.sealer is not None:  # the events first: the raw body is sealed under their subjects
            sealed = [self.sealer.message(limits.fit(e, content_ref)) for e in events] if failure is None else []
            raw = self.sealer.raw(raw, sealed)
        raw_record = Record(self.raw_topic, raw["envelope"]["partition_key"].encode(),
                            self.encode(raw, self.raw_topic), timestamp_ms=req.received_at_ms)
        if not self._fits(raw_record):
            raise Refusal(413, f"the request does not fit {self.raw_topic}'s max.message.bytes", "too_large")
        planned: list[Planned] = [(req.raw_event_id, raw_record)]
        if failure is None:
            try:
                records = self._event_records(events, recorded, content_ref) if sealed is None else \
                    self._event_records(sealed, recorded, content_ref, fitted=True)
                return planned + records, events
            except (EncodeError, TooLarge) as e:
                failure = ("schema_invalid" if isinstance(e, EncodeError) else "too_large", str(e))
        reason, error = failure
        self.metrics.dead_letters.labels(name, reason).inc()
        log.warning("ingress.dead_letter", adapter=name, account_id=account.account_id, reason=reason,
                    error=error, raw_event_id=req.raw_event_id)
        dead = dead_letter_event(name, account, req, reason, error, self.raw_topic, safe_body)
        dead["envelope"]["recorded_at"] = recorded
        if self.sealer is not None:
            dead = self.sealer.dead_letter(dead, account.tenant_id)
        headers = tuple((f"parley.error.{k}", v.encode()) for k, v in dead["headers"].items())
        planned.append((dead["envelope"]["event_id"],
                        Record(self.dead_letter_topic, dead["envelope"]["partition_key"].encode(),
                               self.codec.encode(dead, self.dead_letter_topic), headers, req.received_at_ms)))
        return planned, []

    def _event_records(self, events: list[dict[str, Any]], recorded: int, content_ref: str,
                       fitted: bool = False) -> list[Planned]:
        out: list[Planned] = []
        seen: set[str] = set()
        for e in events:
            env = e["envelope"]
            if env["event_id"] in seen:  # the same event twice in one body (a provider's batch)
                continue
            seen.add(env["event_id"])
            env["recorded_at"] = recorded
            record = Record(self.messages_topic, env["partition_key"].encode(),
                            self.encode(e if fitted else limits.fit(e, content_ref), self.messages_topic),
                            (("event_type", env["event_type"].encode()),), env["occurred_at"])
            if not self._fits(record):
                raise TooLarge(record, getattr(self.producer, "limit", lambda t: 0)(record.topic))
            out.append((env["event_id"], record))
        return out

    def encode(self, event: dict[str, Any], topic: str) -> bytes:
        """Wire bytes of an event (``EncodeError`` if it does not fit its schema; the codec's
        compiled writers, ``schemas.writer``)."""
        return self.codec.encode(event, topic)

    async def store(self, planned: Sequence[Planned], label: str) -> tuple[dict[str, Stored | None], set[str]]:
        """Claim, produce what is new, await every ack: (event id -> where it is, None for a
        duplicate whose place is not known; the ids written now). ``Refusal(503)`` when it
        cannot be stored."""
        outcome = await self._claim([Item(i, r.topic, r.key) for i, r in planned])
        mine = {i.id for i in outcome.mine}
        todo = [(i, r) for i, r in planned if i in mine]
        try:
            acked = await self.produce([r for _, r in todo])
        except Refusal:
            if self.dedup is not None:
                self.dedup.release(outcome)
            raise
        where = {i: s for (i, _), s in zip(todo, acked, strict=True)}
        if self.dedup is not None:
            self.dedup.stored(outcome, where, keep_places=label == "agent_api")
        if len(todo) < len(planned):
            self.metrics.duplicates.labels(label).inc(len(planned) - len(todo))
        return {**outcome.stored, **where}, set(where)

    async def _claim(self, items: list[Item]) -> Outcome:
        if self.dedup is None:
            return Outcome(None, items, {})
        try:
            return await self.dedup.claim(items)
        except Busy as e:
            raise self.unavailable(f"another delivery of the same events is being stored ({e})") from None
        except Unavailable as e:
            raise self.unavailable(str(e)) from None

    async def produce(self, records: Sequence[Record]) -> list[Stored]:
        """Produce and await every ack; ``Refusal(503)`` when Kafka did not acknowledge."""
        if not records:
            return []
        t0 = time.perf_counter()
        try:
            stored = await self.producer.send_all(records)
        except Unavailable as e:
            self.metrics.child(self.metrics.produce_seconds, "unavailable").observe(time.perf_counter() - t0)
            raise self.unavailable(str(e)) from None
        except TooLarge as e:  # the size checks above make this a bug, not a provider's fault
            raise Refusal(413, str(e), "too_large") from None
        self.metrics.child(self.metrics.produce_seconds, "acked").observe(time.perf_counter() - t0)
        return stored


# -- pure steps ---------------------------------------------------------------------------------

async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing with 413 as soon as it exceeds ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise Refusal(413, f"body of {request.content_length} bytes exceeds the limit of {limit}", "too_large")
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"body exceeds the limit of {limit} bytes", "too_large")
            chunks.append(chunk)
    except (HttpProcessingError, ConnectionError) as e:
        raise Refusal(400, f"could not read the body: {e}", "malformed") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _redacted_body(redact: Callable[[bytes], bytes] | None, body: bytes) -> bytes:
    if redact is None:
        return body
    try:
        return redact(body)
    except Exception:  # never store a body whose credentials could not be taken out
        log.exception("ingress.redact_error")
        return b""


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
        if e.status == 400:  # too malformed to be verified at all (e.g. a form that is not UTF-8)
            raise Refusal(400, e.reason, "malformed") from None
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
