"""Waiting in tests: poll a condition until a deadline, never sleep a fixed time.

A fixed sleep is too short on a busy machine and too long everywhere else; a condition polled
until a deadline returns as soon as what the test waits for is there. Both helpers return whether
it came, so a test says what it waited for: ``assert wait_until(ready, 30), "never ready"``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def wait_until(cond: Callable[[], object], timeout: float, every: float = 0.25) -> bool:
    """Call ``cond`` every ``every`` seconds until it is true (True) or ``timeout`` seconds have
    passed (False; ``cond`` is asked once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(every, left))


async def async_wait_until(cond: Callable[[], object | Awaitable[object]], timeout: float,
                           every: float = 0.1) -> bool:
    """``wait_until`` inside an event loop: the loop runs between the calls; ``cond`` may be a
    coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(every, left))
