"""Pacing: per-account token buckets and retry back-off.

``backoff`` is pure (the random draw is passed in). A ``Bucket`` paces one account's calls at
its provider's rate and can be blocked until a time (a 429's Retry-After): only that account's
calls wait, every other account keeps its own pace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def backoff(attempt: int, retry_after_s: float | None, draw: float, base_s: float = 0.5, cap_s: float = 60.0) -> float:
    """Seconds before attempt ``attempt + 1``: the provider's Retry-After when it gave one (plus
    up to 10 % jitter so throttled callers do not return together), else exponential back-off
    with full jitter: ``draw`` (0..1) times ``min(cap, base * 2^(attempt-1))``."""
    if retry_after_s is not None:
        return min(retry_after_s * (1.0 + 0.1 * draw), cap_s * 10)
    return max(0.01, draw * min(cap_s, base_s * 2 ** (attempt - 1)))


class Bucket:
    """A token bucket: ``rate`` calls per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = max(rate, 0.001), max(burst, 1)
        self.tokens = float(self.burst)
        self.clock = clock
        self.stamp = clock()
        self.blocked_until = 0.0

    def block(self, seconds: float) -> None:
        """No call before ``seconds`` from now (the provider said so)."""
        self.blocked_until = max(self.blocked_until, self.clock() + seconds)
        self.tokens = min(self.tokens, 1.0)

    def wait_s(self) -> float:
        """How long until a call may go (0: now), taking the token when it may."""
        now = self.clock()
        if now < self.blocked_until:
            return self.blocked_until - now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    async def take(self) -> None:
        while (wait := self.wait_s()) > 0:
            await asyncio.sleep(wait)
