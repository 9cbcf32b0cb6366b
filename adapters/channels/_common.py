"""Helpers shared by the channel adapters: event building, body decoding, field coercion.

Everything here is pure: no clock (receipt time is ``Request.received_at_ms``), no I/O.

Conventions every adapter follows (see ``Ctx``):
- ``event_id = derive_id(tenant, adapter, event type, provider idempotency key)``: a redelivered
  webhook yields the same id, so consumers drop repeats by event id.
- ``partition_key = tenant|channel|customer id`` (the sender of a message, the recipient of a
  status), so one customer's events on one channel stay in order.
- ``producer = ingress/<adapter>``; ``correlation_id = event_id``; ``raw_event_id`` points to the
  RawRequest record of the request.
- Attachments are references (media id or URL, mime type, size), never bytes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson

from adapters.base import Account, Rejected, Reply, Request, Unmappable
from schemas import topics
from schemas.events import derive_id, envelope, make

KIB = 1024
MIB = 1024 * KIB

EMPTY_200 = Reply(200, b"")

F = TypeVar("F", bound=Callable[..., Any])


def mapping_errors(fn: F) -> F:
    """Turn a shape surprise inside a verified payload (missing key, wrong type) into Unmappable.

    Verified-but-unmappable requests go to the dead-letter topic with their raw bytes; they must
    never surface as a 5xx.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as e:
            raise Unmappable(f"unexpected payload shape: {type(e).__name__}: {e}") from None

    return wrapper  # type: ignore[return-value]  # it takes and returns what fn does


# --- decoding -----------------------------------------------------------------------------------

def json_object(body: bytes) -> Any:
    """Parse a JSON body; malformed JSON is a 400, a non-object is left to the caller to judge.

    orjson first (several times faster on webhook-sized bodies); what it refuses and the standard
    library accepts (NaN, integers beyond 64 bits, lone surrogates) is read by the latter, so the
    fast path changes no answer.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise Rejected(400, f"body is not UTF-8: {e.reason} at byte {e.start}") from None
    except RecursionError:
        raise Rejected(400, "malformed JSON: nested too deeply") from None
    except ValueError as e:
        raise Rejected(400, f"malformed JSON: {e}") from None


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unmappable(f"{what} is not an object")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Unmappable(f"{what} is not a list")
    return value


def text(value: Any) -> str | None:
    """An optional string field; numbers become strings (ids), anything else is a shape error."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise Unmappable(f"expected a string, got {type(value).__name__}")


def need(mapping: Mapping[str, Any], key: str) -> str:
    """A required string (or numeric id) field."""
    value = text(mapping.get(key)) if isinstance(mapping, Mapping) else None
    if value is None or value == "":
        raise Unmappable(f"missing field {key!r}")
    return value


def integer(value: Any) -> int | None:
    """An optional integer (sizes): None when absent, not a number or beyond an Avro long."""
    if value is None or isinstance(value, bool):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return n if -(2**63) <= n < 2**63 else None


# --- time ---------------------------------------------------------------------------------------

_MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z: anything later is not a timestamp


def _plausible(ms: int, fallback: int) -> int:
    return ms if 0 <= ms <= _MAX_MS else fallback


def ms_from_seconds(value: Any, fallback: int) -> int:
    """Unix seconds (int, float or numeric string) to epoch ms; ``fallback`` when absent/bad."""
    if value is None or isinstance(value, bool):
        return fallback
    try:
        return _plausible(int(float(value) * 1000), fallback)
    except (TypeError, ValueError, OverflowError):
        return fallback


def ms_from_ms(value: Any, fallback: int) -> int:
    """Epoch milliseconds (int or numeric string); ``fallback`` when absent/bad."""
    if value is None or isinstance(value, bool):
        return fallback
    try:
        return _plausible(int(value), fallback)
    except (TypeError, ValueError, OverflowError):
        return fallback


_FRACTION = re.compile(r"(\.\d{6})\d+")


def ms_from_rfc3339(value: Any, fallback: int) -> int:
    """RFC 3339 (``Z`` or offset, 0-9 fractional digits) to epoch ms."""
    if not isinstance(value, str) or not value:
        return fallback
    try:
        dt = datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError:
        return fallback
    if dt.tzinfo is None:  # RFC 3339 always has an offset; be lenient and read it as UTC
        return fallback
    return _plausible(int(dt.timestamp() * 1000), fallback)


# --- identities, phones, content -----------------------------------------------------------------

_PHONE_NOISE = re.compile(r"[\s().\-/]")
_PHONE_PREFIX = re.compile(r"^(?:whatsapp|tel|sms|rcs|viber):", re.IGNORECASE)


def e164(raw: Any) -> str | None:
    """Normalise a phone number to E.164 (``+`` and 8 to 15 digits), or None if it is not one.

    Accepts ``+33 6 12 34 56 78``, ``0033612345678``, ``whatsapp:+33612345678`` and bare digits
    with the country code (WhatsApp ``wa_id``: ``33612345678``). National numbers without a
    country code, short codes and alphanumeric sender ids are not E.164: None.
    """
    if not isinstance(raw, str):
        return None
    s = _PHONE_NOISE.sub("", _PHONE_PREFIX.sub("", raw.strip()))
    if s.startswith("00"):
        s = s[2:]
    elif s.startswith("+"):
        s = s[1:]
    elif s.startswith("0"):
        return None  # national format: the country is unknown
    if not s.isdigit() or not 8 <= len(s) <= 15 or s[0] == "0":
        return None
    return "+" + s


