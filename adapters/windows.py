"""The agent API's window check: a free-form reply outside its customer-service window is
refused with 422, naming the window's end and the account's templates.

The windows are derived from the log: ``parley.outbound.windows`` (compacted; written by the
egress from the customers' messages) is read from its start in the background and kept in
memory, per (tenant, channel, account, customer identity): the recent times the customer wrote.
The decision is ``egress.windows`` (pure, event time): the reply's ``occurred_at`` against the
latest customer message at or before it. Until the topic has been read to its end (start-up,
or the topic is missing) nothing is refused: the egress, which checks the same window before
sending, refuses it then (OutboundFailed ``window_closed``, visible on the thread). The book
trails the log by the stream worker's and the egress's latency (about a second): a reply in the
very second after the customer's first message in days may be refused; the agent retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from egress import windows
from parley import logs
from parley.settings import KafkaSettings
from schemas import topics
from schemas.codec import Codec, DecodeError, codec_for

log = logs.get("adapters.windows")


class WindowBook:
    def __init__(self, kafka: KafkaSettings, accounts: Any, codec: Codec | None = None) -> None:
        self.kafka, self.accounts = kafka, accounts
        self.codec = codec or codec_for(kafka)  # the ingress's codec: registry ids when configured
        self.topic = topics.named(kafka.topic_prefix, topics.SERVICE_WINDOWS)
        self.times: dict[str, tuple[int, ...]] = {}
        self.loaded = False
        self._task: asyncio.Task | None = None

    async def start(self, _app: Any = None) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self, _app: Any = None) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def refusal(self, event: dict[str, Any]) -> str | None:
        """Why ``event`` (a MessageSent) may not be sent now, or None."""
        channel = event["channel"]
        if not self.loaded or not windows.has_window(channel) or event.get("kind") == "template" \
                or (event.get("content") or {}).get("template"):
            return None
        k = topics.SERVICE_WINDOWS.key(event["envelope"]["tenant_id"], channel, event["channel_account_id"],
                                       str(event["recipient"]["id"]))
        w = windows.window_at(channel, self.times.get(k, ()), event["envelope"]["occurred_at"],
                              event.get("author_type") or "agent")
        return None if w.free_form_allowed else windows.closed_reason(w, self._templates(channel, event))

    def _templates(self, channel: str, event: dict[str, Any]) -> list[str]:
        account = self.accounts.get(channel, event["channel_account_id"]) or \
            self.accounts.owner("twilio", event["channel_account_id"])
        found = (account.options.get("templates") if account else None) or []
        return sorted({f"{t.get('name')} ({t.get('language', 'en')})" for t in found if isinstance(t, dict)})

    def apply(self, e: dict[str, Any]) -> None:
        windows.fold(self.times, e)

    async def _follow(self) -> None:
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the check fails open while the topic is away
                log.warning("windows.unavailable", topic=self.topic, error=str(e))
                await asyncio.sleep(5)

    async def _read(self) -> None:
        c = AIOKafkaConsumer(**self.kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed", auto_offset_reset="earliest")
        try:
            await c.start()
            parts = await _partitions(self.kafka, self.topic)
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            end = await c.end_offsets(tps)
            while True:
                for batch in (await c.getmany(timeout_ms=500, max_records=5000)).values():
                    await self.codec.aresolve(r.value for r in batch)  # ids written since start-up: off the loop
                    for r in batch:
                        try:
                            self.apply(self.codec.decode(r.value))
                        except (DecodeError, KeyError, TypeError):
                            continue
                if not self.loaded and await _caught_up(c, end):
                    self.loaded = True
                    log.info("windows.loaded", identities=len(self.times))
        finally:
            await c.stop()


async def _caught_up(c: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await c.position(tp) < offset:
            return False
    return True


async def _partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), request_timeout_ms=30000)
    await admin.start()
    try:
        [d] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if d["error_code"] != 0 or not d["partitions"]:
        raise LookupError(f"topic {topic} does not exist")
    return [p["partition"] for p in d["partitions"]]
