"""What the egress already did, per outbound message: read back from ``parley.outbound``.

Folding the delivery events of a message (pure): the number of attempts recorded, whether an
outcome is final (sent, or failed for good), and whether the last attempt has no outcome (the
process died during the call: the next attempt is *in doubt*). The runner rebuilds this for
each input partition it is assigned, from that partition of ``parley.outbound`` (co-partitioned)
over the send horizon, before it reads any input: a message seen again is never sent again once
final, and an in-doubt one is resent with the same idempotency keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Delivery:
    attempts: int = 0
    outcomes: int = 0  # attempts with an outcome recorded
    final: str | None = None  # "sent" or "failed"
    channel_message_id: str | None = None
    at: int = 0  # time of its latest delivery event (processing time): when it may be forgotten

    @property
    def in_doubt(self) -> bool:
        return self.final is None and self.attempts > self.outcomes


def fold(d: Delivery | None, event: dict[str, Any]) -> Delivery:
    """``d`` with one more delivery event applied (order within a partition is the write order)."""
    d = d or Delivery()
    kind = event["envelope"]["event_type"]
    attempt = event.get("attempt", 0)
    d = replace(d, at=max(d.at, event["envelope"].get("occurred_at", 0)))
    if kind == "OutboundAttempted":
        return replace(d, attempts=max(d.attempts, attempt))
    if kind == "OutboundSent":
        return replace(d, outcomes=max(d.outcomes, attempt), final="sent",
                       channel_message_id=event.get("channel_message_id"))
    if kind == "OutboundFailed":
        final = d.final or ("failed" if event.get("final") else None)
        return replace(d, attempts=max(d.attempts, attempt), outcomes=max(d.outcomes, attempt), final=final)
    return d
