"""Send credentials and templates per account, read from the accounts file (I/O at start).

The egress reads the same file as the ingress (``config/accounts.example.toml`` documents it)
but only what sending needs, so neither process needs the other's secrets in its environment:

    [accounts.options.send]
    access_token_env = "ACME_WA_TOKEN"   # NAME_env = "VAR": the value of $VAR (egress only)
    rate_per_s = 80                      # the provider's throughput for this account
    [[accounts.options.templates]]
    name = "order_update"  language = "en"  category = "utility"  parameters = 2
    body = "Your order {{1}} ships on {{2}}."   content_sid = "HX..." (Twilio) / template_id (WeChat)

An account without ``options.send`` is not sendable (its messages fail with ``unknown_account``),
except web chat (the egress is its own provider). A ``*_env`` variable that is unset is a start-up
error naming the account, as the ingress does for its secrets.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from egress.model import SendAccount
from egress.providers import CHANNELS
from egress.templates import Template

DEFAULT_RATES = {"whatsapp": 80.0, "messenger": 40.0, "instagram": 40.0, "twilio": 50.0, "telegram": 30.0,
                 "line": 100.0, "viber": 50.0, "wechat": 50.0, "rbm": 50.0, "email": 20.0, "webchat": 1000.0}


class SendAccountsError(ValueError):
    """The accounts file cannot be read, or a send credential is missing."""


class SendAccounts:
    """Sendable accounts, found by (channel, account id) as a MessageSent names them."""

    def __init__(self, accounts: list[SendAccount]) -> None:
        self._by: dict[tuple[str, str], SendAccount] = {}
        for a in accounts:
            for channel in CHANNELS[a.provider]:
                for name in (a.account_id, *a.aliases):
                    self._by.setdefault((channel, name.lower()), a)
        self.all = tuple(accounts)

    def find(self, channel: str, account_id: str) -> SendAccount | None:
        return self._by.get((channel, (account_id or "").lower()))


def load(path: Path | str, environ: Mapping[str, str] | None = None) -> SendAccounts:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SendAccountsError(f"{path}: {e}") from None
    return parse(raw, os.environ if environ is None else environ, str(path))


def parse(raw: Mapping[str, Any], environ: Mapping[str, str], source: str = "<accounts>") -> SendAccounts:
    out: list[SendAccount] = []
    problems: list[str] = []
    for i, entry in enumerate(raw.get("accounts") or []):
        if not isinstance(entry, dict) or entry.get("enabled", True) is False:
            continue
        provider = entry.get("adapter")
        where = f"accounts[{i}] ({entry.get('tenant')}/{provider}/{entry.get('account_id')})"
        if provider not in CHANNELS:
            continue
        options = entry.get("options") or {}
        send = options.get("send")
        if send is None and provider != "webchat":
            continue
        resolved = _resolve(dict(send or {}), environ, where, problems)
        try:
            templates = tuple(_template(t) for t in options.get("templates") or [])
        except (TypeError, ValueError, KeyError) as e:
            problems.append(f"{where}: templates: {e}")
            continue
        rate = float(resolved.pop("rate_per_s", DEFAULT_RATES[provider]))
        out.append(SendAccount(tenant_id=str(entry["tenant"]), provider=provider, account_id=str(entry["account_id"]),
                               send=resolved, templates=templates, rate_per_s=rate,
                               burst=int(resolved.pop("burst", max(1, int(rate)))),
                               aliases=tuple(str(a) for a in options.get("aliases") or ())))
    if problems:
        raise SendAccountsError(f"{source}:\n  " + "\n  ".join(problems))
    return SendAccounts(out)


def _resolve(send: dict[str, Any], environ: Mapping[str, str], where: str, problems: list[str]) -> dict[str, Any]:
    out = {}
    for k, v in send.items():
        if k.endswith("_env") and isinstance(v, str):
            value = environ.get(v, "")
            if not value:
                problems.append(f"{where}: options.send.{k}: environment variable {v} is not set or empty")
            out[k[:-4]] = value
        else:
            out[k] = v
    return out


def _template(t: Mapping[str, Any]) -> Template:
    return Template(name=str(t["name"]), language=str(t.get("language", "en")),
                    category=str(t.get("category", "utility")),
                    parameters=int(t.get("parameters", 0)), body=str(t.get("body", "")),
                    provider_id=t.get("content_sid") or t.get("template_id"))
