"""Factories and checks shared by the channel adapter tests (tests/unit/test_channel_*.py)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from adapters.base import Account, Request
from schemas.codec import Codec
from schemas.events import derive_id

TENANT = "acme"
RECEIVED_AT = 1_731_400_000_000  # 2024-11-12T08:26:40Z: receipt time of every test request
RAW_ID = "raw-0001"
NEW, OLD = "s3cr3t-current", "s3cr3t-previous"

_codec = Codec()


def account(channel: str, account_id: str = "acct-1", *, secrets: tuple[str, ...] = (NEW, OLD),
            verify_token: str | None = None, **options: Any) -> Account:
    return Account(tenant_id=TENANT, channel=channel, account_id=account_id, secrets=secrets,
                   verify_token=verify_token, options=options)


def request(body: bytes | str | dict | list = b"", *, method: str = "POST",
            url: str = "https://hooks.example.com/webhooks/x/acct-1",
            headers: dict[str, str] | None = None, received_at_ms: int = RECEIVED_AT,
            raw_event_id: str = RAW_ID) -> Request:
    if isinstance(body, dict | list):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    parts = urlsplit(url)
    return Request(method=method, url=url, path=parts.path,
                   query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                   headers={k.lower(): v for k, v in (headers or {}).items()}, body=body,
                   received_at_ms=received_at_ms, raw_event_id=raw_event_id)


def roundtrip(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Encode every event strictly and decode it back: it must come back unchanged."""
    for ev in events:
        assert _codec.decode(_codec.encode(ev)) == ev
    return events


def check_envelope(ev: dict[str, Any], *, event_type: str, adapter: str, key: str,
                   channel: str, customer: str, occurred_at: int) -> None:
    """The envelope conventions every channel adapter follows."""
    env = ev["envelope"]
    event_id = derive_id(TENANT, adapter, event_type, key)
    assert env["event_type"] == event_type
    assert env["event_id"] == event_id
    assert env["correlation_id"] == event_id
    assert env["causation_id"] is None
    assert env["tenant_id"] == TENANT
    assert env["partition_key"] == f"{TENANT}|{channel}|{customer}"
    assert env["producer"] == f"ingress/{adapter}"
    assert env["occurred_at"] == occurred_at
    assert ev["channel"] == channel
    assert ev["raw_event_id"] == RAW_ID
