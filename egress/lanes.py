"""Per-account dispatch: the jobs (one outbound message each) and the lanes (one per account).

A lane paces its account (a token bucket at the provider's rate, blocked by a Retry-After),
keeps at most ``window`` calls in flight (halved at each rate-limit answer, +1 per success), and
sends one message at a time per recipient, in the order they were read. Lanes are independent:
a throttled or slow account holds up nobody else.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from egress.limits import Bucket
from egress.model import Plan, SendAccount
from egress.providers.base import Call
from egress.state import Delivery


@dataclass
class Job:
    msg: dict[str, Any]
    account: SendAccount
    plan: Plan
    calls: list[Call]
    key: bytes
    done: Delivery
    offsets: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)
    next_call: int = 0
    ids: list[str] = field(default_factory=list)
    duplicate: bool = False
    in_call: bool = False  # between its OutboundAttempted and the outcome

    @property
    def recipient(self) -> str:
        return self.plan.recipient


class Lane:
    """One account's queue: its pace, its throttle, one call at a time per recipient (in order)."""

    def __init__(self, account: SendAccount, concurrency: int) -> None:
        self.bucket = Bucket(account.rate_per_s, account.burst)
        self.waiting: dict[str, deque[Job]] = {}  # recipient -> its jobs, oldest first
        self.ready: deque[str] = deque()  # recipients with a job and none in progress
        # calls in flight: at most ``window``, which halves at each rate-limit answer and grows by
        # one per success up to ``concurrency`` (additive increase, multiplicative decrease): a
        # throttled account backs off instead of sending its backlog in bursts at each Retry-After
        self.max_window = self.window = concurrency
        self.in_flight = 0
        self.freed = asyncio.Event()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def acquire(self) -> None:
        while self.in_flight >= self.window:
            self.freed.clear()
            await self.freed.wait()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self.freed.set()

    def throttled(self) -> None:
        self.window = max(1, self.window // 2)

    def succeeded(self) -> None:
        self.window = min(self.max_window, self.window + 1)

    def add(self, job: Job) -> None:
        jobs = self.waiting.get(job.recipient)
        if jobs is None:
            self.waiting[job.recipient] = deque([job])
            self.ready.append(job.recipient)
            self.wake.set()
        else:
            jobs.append(job)

    def take(self) -> Job | None:
        if not self.ready:
            return None
        return self.waiting[self.ready.popleft()][0]

    def done(self, job: Job) -> None:
        """``job``'s recipient is free: its next job (if any) may go."""
        jobs = self.waiting[job.recipient]
        jobs.popleft()
        if jobs:
            self.ready.append(job.recipient)
            self.wake.set()
        else:
            del self.waiting[job.recipient]
