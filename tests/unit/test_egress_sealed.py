"""Sealed replies (crypto-shredding on): the egress opens them to send, keeps the log's tokens in
its delivery events, and refuses what it cannot open (no keys, or the customer was erased)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from adapters.sealing import Sealer
from egress import accounts as send_accounts
from egress.model import Refusal
from egress.plan import plan
from egress.providers import PROVIDERS
from egress.runner import Egress
from parley.privacy import crypto
from parley.privacy.keyring import Keyring
from parley.settings import EgressSettings, KafkaSettings, PrivacySettings
from tests.integration.test_egress_delivery import ACCOUNTS, make_sent


def privacy(tmp: Path) -> PrivacySettings:
    return PrivacySettings(enabled=True, master_key=SecretStr(crypto.new_master_key()),
                           keys_url=f"sqlite:///{tmp / 'keys.db'}", refresh_s=0.0)


def egress_with(p: PrivacySettings | None) -> Egress:
    s = EgressSettings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"), **({"privacy": p} if p else {}))
    return Egress(s, send_accounts.parse(ACCOUNTS, {}))


def test_a_sealed_reply_is_opened_to_send_and_its_events_keep_the_token(tmp_path) -> None:
    p = privacy(tmp_path)
    plain = make_sent("telegram", 1)
    sealed = Sealer(Keyring(p)).message(plain)
    assert sealed["text"] is None and sealed["recipient"]["id"].startswith("~")
    egress = egress_with(p)
    opened = egress._open(sealed)
    assert opened["text"] == plain["text"] and opened["recipient"]["id"] == "123456"
    account = egress.accounts.find("telegram", "7012345678")
    decided = plan(opened, account, ())
    [call] = PROVIDERS["telegram"].requests(account, decided, opened)
    assert call.json["chat_id"] == "123456" and call.json["text"] == plain["text"]


def test_sealed_replies_are_refused_without_keys_or_after_an_erasure(tmp_path) -> None:
    p = privacy(tmp_path)
    ring = Keyring(p)
    sealed = Sealer(ring).message(make_sent("telegram", 2))
    refused = egress_with(None)._open(sealed)
    assert isinstance(refused, Refusal) and refused.code == "sealed"
    ring.store.erase("acme", [sealed["privacy"]["subject_id"]], sealed["envelope"]["occurred_at"])
    erased = egress_with(p)._open(sealed)
    assert isinstance(erased, Refusal) and erased.code == "erased"


def test_old_deliveries_and_stale_windows_are_forgotten() -> None:
    import time

    from egress.state import Delivery

    egress = egress_with(None)
    now = int(time.time() * 1000)
    old, recent = now - 3 * 24 * 3600 * 1000, now - 60_000
    egress.deliveries = {f"old-{i}": Delivery(1, 1, "sent", "x", old) for i in range(100_000)}
    egress.deliveries["recent"] = Delivery(1, 1, "sent", "x", recent)
    egress.windows = {f"w{i}": (old - 9 * 24 * 3600 * 1000,) for i in range(100_000)}
    egress.windows["fresh"] = (recent,)
    egress._prune()
    assert list(egress.deliveries) == ["recent"] and list(egress.windows) == ["fresh"]
