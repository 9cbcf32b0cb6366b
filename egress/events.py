"""The delivery events the egress writes (pure builders: times and ids are passed in)."""

from __future__ import annotations

from typing import Any

from egress.model import Plan
from schemas.events import derive_id, envelope, make

PRODUCER = "egress"


def _ids(msg: dict[str, Any], attempt: int) -> dict[str, Any]:
    return {"message_event_id": msg["envelope"]["event_id"], "message_id": msg.get("message_id") or "",
            "channel": msg["channel"], "channel_account_id": msg["channel_account_id"] or "",
            "recipient_id": str(msg["recipient"].get("id") or ""), "customer_id": msg.get("customer_id"),
            "thread_id": msg.get("thread_id"), "attempt": attempt}


def _env(msg: dict[str, Any], kind: str, suffix: Any, key: str, now_ms: int) -> dict[str, Any]:
    m = msg["envelope"]
    return envelope(kind, event_id=derive_id(m["event_id"], kind, suffix), occurred_at=now_ms,
                    tenant_id=m["tenant_id"], partition_key=key, correlation_id=m["correlation_id"],
                    causation_id=m["event_id"], producer=PRODUCER, recorded_at=now_ms)


def rendering(decision: dict[str, Any] | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {"asked": list(decision["asked"]), "sent": list(decision["sent"]), "reasons": list(decision["reasons"]),
            "parts": int(decision["parts"]), "mode": decision.get("mode")}


def attempted(msg: dict[str, Any], plan: Plan, attempt: int, in_doubt: bool, key: str, now_ms: int) -> dict[str, Any]:
    keys = [k for k in plan.keys if k]
    return make("OutboundAttempted", _env(msg, "OutboundAttempted", attempt, key, now_ms), **_ids(msg, attempt),
                idempotency_key=keys[0] if keys else None, in_doubt=in_doubt, rendering=rendering(plan.decision))


def sent(msg: dict[str, Any], plan: Plan, attempt: int, ids: list[str], duplicate: bool, key: str,
         now_ms: int) -> dict[str, Any]:
    recorded = msg["envelope"].get("recorded_at")
    return make("OutboundSent", _env(msg, "OutboundSent", "sent", key, now_ms), **_ids(msg, attempt),
                channel_message_id=ids[0] if ids else "", channel_message_ids=list(ids), duplicate=duplicate,
                rendering=rendering(plan.decision), latency_ms=(now_ms - recorded) if recorded else None)


def failed(msg: dict[str, Any], attempt: int, code: str, reason: str, *, permanent: bool, final: bool, key: str,
           now_ms: int, http_status: int | None = None, retry_at: int | None = None,
           decision: dict[str, Any] | None = None) -> dict[str, Any]:
    return make("OutboundFailed", _env(msg, "OutboundFailed", attempt, key, now_ms), **_ids(msg, attempt),
                code=code, reason=reason, permanent=permanent, final=final, http_status=http_status,
                retry_at=retry_at, rendering=rendering(decision))


def window(tenant: str, channel: str, account: str, identity: str, times: tuple[int, ...], cause: dict[str, Any],
           key: str) -> dict[str, Any]:
    c = cause["envelope"]
    env = envelope("ServiceWindow", event_id=derive_id(key, "ServiceWindow", c["event_id"]),
                   occurred_at=c["occurred_at"], tenant_id=tenant, partition_key=key,
                   correlation_id=c["correlation_id"], causation_id=c["event_id"], producer=PRODUCER)
    return make("ServiceWindow", env, channel=channel, channel_account_id=account, customer_identity=identity,
                customer_id=cause.get("customer_id"), thread_id=cause.get("thread_id"), inbound_at=list(times))
