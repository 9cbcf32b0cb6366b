"""Customer-service windows, in event time (pure).

A customer's message opens a window on the channel account it wrote to; each new message
refreshes it; the business's messages do not. Outside it a channel refuses free-form messages:

- WhatsApp (Cloud API and Twilio): 24 h; outside it only an approved template.
- Messenger, Instagram: 24 h standard (``messaging_type: RESPONSE``); a human agent may answer
  up to 7 days with the ``HUMAN_AGENT`` tag; outside, nothing (no templates here).
- WeChat Official Account: customer-service messages 48 h; outside, a template message.
- Other channels: no window.

The times are the customers' messages' ``occurred_at``; a message's decision uses the latest
customer message at or before the message's own ``occurred_at``, so a replay decides alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas import topics

HOUR_MS = 3600 * 1000
KEEP = 8  # times kept per identity: enough to answer for a message replayed after later ones

# channel -> (standard window, human-agent window or 0)
POLICY: dict[str, tuple[int, int]] = {
    "whatsapp": (24 * HOUR_MS, 0),
    "messenger": (24 * HOUR_MS, 7 * 24 * HOUR_MS),
    "instagram": (24 * HOUR_MS, 7 * 24 * HOUR_MS),
    "wechat": (48 * HOUR_MS, 0),
}
NAMES = {"whatsapp": "WhatsApp 24-hour customer-service window", "messenger": "Messenger 24-hour window",
         "instagram": "Instagram 24-hour window", "wechat": "WeChat 48-hour customer-service window"}


@dataclass(frozen=True)
class Window:
    """The window a message at ``at`` falls in. ``mode``: response (inside), human_agent
    (Messenger/Instagram tag), template (only a template may go), closed (nothing may go), none
    (the channel has no window)."""

    channel: str
    mode: str
    last_inbound_at: int | None
    closes_at: int | None  # the standard window's end
    human_agent_closes_at: int | None = None

    @property
    def free_form_allowed(self) -> bool:
        return self.mode in ("response", "human_agent", "none")


def has_window(channel: str) -> bool:
    return channel in POLICY


def remember(times: tuple[int, ...], at: int) -> tuple[int, ...]:
    """``times`` (ascending) with ``at`` added, the latest ``KEEP`` kept."""
    if at in times:
        return times
    return tuple(sorted((*times, at)))[-KEEP:]


def fold(book: dict[str, tuple[int, ...]], record: Mapping[str, Any]) -> None:
    """Add a ``ServiceWindow`` record's customer message times to ``book`` (its window key ->
    times): how the egress and the agent API's window check read ``parley.outbound.windows``."""
    k = topics.SERVICE_WINDOWS.key(record["envelope"]["tenant_id"], record["channel"],
                                   record["channel_account_id"], record["customer_identity"])
    times = book.get(k, ())
    for t in record["inbound_at"]:
        times = remember(times, t)
    book[k] = times


def latest_before(times: tuple[int, ...] | list[int], at: int) -> int | None:
    """The latest customer message at or before ``at``; the oldest known if all are later
    (the older ones were dropped: the oldest kept is the best answer left)."""
    best = None
    for t in times:
        if t <= at:
            best = t
    if best is None and times and len(times) >= KEEP:
        return min(times)
    return best


def window_at(channel: str, times: tuple[int, ...] | list[int], at: int, author_type: str = "agent") -> Window:
    """The window a message sent at ``at`` (event time) by ``author_type`` falls in."""
    if channel not in POLICY:
        return Window(channel, "none", latest_before(times, at), None)
    standard, human = POLICY[channel]
    last = latest_before(times, at)
    closes = last + standard if last is not None else None
    human_closes = last + human if last is not None and human else None
    if last is not None and closes is not None and last <= at < closes:
        mode = "response"
    elif last is not None and human_closes is not None and last <= at < human_closes and author_type == "agent":
        mode = "human_agent"
    elif channel in ("whatsapp", "wechat"):
        mode = "template"
    else:
        mode = "closed"
    return Window(channel, mode, last, closes, human_closes)


def iso(ms: int | None) -> str:
    return "never" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def closed_reason(w: Window, templates: list[str]) -> str:
    """Words for the agent: which window, when it closed, what may still be sent."""
    name = NAMES.get(w.channel, f"{w.channel} window")
    if w.last_inbound_at is None:
        head = f"free-form message refused: the customer has not written on this account, so the {name} is not open"
    else:
        end = w.human_agent_closes_at if w.human_agent_closes_at else w.closes_at
        head = (f"free-form message refused: the {name} closed at {iso(end)} "
                f"(the customer last wrote at {iso(w.last_inbound_at)})")
        if w.human_agent_closes_at:
            head += (f"; the standard window closed at {iso(w.closes_at)}, human agents' replies were allowed "
                     f"until {iso(end)}")
    if w.mode == "template":
        offer = f"send an approved template instead: {', '.join(templates)}" if templates else \
            "send an approved template instead (none is configured for this account)"
        return f"{head}; {offer}"
    return f"{head}; nothing can be sent until the customer writes again"
