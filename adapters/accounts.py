"""Channel accounts: which tenant owns each account on each channel, and its secrets.

Loaded once at start from a TOML file (``IngressSettings.accounts_file``; documented example:
``config/accounts.example.toml``), validated with pydantic; every problem is reported at once,
with the account it belongs to. The file::

    [[accounts]]
    tenant = "acme"                  # tenant id: letters, digits, _ . - (no "|": it is a key separator)
    adapter = "whatsapp"             # an adapter of adapters/channels (the URL's first segment)
    account_id = "106540352242922"   # the channel's account id (the URL's second segment)
    secrets = ["current", { env = "ACME_META_APP_SECRET_NEXT" }]   # at most two: rotation
    verify_token = { env = "ACME_META_VERIFY_TOKEN" }               # optional
    [accounts.options]               # optional, adapter-specific
    ...

Each account is served at ``/webhooks/<adapter>/<account_id>``. A secret (in ``secrets``,
``verify_token`` or anywhere in ``options``) is either a literal string or ``{ env = "NAME" }``,
read from the environment at load time (a missing or empty variable is an error). Two secrets are
accepted at once while a key is rotated: list the current one first and the next one second, then
drop the old one.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.base import Account

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9+@][A-Za-z0-9_.:@+\-]{0,127}$"


class AccountsError(ValueError):
    """The accounts file is missing, not TOML, or does not validate; the message says where."""


class EnvRef(BaseModel):
    """A secret read from the environment variable ``env`` at load time."""

    model_config = ConfigDict(extra="forbid")
    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


Secret = str | EnvRef


class AccountEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(pattern=ID_PATTERN)
    adapter: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    account_id: str = Field(pattern=ACCOUNT_ID_PATTERN)
    secrets: list[Secret] = Field(default_factory=list, max_length=2)
    verify_token: Secret | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("secrets")
    @classmethod
    def _non_empty_literals(cls, v: list[Secret]) -> list[Secret]:
        if any(isinstance(s, str) and not s for s in v):
            raise ValueError("a secret is an empty string")
        return v


class AccountsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accounts: list[AccountEntry] = Field(default_factory=list)


class Accounts:
    """The accounts by (adapter, account id), and the set of tenants."""

    def __init__(self, accounts: list[Account] | tuple[Account, ...] = ()) -> None:
        self._by_key: dict[tuple[str, str], Account] = {}
        for a in accounts:
            if (a.channel, a.account_id) in self._by_key:
                raise AccountsError(f"duplicate account {a.channel}/{a.account_id}")
            self._by_key[(a.channel, a.account_id)] = a
        self.tenants = frozenset(a.tenant_id for a in accounts)

    def get(self, adapter: str, account_id: str) -> Account | None:
        return self._by_key.get((adapter, account_id))

    def owner(self, adapter: str, named: str) -> Account | None:
        """The account of ``adapter`` a payload naming ``named`` belongs to (see ``Account.matches``):
        its own id first, then an alias, then an ``@domain`` account."""
        exact = self._by_key.get((adapter, named))
        if exact is not None:
            return exact
        candidates = [a for (name, _), a in self._by_key.items() if name == adapter and a.matches(named)]
        candidates.sort(key=lambda a: a.account_id.startswith("@"))  # aliases before domains
        return candidates[0] if candidates else None

    def adapters(self) -> set[str]:
        return {adapter for adapter, _ in self._by_key}

    def __iter__(self) -> Iterator[Account]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


def load(path: Path | str, environ: Mapping[str, str] | None = None,
         known_adapters: frozenset[str] | set[str] | None = None) -> Accounts:
    """Read, validate and resolve the accounts file; raise ``AccountsError`` listing every problem.

    ``environ`` resolves ``{ env = "NAME" }`` secrets (the process environment by default);
    ``known_adapters``, when given, is the set of adapter names an account may use.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AccountsError(f"{path}: accounts file not found (see config/accounts.example.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise AccountsError(f"{path}: not valid TOML: {e}") from None
    return parse(raw, source=str(path), environ=os.environ if environ is None else environ,
                 known_adapters=known_adapters)


def parse(raw: Mapping[str, Any], *, source: str = "<accounts>", environ: Mapping[str, str],
          known_adapters: frozenset[str] | set[str] | None = None) -> Accounts:
    """Validate an already-parsed TOML document (see ``load``)."""
    try:
        doc = AccountsFile.model_validate(raw)
    except ValidationError as e:
        raise AccountsError(f"{source}: invalid accounts file:\n" + _describe(e, raw)) from None
    problems: list[str] = []
    out: list[Account] = []
    seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(doc.accounts):
        where = f"accounts[{i}] ({entry.tenant}/{entry.adapter}/{entry.account_id})"
        if known_adapters is not None and entry.adapter not in known_adapters:
            problems.append(f"{where}: unknown adapter {entry.adapter!r}; known: {', '.join(sorted(known_adapters))}")
        key = (entry.adapter, entry.account_id)
        if key in seen:
            problems.append(f"{where}: same adapter and account_id as accounts[{seen[key]}]")
        seen.setdefault(key, i)
        account = _resolve(entry, where, environ, problems)
        if account is not None and entry.enabled:
            out.append(account)
    if problems:
        raise AccountsError(f"{source}: invalid accounts file:\n  " + "\n  ".join(problems))
    return Accounts(out)


def _resolve(entry: AccountEntry, where: str, environ: Mapping[str, str], problems: list[str]) -> Account | None:
    before = len(problems)
    secrets = tuple(_secret(s, f"{where}: secrets[{i}]", environ, problems) for i, s in enumerate(entry.secrets))
    token = _secret(entry.verify_token, f"{where}: verify_token", environ, problems) if entry.verify_token else None
    options = _resolve_options(entry.options, f"{where}: options", environ, problems)
    if len(problems) > before:
        return None
    return Account(tenant_id=entry.tenant, channel=entry.adapter, account_id=entry.account_id,
                   secrets=secrets, verify_token=token, options=options)


def _secret(s: Secret, where: str, environ: Mapping[str, str], problems: list[str]) -> str:
    if isinstance(s, str):
        return s
    value = environ.get(s.env, "")
    if not value:
        problems.append(f"{where}: environment variable {s.env} is not set or empty")
    return value


def _resolve_options(value: Any, where: str, environ: Mapping[str, str], problems: list[str]) -> Any:
    """Replace every ``{ env = "NAME" }`` table inside the options by the variable's value."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return _secret(EnvRef(env=value["env"]), where, environ, problems) if value["env"] else ""
        return {k: _resolve_options(v, f"{where}.{k}", environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_options(v, f"{where}[{i}]", environ, problems) for i, v in enumerate(value)]
    return value


def _describe(e: ValidationError, raw: Mapping[str, Any]) -> str:
    lines = []
    for err in e.errors():
        loc = err["loc"]
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "accounts" and isinstance(loc[1], int):
            try:
                entry = raw["accounts"][loc[1]]
                label = f"{entry.get('tenant', '?')}/{entry.get('adapter', '?')}/{entry.get('account_id', '?')}"
                where = f"accounts[{loc[1]}] ({label})" + "".join(f".{p}" for p in loc[2:])
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)
