"""The agent API's request bodies and the events they map to: validation and pure builders.

The HTTP side (routes, token, topics, answers) is ``adapters/agent_api.py``; its docstring
describes each route's body.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.rich_body import RichMessageBody
from schemas import topics
from schemas.events import derive_id, envelope, make

# ``Literal[CHANNELS]`` below: pydantic takes the tuple's values; mypy wants them spelled out
# (its valid-type error is ignored there), and one list of channels is worth more.
CHANNELS = ("whatsapp", "messenger", "instagram", "sms", "telegram", "line", "viber", "wechat", "rbm",
            "email", "webchat")
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
    content: RichMessageBody | None = None  # the canonical rich message (adapters/rich_body.py)

    @model_validator(mode="after")
    def _content(self) -> ReplyBody:
        if self.kind == "template" and not self.template_name and not (self.content and self.content.template):
            raise ValueError("a template message needs template_name")
        if not (self.text or self.attachments or self.rich or self.template_name or self.content):
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
                   occurred_at=body.occurred_at or received_ms, tenant_id=tenant,
                   partition_key=topics.AGENT_STATUS.key(tenant), producer="ingress/agent-api")
    return make("AgentStatusChanged", env, agent_id=agent, presence=body.presence, capacity=body.capacity,
                skills=list(body.skills), languages=list(body.languages), channels=list(body.channels),
                queues=list(body.queues), display_name=body.display_name)


def reply_event(tenant: str, agent: str, body: ReplyBody, received_ms: int) -> dict[str, Any]:
    """MessageSent from a validated body (pure), keyed like the recipient's inbound messages."""
    recipient = {"channel": body.channel, **body.recipient.model_dump()}
    env = envelope("MessageSent", event_id=derive_id(tenant, "MessageSent", body.message_id),
                   occurred_at=body.occurred_at or received_ms, tenant_id=tenant,
                   partition_key=topics.MESSAGES.key(tenant, body.channel, body.recipient.id),
                   producer="ingress/agent-api")
    rich = None
    if body.rich is not None:
        rich = {"kind": body.rich.kind, "payload": body.rich.payload, "title": body.rich.title,
                "data_json": json.dumps(body.rich.data, sort_keys=True, ensure_ascii=False)}
    return make("MessageSent", env, channel=body.channel, channel_account_id=body.channel_account_id,
                recipient=recipient, message_id=body.message_id, channel_message_id=body.channel_message_id,
                author_type=body.author_type, author_id=agent,
                kind="template" if body.content and body.content.template else body.kind,
                template_name=body.template_name or (body.content.template.name
                                                     if body.content and body.content.template else None),
                text=body.text, attachments=[a.model_dump() for a in body.attachments], rich=rich,
                customer_id=body.customer_id, thread_id=body.thread_id,
                in_reply_to_event_id=body.in_reply_to_event_id,
                content=body.content.model_dump() if body.content else None)


def command_time_and_id(tenant: str, kind: str, subject: tuple[str, ...],
                        body: _Command, received_ms: int) -> tuple[int, str]:
    """(event time, event id) of a command: the same request (occurred_at, request_id) gives the same id."""
    at = body.occurred_at if body.occurred_at is not None or body.request_id else received_ms
    # with occurred_at and no request_id: the id parley.app.synthetic.events.thread_command derives (n=0)
    return body.occurred_at or received_ms, derive_id(tenant, kind, *subject, at, body.request_id or 0)


def _command(tenant: str, kind: str, subject: tuple[str, ...], body: _Command, received_ms: int, key: str,
             **fields: Any) -> dict[str, Any]:
    """A command event (pure): time and id from the request, ``key`` its partition key."""
    at, event_id = command_time_and_id(tenant, kind, subject, body, received_ms)
    env = envelope(kind, event_id=event_id, occurred_at=at, tenant_id=tenant, partition_key=key,
                   producer="ingress/agent-api")
    return make(kind, env, **fields)


def resolve_event(tenant: str, agent: str, thread: str, body: ResolveBody, received_ms: int) -> dict[str, Any]:
    """ConversationResolved from a validated body (pure), keyed by the thread's customer."""
    key = topics.CONVERSATION_MESSAGES.key(tenant, body.customer_id)
    return _command(tenant, "ConversationResolved", (thread,), body, received_ms, key,
                    thread_id=thread, customer_id=body.customer_id, channel=body.channel,
                    resolved_by=body.resolved_by, agent_id=agent)


def transfer_event(tenant: str, agent: str, thread: str, body: TransferBody, received_ms: int) -> dict[str, Any]:
    """ConversationTransferred from a validated body (pure), keyed by the thread's customer."""
    key = topics.CONVERSATION_MESSAGES.key(tenant, body.customer_id)
    return _command(tenant, "ConversationTransferred", (thread,), body, received_ms, key,
                    thread_id=thread, customer_id=body.customer_id, channel=body.channel, from_agent_id=agent,
                    from_queue=body.from_queue, to_agent_id=body.to_agent, to_queue=body.to_queue,
                    reason=body.reason)


def context_event(tenant: str, customer: str, body: ContextBody, received_ms: int) -> dict[str, Any]:
    """CustomerContextUpdated from a validated body (pure); the source is part of the id."""
    return _command(tenant, "CustomerContextUpdated", (customer, body.source), body, received_ms,
                    topics.CUSTOMER_CONTEXT.key(tenant, customer), customer_id=customer, source=body.source,
                    name=body.name, tier=body.tier, lifecycle_stage=body.lifecycle_stage,
                    attributes=dict(body.attributes))


def link_event(tenant: str, agent: str, body: LinkBody, received_ms: int, key: str | None = None) -> dict[str, Any]:
    """IdentityLinked (a command: the processor emits the event) from a validated body (pure);
    ``key``: the identity key as a token, when sealing (docs/PRIVACY.md)."""
    key = key or body.identity_key()
    return _command(tenant, "IdentityLinked", (key, body.customer_id), body, received_ms,
                    topics.IDENTITY_COMMANDS.key(tenant), customer_id=body.customer_id, identity_key=key,
                    signal="agent_manual", linked_by=agent)


def unlink_event(tenant: str, agent: str, body: UnlinkBody, received_ms: int, key: str | None = None) -> dict[str, Any]:
    """IdentityUnlinked (a command) from a validated body (pure); "" lets the processor name the new
    customer; ``key`` as for ``link_event``."""
    key = key or body.identity_key()
    return _command(tenant, "IdentityUnlinked", (key, body.customer_id), body, received_ms,
                    topics.IDENTITY_COMMANDS.key(tenant),
                    customer_id=body.customer_id, identity_key=key, new_customer_id=body.new_customer_id or "",
                    undoes_event_id=body.undoes_event_id, reason=body.reason, unlinked_by=agent)


def merge_event(tenant: str, agent: str, body: MergeBody, received_ms: int) -> dict[str, Any]:
    """IdentitiesMerged (a command; the processor lists the keys that move) from a validated body (pure)."""
    return _command(tenant, "IdentitiesMerged", (body.customer_id, body.merged_customer_id), body,
                    received_ms, topics.IDENTITY_COMMANDS.key(tenant), customer_id=body.customer_id,
                    merged_customer_id=body.merged_customer_id,
                    signal="agent_manual", merged_by=agent)
