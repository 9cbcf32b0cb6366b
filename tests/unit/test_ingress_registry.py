"""The adapter registry: lazy, one module at a time, failures contained and remembered."""

from __future__ import annotations

import sys
import types

import pytest

from adapters.channels import REGISTRY, AdapterUnavailable, Registry, UnknownAdapter

EXPECTED = {"whatsapp", "messenger", "instagram", "twilio", "telegram", "line", "viber", "wechat", "rbm",
            "email", "webchat"}


def test_the_registry_names_every_channel_of_the_issue() -> None:
    assert set(REGISTRY) == EXPECTED
    assert all(path == f"adapters.channels.{name}" for name, path in REGISTRY.items())


def test_webchat_loads_and_fits_the_protocol() -> None:
    adapter = Registry().get("webchat")
    assert adapter.channel == "webchat" and adapter.max_body_bytes == 64 * 1024


def test_every_registered_module_that_exists_loads() -> None:
    registry = Registry()
    available = registry.available()
    assert "webchat" in available
    for name, adapter in available.items():
        assert adapter.max_body_bytes > 0, name


def test_unknown_and_broken_adapters_fail_alone() -> None:
    broken = types.ModuleType("adapters.channels._test_broken")  # ADAPTER missing
    sys.modules[broken.__name__] = broken
    try:
        registry = Registry(modules={"webchat": "adapters.channels.webchat", "broken": broken.__name__,
                                     "absent": "adapters.channels._test_absent"})
        with pytest.raises(UnknownAdapter):
            registry.get("sms-over-carrier-pigeon")
        with pytest.raises(AdapterUnavailable, match="no module-level ADAPTER"):
            registry.get("broken")
        with pytest.raises(AdapterUnavailable, match="No module named"):
            registry.get("absent")
        with pytest.raises(AdapterUnavailable):  # remembered: not re-imported on every request
            registry.get("absent")
        assert set(registry.available()) == {"webchat"}
        assert set(registry.failures()) == {"broken", "absent"}
    finally:
        del sys.modules[broken.__name__]


def test_an_adapter_that_does_not_fit_the_protocol_is_unavailable() -> None:
    odd = types.ModuleType("adapters.channels._test_odd")
    odd.ADAPTER = types.SimpleNamespace(channel="odd", max_body_bytes=0, handshake=print, verify=print,
                                        parse=print, ack=print)
    sys.modules[odd.__name__] = odd
    try:
        with pytest.raises(AdapterUnavailable, match="does not fit"):
            Registry(modules={"odd": odd.__name__}).get("odd")
    finally:
        del sys.modules[odd.__name__]
