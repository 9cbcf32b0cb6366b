"""Moved: the codec compiles its writers itself (``schemas.writer``, used by ``Codec.encode``).

``FastEncoder`` stays for the callers not yet moved to ``Codec.encode_as``; it is that call.
"""

from __future__ import annotations

from typing import Any

from schemas.catalog import SchemaVersion
from schemas.codec import Codec
from schemas.writer import compile_writer

__all__ = ["FastEncoder", "compile_writer"]


class FastEncoder:
    """Wire bytes of one event type: ``Codec.encode_as``."""

    def __init__(self, codec: Codec, sv: SchemaVersion) -> None:
        self.codec, self.sv = codec, sv

    def encode(self, record: dict[str, Any], topic: str | None = None) -> bytes:
        return self.codec.encode_as(self.sv, record, topic)
