"""The codec's compiled Avro writers (schemas/writer.py) write exactly what fastavro writes, for
every event type of the catalogue, and are as strict: defaults filled, unknown fields refused."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalog import catalog
from schemas.codec import Codec, EncodeError
from schemas.events import make
from schemas.writer import compile_writer

CAT = catalog()
TYPES = sorted({sv.name for sv in CAT.by_id.values()})


def records(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy:
    """Records of ``schema`` (the subset the writer supports), with edge values."""
    named = {} if named is None else named
    if isinstance(schema, str) and schema in named:
        return records(named[schema], named)
    if isinstance(schema, list):
        other = next(b for b in schema if b != "null")
        return st.one_of(st.none(), records(other, named))
    if isinstance(schema, dict) and schema["type"] == "record":
        name = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', '')}.{schema['name']}"
        named[name.lstrip(".")] = schema
        return st.fixed_dictionaries({f["name"]: records(f["type"], named) for f in schema["fields"]})
    if isinstance(schema, dict) and schema["type"] == "array":
        return st.lists(records(schema["items"], named), max_size=3)
    if isinstance(schema, dict) and schema["type"] == "map":
        return st.dictionaries(st.text(max_size=5), records(schema["values"], named), max_size=3)
    if isinstance(schema, dict):
        return records(schema["type"], named)
    return {"string": st.text(max_size=80), "bytes": st.binary(max_size=80), "boolean": st.booleans(),
            "double": st.floats(allow_nan=False), "float": st.floats(width=32, allow_nan=False),
            "int": st.integers(-(2**31), 2**31 - 1), "long": st.integers(-(2**63), 2**63 - 1),
            "null": st.none()}[schema]


def _fastavro(sv, record) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, sv.parsed, record)
    return buf.getvalue()


@pytest.mark.parametrize("name", TYPES)
def test_byte_for_byte_what_fastavro_writes(name: str) -> None:
    sv = CAT.latest(name)
    write = compile_writer({k: v for k, v in sv.schema.items() if k != "version"})

    @settings(max_examples=150, deadline=None)
    @given(records(sv.schema))
    def check(record) -> None:
        out = bytearray()
        write(record, out)
        assert bytes(out) == _fastavro(sv, record)

    check()


_LENGTHS = {"type": "record", "name": "Lengths", "fields": [
    {"name": "s", "type": "string"}, {"name": "b", "type": "bytes"}, {"name": "n", "type": "long"},
    {"name": "a", "type": {"type": "array", "items": "int"}}, {"name": "m", "type": {"type": "map", "values": "int"}}]}


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 127, 128, 8191, 8192, 100_000])
@pytest.mark.parametrize("n", [0, 1, 31, 32, 63, 64, 65, -1, -32, -33, -64, -65, 2**31, 2**63 - 1, -(2**63)])
def test_lengths_and_numbers_around_the_one_byte_fast_path(size: int, n: int) -> None:
    """The writer puts a length or a number below 64 in one byte without a call: the edges of
    that path, and far past it, give fastavro's bytes."""
    from fastavro import parse_schema

    record = {"s": "é" * (size // 2) + "x" * (size % 2), "b": b"\x01" * size, "n": n,
              "a": list(range(min(size, 300))), "m": {str(i): i for i in range(min(size, 70))}}
    out = bytearray()
    compile_writer(_LENGTHS)(record, out)
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(_LENGTHS), record)
    assert bytes(out) == buf.getvalue()


def test_the_fast_encoder_is_a_codec_record() -> None:
    codec = Codec()
    sv = CAT.latest("IngressClaim")
    record = {"envelope": {"event_id": "e", "event_type": "IngressClaim", "schema_version": sv.version,
                           "occurred_at": 1, "tenant_id": "", "partition_key": "", "causation_id": None,
                           "correlation_id": "e", "producer": "ingress", "recorded_at": 2},
              "entries": [{"kind": "claimed", "owner": "o", "at": 3,
                           "ids": [{"id": "i", "topic": "t", "key": b"k", "partition": None, "offset": None}]}]}
    data = codec.encode_as(sv, record)
    assert data == codec.encode_as(sv, record) and codec.decode(data) == record
    with pytest.raises(EncodeError):
        codec.encode_as(sv, {**record, "entries": [{"kind": 7}]})


