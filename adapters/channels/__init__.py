"""The adapter registry: adapter name (the URL's first segment) -> module exposing ``ADAPTER``.

Adding a channel is one module in this package plus one line here. Modules are imported lazily
and one at a time, so a module that is missing or broken makes only its own routes answer 404
("adapter unavailable"), never the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from adapters.base import Adapter

REGISTRY: dict[str, str] = {
    "whatsapp": "adapters.channels.whatsapp",
    "messenger": "adapters.channels.messenger",
    "instagram": "adapters.channels.instagram",
    "twilio": "adapters.channels.twilio",
    "telegram": "adapters.channels.telegram",
    "line": "adapters.channels.line",
    "viber": "adapters.channels.viber",
    "wechat": "adapters.channels.wechat",
    "rbm": "adapters.channels.rbm",
    "email": "adapters.channels.email",
    "webchat": "adapters.channels.webchat",
}

_REQUIRED_METHODS = ("handshake", "verify", "parse", "ack")


class UnknownAdapter(KeyError):
    """No adapter of that name in the registry."""


class AdapterUnavailable(RuntimeError):
    """The adapter is registered but its module does not import or its ``ADAPTER`` is unfit."""


class Registry:
    """Loads adapters on first use and remembers successes and failures."""

    def __init__(self, modules: dict[str, str] | None = None, adapters: dict[str, Any] | None = None) -> None:
        self.modules = dict(REGISTRY if modules is None else modules)
        self._loaded: dict[str, Adapter] = dict(adapters or {})
        self._failed: dict[str, str] = {}

    def names(self) -> frozenset[str]:
        return frozenset(self.modules) | frozenset(self._loaded)

    def get(self, name: str) -> Adapter:
        """The adapter ``name``; raises ``UnknownAdapter`` or ``AdapterUnavailable``."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self.modules:
            raise UnknownAdapter(name)
        if name in self._failed:
            raise AdapterUnavailable(self._failed[name])
        try:
            adapter = _import(self.modules[name])
        except AdapterUnavailable as e:
            self._failed[name] = str(e)
            raise
        self._loaded[name] = adapter
        return adapter

    def available(self) -> dict[str, Adapter]:
        """Every adapter that loads (the failures are remembered, see ``failures``)."""
        out = {}
        for name in sorted(self.names()):
            try:
                out[name] = self.get(name)
            except (UnknownAdapter, AdapterUnavailable):
                continue
        return out

    def failures(self) -> dict[str, str]:
        return dict(self._failed)


def _import(module_path: str) -> Adapter:
    try:
        module = importlib.import_module(module_path)
    except Exception as e:  # ImportError, or an error raised while the module runs
        raise AdapterUnavailable(f"{module_path}: {e!r}") from None
    adapter = getattr(module, "ADAPTER", None)
    if adapter is None:
        raise AdapterUnavailable(f"{module_path} has no module-level ADAPTER")
    missing = [m for m in _REQUIRED_METHODS if not callable(getattr(adapter, m, None))]
    limit = getattr(adapter, "max_body_bytes", None)
    if missing or not isinstance(getattr(adapter, "channel", None), str) or not isinstance(limit, int) or limit <= 0:
        raise AdapterUnavailable(f"{module_path}.ADAPTER does not fit the Adapter protocol (missing {missing}, "
                                 f"channel/max_body_bytes must be str/positive int)")
    return adapter


def load(name: str) -> Adapter:
    """The adapter ``name`` from the default registry (a fresh import check each call)."""
    return Registry().get(name)
