"""The codec: strict encoding, the Confluent wire format, clear decode errors."""

from __future__ import annotations

import struct

import pytest

from schemas.codec import Codec, DecodeError, EncodeError
from schemas.events import derive_id, envelope, make

pytestmark = pytest.mark.contract


def make_message(**overrides):
    env = envelope("MessageReceived", event_id=derive_id("acme", "wa", "wamid.1"),
                   occurred_at=1_700_000_000_000, tenant_id="acme", partition_key="acme|whatsapp|33600")
    fields = dict(channel="whatsapp", channel_account_id="1055", channel_message_id="wamid.1",
                  sender={"channel": "whatsapp", "id": "33600", "display_name": None,
                          "phone_e164": "+33600", "email": None, "login_id": None},
                  text="Bonjour", raw_event_id="raw-1")
    fields.update(overrides)
    return make("MessageReceived", env, **fields)


def test_round_trip_keeps_every_field() -> None:
    codec = Codec()
    event = make_message(attachments=[{"kind": "image", "media_id": "m1", "url": None, "mime_type": "image/jpeg",
                                       "size_bytes": 1234, "sha256": None, "caption": "photo", "filename": None}])
    assert codec.decode(codec.encode(event)) == event


def test_wire_format_is_magic_byte_and_schema_id() -> None:
    codec = Codec()
    data = codec.encode(make_message())
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert schema_id == codec.catalog.latest("MessageReceived").local_id


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"text": 42}, "wrong type"), ({"channel": None}, "null for a required string")],
)
def test_encoding_is_strict(overrides, reason) -> None:
    with pytest.raises(EncodeError):
        Codec().encode(make_message(**overrides))


def test_unknown_field_is_refused() -> None:
    event = make_message()
    event["surprise"] = 1
    with pytest.raises(EncodeError):
        Codec().encode(event)


def test_unknown_event_type_is_refused() -> None:
    event = make_message()
    event["envelope"]["event_type"] = "NoSuchEvent"
    with pytest.raises(EncodeError):
        Codec().encode(event)


@pytest.mark.parametrize(
    "data", [b"", b"\x00\x00", b"\x01\x00\x00\x00\x01payload", b"\x00\x7f\xff\xff\xffpayload"],
    ids=["empty", "short", "bad-magic", "unknown-id"],
)
def test_decode_errors_are_clear(data) -> None:
    with pytest.raises(DecodeError):
        Codec().decode(data)


def test_truncated_body_is_a_decode_error() -> None:
    data = Codec().encode(make_message())
    with pytest.raises(DecodeError):
        Codec().decode(data[:-10])


def test_make_fills_defaults_and_refuses_unknown_fields() -> None:
    event = make_message()
    assert event["attachments"] == [] and event["customer_id"] is None and event["references"] == []
    with pytest.raises(TypeError):
        make_message(nonsense=1)