def identity(channel: str, id_: str, *, display_name: str | None = None,
             phone_e164: str | None = None, email: str | None = None) -> dict[str, Any]:
    return {"channel": channel, "id": id_, "display_name": display_name or None,
            "phone_e164": phone_e164, "email": email, "login_id": None}


def attachment(kind: str, *, media_id: Any = None, url: Any = None, mime_type: Any = None,
               size_bytes: Any = None, sha256: Any = None, caption: Any = None,
               filename: Any = None) -> dict[str, Any]:
    """A reference to media held by the provider (never its bytes)."""
    return {"kind": kind, "media_id": text(media_id), "url": text(url),
            "mime_type": text(mime_type), "size_bytes": integer(size_bytes),
            "sha256": text(sha256), "caption": text(caption), "filename": text(filename)}


def rich(kind: str, *, payload: Any = None, title: Any = None,
         data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Structured content: quick reply, postback, button, location, contact, reaction..."""
    return {"kind": kind, "payload": text(payload), "title": text(title),
            "data_json": json.dumps(data or {}, sort_keys=True, ensure_ascii=False,
                                    separators=(",", ":"), default=str)}


def location(lat: Any, lon: Any, **extra: Any) -> dict[str, Any]:
    data = {"latitude": lat, "longitude": lon, **{k: v for k, v in extra.items() if v is not None}}
    return rich("location", title=extra.get("name") or extra.get("title"), data=data)


# --- events ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ctx:
    """One request being mapped: builds envelopes with the conventions above."""

    adapter: str  # adapter name: producer suffix and event-id namespace (e.g. "twilio")
    req: Request
    account: Account

    def _envelope(self, event_type: str, key: str, channel: str, customer_id: str,
                  occurred_at: int | None) -> dict[str, Any]:
        tenant = self.account.tenant_id
        event_id = derive_id(tenant, self.adapter, event_type, key)
        return envelope(
            event_type, event_id=event_id,
            occurred_at=self.req.received_at_ms if occurred_at is None else occurred_at,
            tenant_id=tenant, partition_key=topics.MESSAGES.key(tenant, channel, customer_id),
            correlation_id=event_id, producer=f"ingress/{self.adapter}",
        )

    def received(self, *, key: str, sender: dict[str, Any], channel_message_id: str,
                 occurred_at: int | None = None, channel: str | None = None,
                 account_id: str | None = None, text: str | None = None,
                 subject: str | None = None, attachments: Iterable[dict[str, Any]] = (),
                 rich: dict[str, Any] | None = None, reply_to: str | None = None,
                 references: Iterable[str] = (),
                 ) -> dict[str, Any]:
        """A MessageReceived; ``key`` is the provider's idempotency key."""
        channel = channel or sender["channel"]
        env = self._envelope("MessageReceived", key, channel, sender["id"], occurred_at)
        return make(
            "MessageReceived", env, channel=channel,
            channel_account_id=account_id or self.account.account_id, sender=sender,
            channel_message_id=channel_message_id, text=text, subject=subject,
            attachments=list(attachments), rich=rich, reply_to_channel_message_id=reply_to,
            raw_event_id=self.req.raw_event_id, references=list(references),
        )

    def status(self, *, key: str, recipient: dict[str, Any], channel_message_id: str,
               status: str, occurred_at: int | None = None, channel: str | None = None,
               account_id: str | None = None, error_code: Any = None,
               error_message: Any = None) -> dict[str, Any]:
        """A DeliveryStatusChanged; ``key`` is message id + status (statuses repeat per message)."""
        channel = channel or recipient["channel"]
        env = self._envelope("DeliveryStatusChanged", key, channel, recipient["id"], occurred_at)
        return make(
            "DeliveryStatusChanged", env, channel=channel,
            channel_account_id=account_id or self.account.account_id, recipient=recipient,
            channel_message_id=channel_message_id, status=status,
            error_code=text(error_code), error_message=text(error_message),
            raw_event_id=self.req.raw_event_id,
        )


class BaseAdapter:
    """Defaults for the Adapter protocol: no handshake, an empty 200 once stored."""

    channel: str = ""
    max_body_bytes: int = 64 * KIB

    def handshake(self, req: Request, account: Account) -> Reply | None:
        return None

    def ack(self, req: Request, events: Any) -> Reply:
        return EMPTY_200

    def ctx(self, req: Request, account: Account) -> Ctx:
        return Ctx(self.channel, req, account)


def header(req: Request, name: str) -> str | None:
    """A request header by (case-insensitive) name."""
    value = req.headers.get(name.lower())
    if value is None:  # be forgiving if a caller did not lower-case the names
        value = next((v for k, v in req.headers.items() if k.lower() == name.lower()), None)
    return value
