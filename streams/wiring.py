"""What every family's agents share: topics by registry entry, tables, sending, dead letters.

Agents are wiring (STYLE 3): they iterate, call the pure logic, write tables and send. This
module keeps that wiring to a few calls so each ``agents.py`` reads as its data flow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from parley import logs
from parley.settings import WorkerSettings
from schemas import topics
from schemas.events import derive_id, envelope, make
from streams.codec import CODEC_NAME, Poison

log = logs.get("streams")


@dataclass
class Wiring:
    """The app, its settings and the topic objects already made (one per name and serializer)."""

    app: faust.App
    settings: WorkerSettings
    _topics: dict[tuple[str, bool], faust.TopicT] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.settings.kafka.topic_prefix

    def topic(self, t: topics.Topic, *, raw: bool = False) -> faust.TopicT:
        """A catalogue topic (created by `parley topics apply`): values as dicts, or raw bytes."""
        return self._get(topics.named(self.prefix, t), raw, internal=None)

    def internal(self, t: topics.Topic, *, raw: bool = False) -> faust.TopicT:
        """A worker-internal repartition topic, named per app id and declared by Faust."""
        return self._get(topics.internal_name(self.prefix, self.settings.app_id, t), raw, internal=t)

    def _get(self, name: str, raw: bool, internal: topics.Topic | None) -> faust.TopicT:
        if (name, raw) not in self._topics:
            kw: dict[str, Any] = {}
            if internal is not None:
                kw = {"partitions": internal.partitions, "internal": True,
                      "retention": internal.retention_ms / 1000 if internal.retention_ms > 0 else None}
            self._topics[(name, raw)] = self.app.topic(
                name, key_serializer="raw", value_serializer="raw" if raw else CODEC_NAME, **kw)
        return self._topics[(name, raw)]

    def table(self, name: str, source: topics.Topic) -> faust.Table:
        """A table co-partitioned with ``source`` (its changelog partition is the event's)."""
        # keys are str, values JSON dicts (the app's table serializers default to json)
        return self.app.Table(name, default=None, partitions=source.partitions)

    async def send(self, topic: faust.TopicT, event: dict[str, Any] | bytes,
                   key: str | bytes | None = None) -> asyncio.Future:
        """Send an event keyed by its partition key, stamped with processing time for latency;
        returns the future Kafka's acknowledgement resolves."""
        if isinstance(event, dict):
            event["envelope"]["recorded_at"] = int(time.time() * 1000)  # metadata only, never decided on
            key = key or event["envelope"]["partition_key"]
        if isinstance(key, str):
            key = key.encode()
        return await topic.send(key=key, value=event)

    async def fan_out(self, event: dict[str, Any], *targets: tuple[faust.TopicT, str]) -> list[asyncio.Future]:
        """Send one event to several topics, each with its own key, encoded once."""
        event["envelope"]["recorded_at"] = int(time.time() * 1000)  # metadata only, never decided on
        data = _codec().dumps(event)
        return [await topic.send(key=key.encode(), value=data) for topic, key in targets]

    @staticmethod
    async def then_save(sent: list[asyncio.Future], save: Callable[[], None]) -> None:
        """Wait until Kafka acknowledged every output of an input, then write the state change.

        The other order loses outputs: the table's changelog says "applied" after a crash,
        the input is read again (its offset was not committed), recognised, and nothing is
        sent. In this order a crash re-processes the input on the old state and sends the same
        outputs again, under the same ids, which consumers drop.
        """
        if sent:
            await asyncio.gather(*sent)
        save()

    async def dead_letter(self, stage: str, event: faust.EventT, reason: str, error: str) -> None:
        """Park an input record that cannot be processed, with its raw bytes and position."""
        msg = event.message
        raw = msg.value if isinstance(msg.value, (bytes, bytearray)) else b""
        tenant = tenant_of_key(msg.key) or "unknown"
        env = envelope("DeadLetter", event_id=derive_id("deadletter", stage, msg.topic, msg.partition, msg.offset),
                       occurred_at=int(msg.timestamp * 1000) if msg.timestamp else 0, tenant_id=tenant,
                       partition_key=stage, producer=stage)
        record = make("DeadLetter", env, stage=stage, reason=reason, error=error[:2000], payload=bytes(raw),
                      source_topic=msg.topic, source_partition=msg.partition, source_offset=msg.offset,
                      headers={"key": (msg.key or b"").decode("utf-8", "replace")})
        log.warning("streams.dead_letter", stage=stage, reason=reason, error=error[:300], topic=msg.topic,
                    partition=msg.partition, offset=msg.offset)
        await self.send(self.topic(topics.DEAD_LETTER), record)

    async def decisions(self, stage: str, stream: Any,
                        apply: Callable[[dict[str, Any]], Any]) -> AsyncIterator[Any]:
        """``apply(value)`` of each input event; undecodable inputs, and inputs ``apply`` fails
        on (a bug or an impossible record), are dead-lettered and the stream goes on."""
        async for event in stream.events():
            value = await self.guard(stage, event)
            if value is None:
                continue
            try:
                result = apply(value)
            except Exception as e:  # noqa: BLE001 - park it, keep the stream going
                log.exception("streams.failed", stage=stage, event_id=value.get("envelope", {}).get("event_id"))
                await self.dead_letter(stage, event, "poison", repr(e))
                continue
            yield result

    async def guard(self, stage: str, event: faust.EventT) -> dict[str, Any] | None:
        """The event's value, or None after dead-lettering it when it is not a Parley event."""
        value = event.value
        if isinstance(value, Poison):
            await self.dead_letter(stage, event, "undecodable", value.error)
            return None
        return value


def _codec() -> Any:
    from faust.serializers import codecs

    return codecs.get_codec(CODEC_NAME)


def tenant_of_key(key: bytes | str | None) -> str | None:
    """The tenant prefix of a partition key (``tenant|...``), or None."""
    if not key:
        return None
    if isinstance(key, (bytes, bytearray)):
        key = bytes(key).decode("utf-8", "replace")
    return key.split("|", 1)[0] or None
