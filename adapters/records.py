"""The records the ingress writes besides the adapters' events (pure): the RawRequest of a
verified request, a DeadLetter, and the checks an adapter's events must pass.

Credentials never reach a record: the raw record replaces every header and query parameter that
is a secret, a signature, a nonce or a token by ``<redacted>`` (for every channel: the lists
below, plus an adapter's own ``secret_headers`` / ``secret_params``, plus its ``redact(body)`` for
credentials inside the body, e.g. a web chat login token). A stored request therefore cannot be
replayed against the ingress (signatures cannot be re-checked either: ``verified`` records that
they were, at receipt).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from adapters.base import Account, Request
from schemas import topics
from schemas.events import dead_letter, derive_id, envelope, make

REDACTED = "<redacted>"
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key",
    "x-telegram-bot-api-secret-token",          # Telegram's shared secret
    "x-hub-signature", "x-hub-signature-256",   # Meta (WhatsApp, Messenger, Instagram)
    "x-twilio-signature", "x-line-signature", "x-viber-content-signature", "x-goog-signature",
    "x-slack-signature", "x-mailgun-signature",
})
SECRET_PARAMS = frozenset({
    "token", "access_token", "secret", "api_key", "key",  # e.g. e-mail's ?token=
    "signature", "msg_signature", "nonce", "echostr",     # WeChat's signed push (timestamp is kept)
    "hub.verify_token", "hub.challenge",
})
# erasures are the privacy tools', never an adapter's
MESSAGE_TYPES = frozenset(topics.MESSAGES.value_types) - {"SubjectErased"}


def raw_request_event(adapter: str, account: Account, req: Request, *, remote: str | None,
                      secret_headers: Iterable[str] = SECRET_HEADERS,
                      secret_params: Iterable[str] = SECRET_PARAMS, body: bytes | None = None) -> dict[str, Any]:
    """The RawRequest record of a verified request (its id is ``req.raw_event_id``); ``body``
    replaces the received body when the adapter redacted credentials from it."""
    heads, params = frozenset(secret_headers), frozenset(secret_params)
    key = topics.RAW_INGRESS.key(account.tenant_id, adapter, account.account_id)
    env = envelope("RawRequest", event_id=req.raw_event_id, occurred_at=req.received_at_ms,
                   tenant_id=account.tenant_id, partition_key=key, producer=f"ingress/{adapter}")
    headers = {k: (REDACTED if k in heads else v) for k, v in req.headers.items()}
    query = redact_query(req.url.partition("?")[2], params)
    return make("RawRequest", env, channel=adapter, channel_account_id=account.account_id, method=req.method,
                path=req.path, query=query, headers=headers, body=req.body if body is None else body,
                remote_addr=remote, verified=True)


def redact_query(query: str, names: frozenset[str] | set[str]) -> str:
    """The query string as received, unless it holds a credential (then re-encoded, redacted)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.lower() in names for k, _ in pairs):
        return query
    return urlencode([(k, REDACTED if k.lower() in names else v) for k, v in pairs])


def dead_letter_event(adapter: str, account: Account, req: Request, reason: str, error: str,
                      raw_topic: str, payload: bytes | None = None) -> dict[str, Any]:
    """A DeadLetter (``schemas.events.dead_letter``) carrying the raw bytes (credentials redacted),
    the error and the context to find the raw record; named after the raw request."""
    headers = {"reason": reason, "adapter": adapter, "tenant_id": account.tenant_id,
               "account_id": account.account_id, "raw_event_id": req.raw_event_id,
               "content_type": req.headers.get("content-type", "")}
    return dead_letter(f"ingress/{adapter}", reason, error, req.body if payload is None else payload,
                       source_topic=raw_topic, occurred_at=req.received_at_ms, tenant_id=account.tenant_id,
                       headers=headers, event_id=derive_id(req.raw_event_id, "DeadLetter"))


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
        expected = topics.MESSAGES.key(account.tenant_id, event["channel"], who["id"])
        if env["partition_key"] != expected:
            return f"event {index}: partition key {env['partition_key']!r}, expected {expected!r}"
        if not isinstance(env["occurred_at"], int) or env["occurred_at"] < 0:
            return f"event {index}: occurred_at {env['occurred_at']!r} is not epoch milliseconds"
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        return f"event {index}: not shaped like an event ({e!r})"
    return None
