"""The agent API: agents' presence, replies, thread and identity commands, customer context, as events.

Served by the ingress process, guarded by a bearer token (``Authorization: Bearer <token>``, one
of ``IngressSettings.agent_tokens``; two at once while rotating; none configured: 403). The
caller is the agent desktop's backend, the bot runner or the demo, trusted for every tenant it
names. The tenant must own at least one account in the accounts file (404 otherwise).

``POST /agents/{tenant_id}/{agent_id}/status`` -> AgentStatusChanged on the agents topic, key
``tenant`` (routing sees one tenant's agents in order)::

    {"presence": "online" | "away" | "offline", "capacity": 3, "skills": ["refund"],
     "languages": ["fr", "en"], "channels": [], "queues": ["billing"], "display_name": "Inès",
     "occurred_at": 1731400000000, "change_id": "optional idempotency key"}

``POST /agents/{tenant_id}/{agent_id}/replies`` -> MessageSent on the messages topic, keyed like
the customer's inbound events (``tenant|channel|recipient id``)::

    {"message_id": "out-83c1", "channel": "whatsapp", "channel_account_id": "106540352242922",
     "recipient": {"id": "33612345678"}, "text": "Your parcel left today.",
     "author_type": "agent" | "bot" | "automation" | "system", "kind": "free_form" | "template",
     "template_name": null, "attachments": [], "rich": null, "thread_id": null,
     "customer_id": null, "in_reply_to_event_id": null, "occurred_at": 1731400005000}

``POST /agents/{tenant_id}/{agent_id}/threads/{thread_id}/resolve`` -> ConversationResolved
(``resolved_by`` "agent" unless the body says "bot" or "system"; ``agent_id`` the path's agent)
on the conversation-messages topic, key ``tenant|customer``, where the threads processor applies
it to the thread (ignored if the thread is unknown or already resolved)::

    {"customer_id": "c-1", "channel": "whatsapp", "resolved_by": "agent",
     "occurred_at": 1731400009000, "request_id": "optional idempotency key"}

``POST /agents/{tenant_id}/{agent_id}/threads/{thread_id}/transfer`` -> ConversationTransferred
(``from_agent_id`` the path's agent), same topic and key; at least one target::

    {"customer_id": "c-1", "to_queue": "billing", "to_agent": "marc", "reason": "refund",
     "from_queue": null, "channel": null, "occurred_at": 1731400009000, "request_id": null}

``POST /customers/{tenant_id}/{customer_id}/context`` -> CustomerContextUpdated on the customer
context topic, key ``tenant|customer`` (routing's VIP priority, the customers projection). Sent
by the CRM/shop connector with the same agent token (the accounts file has no per-tenant
credential that would fit better)::

    {"source": "crm", "name": "Zoé Martin", "tier": "vip", "lifecycle_stage": "customer",
     "attributes": {"orders": "12"}, "occurred_at": 1731400000000, "request_id": null}

``POST /agents/{tenant_id}/{agent_id}/identities/link`` -> IdentityLinked (``signal``
"agent_manual", ``linked_by`` the path's agent) on the identity commands topic, key ``tenant``,
where the identity processor moves the identity to the customer. The identity is named as
ChannelIdentity names it: ``channel`` and ``id`` (key ``channel:<channel>:<id>``), or exactly one
of ``phone_e164``, ``email``, ``login_id`` (keys ``phone:``, ``email:`` lower-cased, ``login:``)::

    {"channel": "messenger", "id": "psid-1", "customer_id": "c-1", "occurred_at": 1731400009000,
     "request_id": null}

``POST /agents/{tenant_id}/{agent_id}/identities/unlink`` -> IdentityUnlinked (``unlinked_by``
the path's agent), same topic and key: splits the identity off ``customer_id`` to
``new_customer_id`` (derived by the processor when absent); ignored if the customer no longer
owns it. Same identity fields, plus ``customer_id``, ``new_customer_id``, ``undoes_event_id``,
``reason``, ``occurred_at``, ``request_id``.

``POST /agents/{tenant_id}/{agent_id}/customers/merge`` -> IdentitiesMerged (``merged_by`` the
path's agent), same topic and key: ``merged_customer_id``'s identities move to ``customer_id``
(never itself: 400)::

    {"customer_id": "c-1", "merged_customer_id": "c-2", "occurred_at": null, "request_id": "r-1"}

Event time is ``occurred_at`` (epoch ms) when given (the demo replays a synthetic day), else the
receipt time. Ids are deterministic: a reply's from (tenant, message_id), a status change's from
(tenant, agent, change_id or the body's sha256), a command's from (tenant, type, its subject:
thread, customer [and source], identity key and customer, or the two customers; occurred_at,
request_id), so a retried POST is recognised downstream. A command with neither ``occurred_at``
nor ``request_id`` is dated and identified by its receipt: its retry is a new event (harmless
for resolve, and for identity commands, which the identity processor skips once in effect).
A free-form reply on WhatsApp, Messenger, Instagram or WeChat outside the customer's service
window (``adapters/windows.py``) answers 422 with a reason naming the window's end and the
account's templates. Answers 200 ``{"event_id", "topic", "partition", "offset"}`` once Kafka acknowledged (a retry of a
request already stored within the dedup horizon is not written again: it answers the first one's
place, with ``"duplicate": true``; ``partition``/``offset`` are null when that place is unknown); 503 with
``Retry-After`` otherwise; 400 with the first validation error for a bad body.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from adapters import limits
from adapters.agent_events import (
    AGENT_ID,
    ContextBody,
    LinkBody,
    MergeBody,
    ReplyBody,
    ResolveBody,
    StatusBody,
    TransferBody,
    UnlinkBody,
    _Body,
    context_event,
    link_event,
    merge_event,
    reply_event,
    resolve_event,
    status_event,
    transfer_event,
    unlink_event,
)
from adapters.ingress import Ingress, Refusal, log, read_body
from adapters.producer import Record
from adapters.windows import WindowBook

MAX_BODY = 64 * 1024


class AgentApi:
    def __init__(self, ingress: Ingress) -> None:
        self.ingress = ingress
        self.tokens = tuple(t.get_secret_value() for t in ingress.settings.agent_tokens if t.get_secret_value())
        self.windows = WindowBook(ingress.settings.kafka, ingress.accounts, ingress.codec)

    async def status(self, request: web.Request) -> web.Response:
        return await self._handle(request, "agent_status")

    async def reply(self, request: web.Request) -> web.Response:
        return await self._handle(request, "agent_reply")

    async def resolve(self, request: web.Request) -> web.Response:
        return await self._handle(request, "thread_resolve")

    async def transfer(self, request: web.Request) -> web.Response:
        return await self._handle(request, "thread_transfer")

    async def context(self, request: web.Request) -> web.Response:
        return await self._handle(request, "customer_context")

    async def link(self, request: web.Request) -> web.Response:
        return await self._handle(request, "identity_link")

    async def unlink(self, request: web.Request) -> web.Response:
        return await self._handle(request, "identity_unlink")

    async def merge(self, request: web.Request) -> web.Response:
        return await self._handle(request, "customer_merge")

    async def _handle(self, request: web.Request, route: str) -> web.Response:
        t0 = time.perf_counter()
        ing = self.ingress
        try:
            resp = await self._store(request, route)
        except Refusal as r:
            resp = ing.refused(r, "agent_api", route=route, tenant_id=request.match_info.get("tenant_id"))
        except Exception:  # noqa: BLE001 - any bug answers 503 (retry), never a crash or a 2xx
            log.exception("agent_api.internal_error", route=route)
            resp = ing.refused(Refusal(503, "internal error: not stored, retry later", "unavailable",
                                       {"Retry-After": str(ing.settings.retry_after_s)}), "agent_api")
        ing.metrics.requests.labels(route, "agent_api", str(resp.status)).inc()
        ing.metrics.request_seconds.labels(route).observe(time.perf_counter() - t0)
        return resp

    async def _store(self, request: web.Request, route: str) -> web.Response:
        self._authorize(request)
        ids = dict(request.match_info)
        tenant = ids["tenant_id"]
        if tenant not in self.ingress.accounts.tenants:
            raise Refusal(404, f"unknown tenant {tenant!r}", "unknown_tenant")
        for name in ("agent_id", "thread_id", "customer_id"):
            if name in ids and not AGENT_ID.fullmatch(ids[name]):
                raise Refusal(400, f"{name.replace('_', ' ')}: letters, digits and _ . @ : - only", "invalid_body")
        raw = await read_body(request, MAX_BODY)
        event, topic = self._sealed(route, *self._event(route, ids, raw, self.ingress.clock_ms()))
        if route == "agent_reply" and (closed := self.windows.refusal(event)):
            raise Refusal(422, closed, "window_closed")  # free-form outside the window: a template is needed
        env = event["envelope"]
        env["recorded_at"] = self.ingress.clock_ms()
        record = Record(topic, env["partition_key"].encode(), self.ingress.encode(limits.fit(event, ""), topic),
                        (("event_type", env["event_type"].encode()),), env["occurred_at"])
        where, new = await self.ingress.store([(env["event_id"], record)], "agent_api")
        stored = where.get(env["event_id"])
        if new:
            self.ingress.metrics.events.labels("agent_api", env["event_type"]).inc()
        log.info("agent_api.stored", route=route, tenant_id=tenant, event_type=env["event_type"],
                 event_id=env["event_id"], key=env["partition_key"], topic=topic, duplicate=not new,
                 partition=stored.partition if stored else None, offset=stored.offset if stored else None)
        body = {"event_id": env["event_id"], "topic": topic, "partition": stored.partition if stored else None,
                "offset": stored.offset if stored else None}
        if not new:
            body["duplicate"] = True  # a retry of a request already stored: the first one's place
        return web.json_response(body)

    def _event(self, route: str, ids: dict[str, str], raw: bytes, received: int) -> tuple[dict[str, Any], str]:
        """(the event a validated body maps to, its topic)."""
        ing, tenant = self.ingress, ids["tenant_id"]
        if route == "agent_status":
            return status_event(tenant, ids["agent_id"], _validate(StatusBody, raw), raw, received), ing.agents_topic
        if route == "agent_reply":
            return reply_event(tenant, ids["agent_id"], _validate(ReplyBody, raw), received), ing.messages_topic
        if route == "thread_resolve":
            event = resolve_event(tenant, ids["agent_id"], ids["thread_id"], _validate(ResolveBody, raw), received)
            return event, ing.conversation_messages_topic
        if route == "thread_transfer":
            event = transfer_event(tenant, ids["agent_id"], ids["thread_id"], _validate(TransferBody, raw), received)
            return event, ing.conversation_messages_topic
        if route == "identity_link":
            link = _validate(LinkBody, raw)
            return link_event(tenant, ids["agent_id"], link, received, key=self._key(tenant, link)), \
                ing.identity_commands_topic
        if route == "identity_unlink":
            unlink = _validate(UnlinkBody, raw)
            event = unlink_event(tenant, ids["agent_id"], unlink, received, key=self._key(tenant, unlink))
            return event, ing.identity_commands_topic
        if route == "customer_merge":
            merge = merge_event(tenant, ids["agent_id"], _validate(MergeBody, raw), received)
            return merge, ing.identity_commands_topic
        return context_event(tenant, ids["customer_id"], _validate(ContextBody, raw), received), ing.context_topic

    def _key(self, tenant: str, body: LinkBody | UnlinkBody) -> str | None:
        """The identity key a command names, as a token when sealing (its event id derives from it)."""
        sealer = self.ingress.sealer
        return None if sealer is None else sealer.key_token(tenant, body.identity_key())

    def _sealed(self, route: str, event: dict[str, Any], topic: str) -> tuple[dict[str, Any], str]:
        """(the event with its personal fields sealed when sealing is on, its topic)."""
        sealer = self.ingress.sealer
        if sealer is None:
            return event, topic
        if route == "agent_reply":
            return sealer.message(limits.fit(event, "")), topic
        if route == "customer_context":
            return sealer.context(event), topic
        return event, topic

    def _authorize(self, request: web.Request) -> None:
        if not self.tokens:
            raise Refusal(403, "agent API disabled: no agent token is configured", "bad_agent_token")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        given = token.strip().encode()
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(t.encode(), given) for t in self.tokens):
            raise Refusal(401, "missing or wrong agent token", "bad_agent_token", {"WWW-Authenticate": "Bearer"})


def _validate(model: type[_Body], raw: bytes) -> Any:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refusal(400, f"malformed JSON: {e}", "invalid_body") from None
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise Refusal(400, f"{where}: {err['msg']}", "invalid_body") from None


def setup(app: web.Application, ingress: Ingress) -> None:
    """Add the agent routes to the ingress application."""
    api = AgentApi(ingress)
    app.on_startup.append(api.windows.start)
    app.on_cleanup.append(api.windows.stop)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/status", api.status)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/replies", api.reply)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/threads/{thread_id}/resolve", api.resolve)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/threads/{thread_id}/transfer", api.transfer)
    app.router.add_post("/customers/{tenant_id}/{customer_id}/context", api.context)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/identities/link", api.link)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/identities/unlink", api.unlink)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/customers/merge", api.merge)
