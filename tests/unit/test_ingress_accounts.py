"""The accounts file: validation with clear errors, secrets from the environment, the example."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.accounts import Accounts, AccountsError, load
from adapters.base import Account
from adapters.channels import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "accounts.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_example_loads_with_one_account_per_channel() -> None:
    accounts = load(EXAMPLE, environ={}, known_adapters=set(REGISTRY))
    assert {a.channel for a in accounts} == set(REGISTRY)
    assert accounts.tenants == {"acme", "globex"}
    wa = accounts.get("whatsapp", "106540352242922")
    assert wa is not None and wa.tenant_id == "acme" and wa.verify_token == "demo-meta-verify-token"
    web = accounts.get("webchat", "acme-web")
    assert web.secrets == ("demo-webchat-token", "demo-webchat-token-next")
    assert web.options["user_token_secrets"] == ["demo-webchat-login-key-0123456789abcdef"]


def test_secrets_are_literal_or_read_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, """
[[accounts]]
tenant = "acme"
adapter = "telegram"
account_id = "7012345678"
secrets = ["literal", { env = "TG_NEXT" }]
verify_token = { env = "TG_VERIFY" }
[accounts.options]
nested = { deeper = [{ env = "TG_OPT" }, "plain"] }
""")
    accounts = load(path, environ={"TG_NEXT": "from-env", "TG_VERIFY": "vt", "TG_OPT": "opt"})
    account = accounts.get("telegram", "7012345678")
    assert account == Account("acme", "telegram", "7012345678", secrets=("literal", "from-env"),
                              verify_token="vt", options={"nested": {"deeper": ["opt", "plain"]}})


def test_every_problem_is_reported_with_its_account(tmp_path: Path) -> None:
    path = write(tmp_path, """
[[accounts]]
tenant = "acme"
adapter = "telegram"
account_id = "1"
secrets = [{ env = "MISSING_ONE" }]

[[accounts]]
tenant = "acme"
adapter = "telegram"
account_id = "1"
secrets = ["x"]

[[accounts]]
tenant = "acme"
adapter = "pigeon"
account_id = "2"
""")
    with pytest.raises(AccountsError) as e:
        load(path, environ={}, known_adapters=set(REGISTRY))
    msg = str(e.value)
    assert "accounts[0] (acme/telegram/1): secrets[0]: environment variable MISSING_ONE is not set" in msg
    assert "accounts[1] (acme/telegram/1): same adapter and account_id as accounts[0]" in msg
    assert "accounts[2] (acme/pigeon/2): unknown adapter 'pigeon'" in msg


@pytest.mark.parametrize("entry, fragment", [
    ('tenant = "a|b"\nadapter = "webchat"\naccount_id = "w"', "accounts[0] (a|b/webchat/w).tenant"),
    ('tenant = "a"\nadapter = "webchat"\naccount_id = "w/x"', ".account_id"),
    ('tenant = "a"\nadapter = "webchat"\naccount_id = "w"\nsecrets = ["1", "2", "3"]', ".secrets"),
    ('tenant = "a"\nadapter = "webchat"\naccount_id = "w"\nsecrets = [""]', "empty string"),
    ('tenant = "a"\nadapter = "webchat"\naccount_id = "w"\nsecret = "typo"', ".secret: Extra inputs"),
    ('adapter = "webchat"\naccount_id = "w"', ".tenant: Field required"),
])
def test_invalid_entries_name_the_field(tmp_path: Path, entry: str, fragment: str) -> None:
    with pytest.raises(AccountsError) as e:
        load(write(tmp_path, f"[[accounts]]\n{entry}\n"), environ={})
    assert fragment in str(e.value)


def test_a_missing_file_and_bad_toml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(AccountsError, match="accounts file not found"):
        load(tmp_path / "nope.toml", environ={})
    with pytest.raises(AccountsError, match=r"not valid TOML: .*line 1"):
        load(write(tmp_path, "[[accounts]\n"), environ={})


def test_disabled_accounts_are_not_served(tmp_path: Path) -> None:
    path = write(tmp_path, '[[accounts]]\ntenant = "a"\nadapter = "webchat"\naccount_id = "w"\nenabled = false\n')
    assert load(path, environ={}).get("webchat", "w") is None


def test_accounts_refuse_duplicates_when_built_directly() -> None:
    a = Account("t", "webchat", "w")
    with pytest.raises(AccountsError):
        Accounts([a, a])