@pytest.mark.parametrize("name", TYPES)
def test_as_strict_as_fastavro_defaults_filled_unknown_fields_refused(name: str) -> None:
    """A field left out takes its default (the bytes fastavro writes then), a required one
    missing or a field the schema does not name is an EncodeError, as with fastavro."""
    sv = CAT.latest(name)
    codec = Codec()
    defaulted = [f["name"] for f in sv.schema["fields"] if "default" in f]
    required = [f["name"] for f in sv.schema["fields"] if "default" not in f]

    @settings(max_examples=10, deadline=None)
    @given(records(sv.schema))
    def check(full) -> None:
        if defaulted:
            part = {k: v for k, v in full.items() if k != defaulted[0]}
            buf = io.BytesIO()
            schemaless_writer(buf, sv.parsed, part, strict_allow_default=True)
            assert codec.encode_as(sv, part)[5:] == buf.getvalue()
        with pytest.raises(EncodeError):
            codec.encode_as(sv, {**full, "not_a_field": 1})
        with pytest.raises(EncodeError):
            codec.encode_as(sv, {k: v for k, v in full.items() if k != required[0]})

    check()


def test_an_event_built_by_make_encodes_alike_both_ways() -> None:
    from parley.app.synthetic import events as synthetic

    e = synthetic.received("acme", synthetic.identity("sms", "+33612345678"), "hi", synthetic.T0)
    sv = CAT.latest("MessageReceived")
    buf = io.BytesIO()
    schemaless_writer(buf, sv.parsed, e, strict_allow_default=True)
    assert Codec().encode(e)[5:] == buf.getvalue()
    assert make  # the catalogue's builder fills every field the writer needs


def test_a_schema_the_writer_does_not_cover_is_left_to_fastavro() -> None:
    from schemas.codec import _compiled

    with pytest.raises(ValueError):
        compile_writer({"type": "record", "name": "E", "fields": [{"name": "e", "type": {
            "type": "enum", "name": "K", "symbols": ["A"]}}]})
    assert all(_compiled(CAT.latest(name)) for name in TYPES)  # today every event type is compiled


# --- decoding: cavro's decoder reads what fastavro reads ---------------------------------------

@pytest.mark.parametrize("name", TYPES)
def test_the_codec_decodes_every_type_into_the_dicts_fastavro_reads(name: str) -> None:
    from fastavro import schemaless_reader

    from schemas.codec import _HEADER, MAGIC

    sv = CAT.latest(name)
    codec = Codec()
    assert codec._reader(sv)  # today's shape of every type is read by cavro, not by the fallback

    @settings(max_examples=100, deadline=None)
    @given(records(sv.schema))
    def check(record) -> None:
        body = _fastavro(sv, record)
        data = _HEADER.pack(MAGIC, sv.local_id) + body
        assert codec.decode(data) == schemaless_reader(io.BytesIO(body), sv.parsed, None) == record

    check()


@pytest.mark.parametrize("cut", [1, 7, 40])
def test_a_corrupt_or_cut_body_is_a_decode_error_with_either_decoder(cut: int) -> None:
    from parley.app.synthetic import events as synthetic
    from schemas.codec import DecodeError

    codec = Codec()
    data = codec.encode(synthetic.received("acme", synthetic.identity("sms", "+33612345678"), "hi", synthetic.T0))
    with pytest.raises(DecodeError):
        codec.decode(data[: len(data) - cut])
    garbage = data[:5] + b"\xff" * 12  # a length no body holds
    with pytest.raises(DecodeError):
        codec.decode(garbage)
