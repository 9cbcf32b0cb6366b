"""What providers share: a call to make, a classified answer, error helpers (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Call:
    """One request to a provider. ``kind``: http, smtp (``body`` is the message dict), push
    (web chat). ``url`` is relative to the provider's base URL; ``token`` names an access token
    the runner fills in (``{token}`` in the url, or a bearer header)."""

    method: str = "POST"
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    form: tuple[tuple[str, str], ...] | None = None
    kind: str = "http"
    body: Any = None
    token: str | None = None  # "wechat" / "rbm": an access token to fetch first
    key: str | None = None  # the idempotency key this call carries
    parts: int = 1  # parts of the plan this call sends


@dataclass(frozen=True)
class Result:
    """A provider's answer, classified: sent (``ids``), or failed (transient or permanent)."""

    ok: bool
    ids: tuple[str, ...] = ()
    permanent: bool = False
    code: str = ""
    reason: str = ""
    retry_after_s: float | None = None
    duplicate: bool = False
    http_status: int | None = None
    token_expired: bool = False


def sent(ids: list[str] | tuple[str, ...], status: int | None = 200, duplicate: bool = False) -> Result:
    return Result(True, tuple(str(i) for i in ids), http_status=status, duplicate=duplicate)


def transient(code: str, reason: str, status: int | None = None, retry_after: float | None = None,
              token_expired: bool = False) -> Result:
    return Result(False, code=code, reason=reason, http_status=status, retry_after_s=retry_after,
                  token_expired=token_expired)


def permanent(code: str, reason: str, status: int | None = None) -> Result:
    return Result(False, permanent=True, code=code, reason=reason, http_status=status)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (HTTP dates are not used by these providers)."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def http_default(status: int, headers: Mapping[str, str], what: str) -> Result:
    """The answer of a status with no readable error body: 429 and 5xx are transient."""
    if status == 429:
        return transient("429", f"{what} rate limit (HTTP 429)", status, retry_after(headers))
    if status >= 500:
        return transient(f"http_{status}", f"{what} answered HTTP {status}", status, retry_after(headers))
    if 200 <= status < 300:
        return permanent("provider_garbage", f"{what} answered HTTP {status} with a body that is not its "
                                             "documented answer: the message may or may not have been sent, "
                                             "so it is not retried", status)
    return permanent(f"http_{status}", f"{what} refused the request (HTTP {status})", status)


def part_text(part: dict[str, Any]) -> str:
    return part.get("text") or ""
