"""Shared channel helpers: phone normalisation, time units, coercion, the adapters' surface."""

from __future__ import annotations

import importlib

import pytest

from adapters.base import Unmappable
from adapters.channels._common import (
    e164,
    integer,
    mapping_errors,
    ms_from_ms,
    ms_from_rfc3339,
    ms_from_seconds,
    rich,
    text,
)

CHANNEL_MODULES = ["whatsapp", "messenger", "instagram", "twilio", "telegram", "line", "viber",
                   "wechat", "rbm", "email"]


@pytest.mark.parametrize("raw, expected", [
    ("16505551234", "+16505551234"),            # WhatsApp wa_id: digits with country code
    ("+33 6 12 34 56 78", "+33612345678"),
    ("0033612345678", "+33612345678"),
    ("whatsapp:+14155238886", "+14155238886"),  # Twilio WhatsApp address
    ("tel:+44 (20) 7946-0958", "+442079460958"),
    ("+1-650-555-1234", "+16505551234"),
    ("0612345678", None),                       # national format: country unknown
    ("ACMEBANK", None),                         # alphanumeric sender id
    ("12345", None),                            # short code
    ("+1234567890123456", None),                # 16 digits: longer than E.164 allows
    ("", None), (None, None), (33612345678, None),
])
def test_e164(raw, expected):
    assert e164(raw) == expected


@pytest.mark.parametrize("fn, value, expected", [
    (ms_from_seconds, "1749416383", 1749416383000),   # WhatsApp: unix seconds as a string
    (ms_from_seconds, 1731398400, 1731398400000),     # Telegram date
    (ms_from_seconds, "1.5", 1500),
    (ms_from_seconds, None, -1), (ms_from_seconds, "soon", -1), (ms_from_seconds, True, -1),
    (ms_from_seconds, float("inf"), -1), (ms_from_seconds, -5, -1), (ms_from_seconds, 10**15, -1),
    (ms_from_ms, 1458692752478, 1458692752478),       # Messenger, LINE, Viber: ms
    (ms_from_ms, "1458692752478", 1458692752478),
    (ms_from_ms, {}, -1), (ms_from_ms, 10**20, -1),
    (ms_from_rfc3339, "2021-08-27T17:53:52.243Z", 1630086832243),
    (ms_from_rfc3339, "2014-10-02T15:01:23.045123456Z", 1412262083045),
    (ms_from_rfc3339, "2014-10-02T15:01:23+05:30", 1412242283000),
    (ms_from_rfc3339, "2014-10-02T15:01:23", -1),     # no offset: not RFC 3339
    (ms_from_rfc3339, 12, -1),
])
def test_time_units(fn, value, expected):
    assert fn(value, -1) == expected


def test_coercions():
    assert text(12) == "12" and text("a") == "a" and text(None) is None
    with pytest.raises(Unmappable):
        text(["x"])
    with pytest.raises(Unmappable):
        text(True)
    assert integer("42") == 42 and integer("x") is None and integer(2**64) is None
    assert rich("postback", payload=7, data={"b": 1, "a": "é"})["data_json"] == '{"a":"é","b":1}'


def test_mapping_errors_become_unmappable():
    @mapping_errors
    def boom(d):
        return d["missing"]

    with pytest.raises(Unmappable, match="KeyError"):
        boom({})


@pytest.mark.parametrize("name", CHANNEL_MODULES)
def test_every_module_exposes_an_adapter(name):
    adapter = importlib.import_module(f"adapters.channels.{name}").ADAPTER
    assert isinstance(adapter.channel, str) and adapter.channel == name
    assert isinstance(adapter.max_body_bytes, int) and adapter.max_body_bytes > 0
    for method in ("handshake", "verify", "parse", "ack"):
        assert callable(getattr(adapter, method))


def test_registry_loads_every_channel_module():
    from adapters.channels import Registry

    registry = Registry()
    for name in CHANNEL_MODULES:
        assert registry.get(name).channel == name
