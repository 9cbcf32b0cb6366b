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
Answers 200 ``{"event_id", "topic", "partition", "offset"}`` once Kafka acknowledged; 503 with
``Retry-After`` otherwise; 400 with the first validation error for a bad body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adapters.app import Ingress, Refusal, log, read_body
from adapters.producer import Record
from schemas.events import derive_id, envelope, make

CHANNELS = ("whatsapp", "messenger", "instagram", "sms", "telegram", "line", "viber", "wechat", "rbm",
            "email", "webchat")
MAX_BODY = 64 * 1024
EPOCH_2000_MS, EPOCH_2100_MS = 946_684_800_000, 4_102_444_800_000
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:\-]{0,127}")
_Name = Annotated[str, Field(min_length=1, max_length=64)]
_Time = Annotated[int, Field(ge=EPOCH_2000_MS, lt=EPOCH_2100_MS)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusBody(_Body):
    presence: Literal["online", "away", "offline"]
    capacity: int = Field(1, ge=0, le=1000)
    skills: list[_Name] = Field(default_factory=list, max_length=100)
    languages: list[_Name] = Field(default_factory=list, max_length=50)
    channels: list[Literal[CHANNELS]] = Field(default_factory=list)  # type: ignore[valid-type]
    queues: list[_Name] = Field(default_factory=list, max_length=100)
    display_name: str | None = Field(None, max_length=256)
    occurred_at: _Time | None = None
    change_id: str | None = Field(None, min_length=1, max_length=128)


class RecipientBody(_Body):
    id: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(None, max_length=256)
    phone_e164: str | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$")
    email: str | None = Field(None, max_length=320)
    login_id: str | None = Field(None, max_length=256)


class AttachmentBody(_Body):
    kind: Literal["image", "audio", "video", "document", "file", "sticker", "location"]
    media_id: str | None = Field(None, max_length=256)
    url: str | None = Field(None, max_length=2048)
    mime_type: str | None = Field(None, max_length=128)
    size_bytes: int | None = Field(None, ge=0)
    sha256: str | None = Field(None, max_length=128)
    caption: str | None = Field(None, max_length=4096)
    filename: str | None = Field(None, max_length=512)

    @model_validator(mode="after")
    def _reference(self) -> AttachmentBody:
        if not (self.url or self.media_id):
            raise ValueError("an attachment needs a url or a media_id (never the bytes)")
        return self


class RichBody(_Body):
    kind: _Name
    payload: str | None = Field(None, max_length=4096)
    title: str | None = Field(None, max_length=1024)
    data: dict[str, Any] = Field(default_factory=dict)


class ReplyBody(_Body):
    message_id: str = Field(min_length=1, max_length=128)
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    channel_account_id: str = Field(min_length=1, max_length=128)
    recipient: RecipientBody
    text: str | None = Field(None, max_length=10_000)
    kind: Literal["free_form", "template"] = "free_form"
    template_name: str | None = Field(None, max_length=512)
    attachments: list[AttachmentBody] = Field(default_factory=list, max_length=10)
    rich: RichBody | None = None
    author_type: Literal["agent", "bot", "automation", "system"] = "agent"
    channel_message_id: str | None = Field(None, max_length=256)
    customer_id: str | None = Field(None, max_length=128)
    thread_id: str | None = Field(None, max_length=128)
    in_reply_to_event_id: str | None = Field(None, max_length=128)
    occurred_at: _Time | None = None

    @model_validator(mode="after")
    def _content(self) -> ReplyBody:
        if self.kind == "template" and not self.template_name:
            raise ValueError("a template message needs template_name")
        if not (self.text or self.attachments or self.rich or self.template_name):
            raise ValueError("a reply needs text, attachments, rich content or a template")
        return self


_Id = Annotated[str, Field(pattern=f"^{AGENT_ID.pattern}$")]  # agent, thread and customer ids (never "|")
_Request = Annotated[str, Field(min_length=1, max_length=128)]


class ResolveBody(_Body):
    customer_id: _Id
    channel: Literal[CHANNELS] | None = None  # type: ignore[valid-type]
    resolved_by: Literal["agent", "bot", "system"] = "agent"
    occurred_at: _Time | None = None
    request_id: _Request | None = None


class TransferBody(_Body):
    customer_id: _Id
    to_queue: _Name | None = None
    to_agent: _Id | None = None
    from_queue: _Name | None = None
    reason: str | None = Field(None, max_length=256)
    channel: Literal[CHANNELS] | None = None  # type: ignore[valid-type]
    occurred_at: _Time | None = None
    request_id: _Request | None = None

    @model_validator(mode="after")
    def _target(self) -> TransferBody:
        if not (self.to_queue or self.to_agent):
            raise ValueError("a transfer needs a target: to_queue or to_agent")
        return self


class ContextBody(_Body):
    source: _Name
    name: str | None = Field(None, max_length=256)
    tier: _Name | None = None
    lifecycle_stage: _Name | None = None
    attributes: dict[Annotated[str, Field(min_length=1, max_length=128)],
                     Annotated[str, Field(max_length=4096)]] = Field(default_factory=dict, max_length=100)
    occurred_at: _Time | None = None
    request_id: _Request | None = None


class _IdentityBody(_Body):
    """One identity, named as ChannelIdentity names it: channel and id, or a phone, e-mail or login."""

    channel: Literal[CHANNELS] | None = None  # type: ignore[valid-type]
    id: str | None = Field(None, min_length=1, max_length=256)
    phone_e164: str | None = Field(None, pattern=r"^\+[1-9][0-9]{7,14}$")  # the identity processor's E.164
    email: str | None = Field(None, min_length=3, max_length=320)
    login_id: str | None = Field(None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_identity(self) -> _IdentityBody:
        named = [bool(self.channel and self.id), bool(self.phone_e164), bool(self.email), bool(self.login_id)]
        if (self.channel is None) != (self.id is None) or sum(named) != 1:
            raise ValueError("name one identity: channel and id, or one of phone_e164, email, login_id")
        return self

    def identity_key(self) -> str:
        """The kind-prefixed key the identity processor files this identity under."""
        if self.phone_e164:
            return f"phone:{self.phone_e164}"
        if self.email:
            return f"email:{self.email.strip().lower()}"
        if self.login_id:
            return f"login:{self.login_id.strip()}"
        return f"channel:{self.channel}:{self.id}"


class LinkBody(_IdentityBody):
    customer_id: _Id
    occurred_at: _Time | None = None
    request_id: _Request | None = None


class UnlinkBody(_IdentityBody):
    customer_id: _Id
    new_customer_id: _Id | None = None
    undoes_event_id: str | None = Field(None, min_length=1, max_length=128)
    reason: str = Field("", max_length=256)
    occurred_at: _Time | None = None
    request_id: _Request | None = None

    @model_validator(mode="after")
    def _another_customer(self) -> UnlinkBody:
        if self.new_customer_id == self.customer_id:
            raise ValueError("new_customer_id must differ from customer_id")
        return self


class MergeBody(_Body):
    customer_id: _Id  # the survivor
    merged_customer_id: _Id
    occurred_at: _Time | None = None
    request_id: _Request | None = None

    @model_validator(mode="after")
    def _two_customers(self) -> MergeBody:
        if self.customer_id == self.merged_customer_id:
            raise ValueError("a customer cannot be merged into itself")
        return self


_Command = ResolveBody | TransferBody | ContextBody | LinkBody | UnlinkBody | MergeBody


def status_event(tenant: str, agent: str, body: StatusBody, raw: bytes, received_ms: int) -> dict[str, Any]:
    """AgentStatusChanged from a validated body (pure)."""
    change = body.change_id or hashlib.sha256(raw).hexdigest()
    env = envelope("AgentStatusChanged", event_id=derive_id(tenant, "AgentStatusChanged", agent, change),
                   occurred_at=body.occurred_at or received_ms, tenant_id=tenant, partition_key=tenant,
                   producer="ingress/agent-api")
    return make("AgentStatusChanged", env, agent_id=agent, presence=body.presence, capacity=body.capacity,
                skills=list(body.skills), languages=list(body.languages), channels=list(body.channels),
                queues=list(body.queues), display_name=body.display_name)


def reply_event(tenant: str, agent: str, body: ReplyBody, received_ms: int) -> dict[str, Any]:
    """MessageSent from a validated body (pure), keyed like the recipient's inbound messages."""
    recipient = {"channel": body.channel, **body.recipient.model_dump()}
    env = envelope("MessageSent", event_id=derive_id(tenant, "MessageSent", body.message_id),
                   occurred_at=body.occurred_at or received_ms, tenant_id=tenant,
                   partition_key=f"{tenant}|{body.channel}|{body.recipient.id}", producer="ingress/agent-api")
    rich = None
    if body.rich is not None:
        rich = {"kind": body.rich.kind, "payload": body.rich.payload, "title": body.rich.title,
                "data_json": json.dumps(body.rich.data, sort_keys=True, ensure_ascii=False)}
    return make("MessageSent", env, channel=body.channel, channel_account_id=body.channel_account_id,
                recipient=recipient, message_id=body.message_id, channel_message_id=body.channel_message_id,
                author_type=body.author_type, author_id=agent, kind=body.kind, template_name=body.template_name,
                text=body.text, attachments=[a.model_dump() for a in body.attachments], rich=rich,
                customer_id=body.customer_id, thread_id=body.thread_id,
                in_reply_to_event_id=body.in_reply_to_event_id)


def command_time_and_id(tenant: str, kind: str, subject: tuple[str, ...],
                        body: _Command, received_ms: int) -> tuple[int, str]:
    """(event time, event id) of a command: the same request (occurred_at, request_id) gives the same id."""
    at = body.occurred_at if body.occurred_at is not None or body.request_id else received_ms
    # with occurred_at and no request_id: the id streams.testing.thread_command derives (n=0)
    return body.occurred_at or received_ms, derive_id(tenant, kind, *subject, at, body.request_id or 0)


def resolve_event(tenant: str, agent: str, thread: str, body: ResolveBody, received_ms: int) -> dict[str, Any]:
    """ConversationResolved from a validated body (pure), keyed by the thread's customer."""
    at, event_id = command_time_and_id(tenant, "ConversationResolved", (thread,), body, received_ms)
    env = envelope("ConversationResolved", event_id=event_id, occurred_at=at, tenant_id=tenant,
                   partition_key=f"{tenant}|{body.customer_id}", producer="ingress/agent-api")
    return make("ConversationResolved", env, thread_id=thread, customer_id=body.customer_id, channel=body.channel,
                resolved_by=body.resolved_by, agent_id=agent)


def transfer_event(tenant: str, agent: str, thread: str, body: TransferBody, received_ms: int) -> dict[str, Any]:
    """ConversationTransferred from a validated body (pure), keyed by the thread's customer."""
    at, event_id = command_time_and_id(tenant, "ConversationTransferred", (thread,), body, received_ms)
    env = envelope("ConversationTransferred", event_id=event_id, occurred_at=at, tenant_id=tenant,
                   partition_key=f"{tenant}|{body.customer_id}", producer="ingress/agent-api")
    return make("ConversationTransferred", env, thread_id=thread, customer_id=body.customer_id, channel=body.channel,
                from_agent_id=agent, from_queue=body.from_queue, to_agent_id=body.to_agent, to_queue=body.to_queue,
                reason=body.reason)


def context_event(tenant: str, customer: str, body: ContextBody, received_ms: int) -> dict[str, Any]:
    """CustomerContextUpdated from a validated body (pure); the source is part of the id."""
    at, event_id = command_time_and_id(tenant, "CustomerContextUpdated", (customer, body.source), body, received_ms)
    env = envelope("CustomerContextUpdated", event_id=event_id, occurred_at=at, tenant_id=tenant,
                   partition_key=f"{tenant}|{customer}", producer="ingress/agent-api")
    return make("CustomerContextUpdated", env, customer_id=customer, source=body.source, name=body.name,
                tier=body.tier, lifecycle_stage=body.lifecycle_stage, attributes=dict(body.attributes))


def _identity_command(tenant: str, kind: str, subject: tuple[str, ...], body: _Command, received_ms: int,
                      **fields: Any) -> dict[str, Any]:
    """An identity command (pure), keyed by tenant: the identity processor sees a tenant's graph in order."""
    at, event_id = command_time_and_id(tenant, kind, subject, body, received_ms)
    env = envelope(kind, event_id=event_id, occurred_at=at, tenant_id=tenant, partition_key=tenant,
                   producer="ingress/agent-api")
    return make(kind, env, **fields)


def link_event(tenant: str, agent: str, body: LinkBody, received_ms: int) -> dict[str, Any]:
    """IdentityLinked (a command: the processor emits the event) from a validated body (pure)."""
    key = body.identity_key()
    return _identity_command(tenant, "IdentityLinked", (key, body.customer_id), body, received_ms,
                             customer_id=body.customer_id, identity_key=key, signal="agent_manual",
                             linked_by=agent)


def unlink_event(tenant: str, agent: str, body: UnlinkBody, received_ms: int) -> dict[str, Any]:
    """IdentityUnlinked (a command) from a validated body (pure); "" lets the processor name the new customer."""
    key = body.identity_key()
    return _identity_command(tenant, "IdentityUnlinked", (key, body.customer_id), body, received_ms,
                             customer_id=body.customer_id, identity_key=key,
                             new_customer_id=body.new_customer_id or "", undoes_event_id=body.undoes_event_id,
                             reason=body.reason, unlinked_by=agent)


def merge_event(tenant: str, agent: str, body: MergeBody, received_ms: int) -> dict[str, Any]:
    """IdentitiesMerged (a command; the processor lists the keys that move) from a validated body (pure)."""
    return _identity_command(tenant, "IdentitiesMerged", (body.customer_id, body.merged_customer_id), body,
                             received_ms, customer_id=body.customer_id, merged_customer_id=body.merged_customer_id,
                             signal="agent_manual", merged_by=agent)


class AgentApi:
    def __init__(self, ingress: Ingress) -> None:
        self.ingress = ingress
        self.tokens = tuple(t.get_secret_value() for t in ingress.settings.agent_tokens if t.get_secret_value())

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
        except Exception:
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
        event, topic = self._event(route, ids, raw, self.ingress.clock_ms())
        env = event["envelope"]
        env["recorded_at"] = self.ingress.clock_ms()
        record = Record(topic, env["partition_key"].encode(), self.ingress.codec.encode(event, topic),
                        (("event_type", env["event_type"].encode()),), env["occurred_at"])
        stored = (await self.ingress.produce([record]))[0]
        self.ingress.metrics.events.labels("agent_api", env["event_type"]).inc()
        log.info("agent_api.stored", route=route, tenant_id=tenant, event_type=env["event_type"],
                 event_id=env["event_id"], key=env["partition_key"], topic=stored.topic,
                 partition=stored.partition, offset=stored.offset)
        return web.json_response({"event_id": env["event_id"], "topic": stored.topic,
                                  "partition": stored.partition, "offset": stored.offset})

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
            return link_event(tenant, ids["agent_id"], _validate(LinkBody, raw), received), ing.identity_commands_topic
        if route == "identity_unlink":
            event = unlink_event(tenant, ids["agent_id"], _validate(UnlinkBody, raw), received)
            return event, ing.identity_commands_topic
        if route == "customer_merge":
            return merge_event(tenant, ids["agent_id"], _validate(MergeBody, raw), received), ing.identity_commands_topic
        return context_event(tenant, ids["customer_id"], _validate(ContextBody, raw), received), ing.context_topic

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
    app.router.add_post("/agents/{tenant_id}/{agent_id}/status", api.status)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/replies", api.reply)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/threads/{thread_id}/resolve", api.resolve)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/threads/{thread_id}/transfer", api.transfer)
    app.router.add_post("/customers/{tenant_id}/{customer_id}/context", api.context)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/identities/link", api.link)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/identities/unlink", api.unlink)
    app.router.add_post("/agents/{tenant_id}/{agent_id}/customers/merge", api.merge)
