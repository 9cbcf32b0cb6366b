"""Web chat: the canonical message pushed to the browser widget (pure part).

The widget renders the canonical parts itself, so nothing degrades. One push per outbound
message carries every part; the push hub (``egress/webchat.py``) delivers it to the customer's
open WebSocket or SSE connections, or keeps it until the widget reconnects. Our event id is the
message's id on this channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egress.model import Plan, SendAccount
from egress.providers.base import Call, Result


def requests(account: SendAccount, plan: Plan, event: dict[str, Any]) -> list[Call]:
    env = event["envelope"]
    return [Call(kind="push", key=env["event_id"], parts=len(plan.parts), body={
        "id": env["event_id"], "message_id": event.get("message_id"), "account": account.account_id,
        "user": plan.recipient, "occurred_at": env["occurred_at"], "author_type": event.get("author_type"),
        "thread_id": event.get("thread_id"), "parts": list(plan.parts)})]


def classify(status: int, headers: Mapping[str, str], body: bytes, call: Call | None = None) -> Result:
    raise NotImplementedError("web chat is pushed by the hub, not over HTTP")
