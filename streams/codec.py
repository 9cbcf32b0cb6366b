"""A Faust codec over the Avro wire format, registered under ``CODEC_NAME``.

Agents declare topics with ``value_serializer=CODEC_NAME`` and then read and send our events as
plain dicts (the shape of ``schemas.events.make``). Encoding is strict (``schemas.codec``).

Decoding never raises into an agent: Faust would crash the agent on a ``ValueDecodeError``, so
undecodable bytes come out as a :class:`Poison` value that the agent sends to the dead-letter
topic with its raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faust.serializers import codecs

from schemas.codec import Codec, DecodeError

CODEC_NAME = "parley_avro"


@dataclass(frozen=True)
class Poison:
    """Bytes that are not a Parley event (bad magic byte, unknown schema id, corrupt body)."""

    payload: bytes
    error: str


class AvroCodec(codecs.Codec):
    """Faust codec: dict <-> Confluent-framed Avro via ``schemas.codec.Codec``.

    ``bytes`` given to ``dumps`` pass through unchanged (already encoded: forwarded records).
    """

    def __init__(self, codec: Codec | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.codec = codec or Codec()

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        return self.codec.encode(obj)

    def _loads(self, s: bytes) -> Any:
        try:
            return self.codec.decode(s)
        except DecodeError as e:
            return Poison(bytes(s), str(e))


def register(codec: Codec | None = None) -> str:
    """Register (or replace) the codec under ``CODEC_NAME``; returns the name."""
    codecs.register(CODEC_NAME, AvroCodec(codec))
    return CODEC_NAME
