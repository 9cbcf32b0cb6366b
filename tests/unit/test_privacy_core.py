"""Crypto-shredding's parts: sealing, the key store and its caches, events sealed and opened,
erasure plans, retention cuts (no broker)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters.sealing import Sealer
from parley.app.synthetic import events as f
from parley.privacy import crypto, erasure, retention
from parley.privacy.crypto import CONTENT, PROFILE, KeyRef, Unreadable
from parley.privacy.keyring import DAY_MS, Keyring, period_of
from parley.privacy.seal import ERASED, EXPIRED, OPEN, Opener, seal_raw
from parley.settings import PrivacySettings
from schemas.codec import Codec
from schemas.events import derive_id, envelope, make
from streams.identity import logic as identity

T = f.T0
TOKEN_ID = "~" + "a" * 32


def settings(tmp: Path, **kw) -> PrivacySettings:
    return PrivacySettings(enabled=True, master_key=SecretStr(kw.pop("master", None) or crypto.new_master_key()),
                           keys_url=f"sqlite:///{tmp / 'keys.db'}", refresh_s=0.0, **kw)


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    return Keyring(settings(tmp_path))


# --- crypto ----------------------------------------------------------------------------------

@pytest.mark.parametrize("subject", ["0b1c2d3e-4f50-5a6b-8c7d-8e9fa0b1c2d3", "c-1", "~tenant", "é" * 100])
def test_sealed_text_names_its_key_and_opens(subject: str) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(crypto.new_key())
    ref = KeyRef("acme", subject, CONTENT, 20_000, 3)
    sealed = crypto.seal_text(aead, ref, b"hello")
    assert sealed.startswith("ps1.") and crypto.text_ref("acme", sealed) == ref
    assert crypto.unseal(aead, "acme", crypto.text_bytes(sealed)) == b"hello"
    assert crypto.seal_text(aead, ref, b"hello") != sealed  # a fresh nonce each time


def test_a_sealed_value_is_bound_to_its_tenant_and_header() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(crypto.new_key())
    data = crypto.seal(aead, KeyRef("acme", "c-1", PROFILE, 0, 0), b"secret")
    with pytest.raises(Unreadable):
        crypto.unseal(aead, "globex", data)  # same key, another tenant: the tag fails
    tampered = bytearray(data)
    tampered[2] ^= 1  # the header's period
    with pytest.raises(Unreadable):
        crypto.unseal(aead, "acme", bytes(tampered))
    with pytest.raises(Unreadable):
        crypto.unseal(AESGCM(crypto.new_key()), "acme", data)


def test_tokens_are_deterministic_per_key_and_domain() -> None:
    k1, k2 = crypto.new_key(), crypto.new_key()
    t = crypto.token(k1, "id", "phone:+33612345678")
    assert t == crypto.token(k1, "id", "phone:+33612345678") and len(t) == 32 and int(t, 16) >= 0
    assert t != crypto.token(k2, "id", "phone:+33612345678")
    assert t != crypto.token(k1, "ref", "phone:+33612345678")


def test_a_wrapped_key_unwraps_only_under_its_id_and_master() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    master, key = AESGCM(crypto.master_key(crypto.new_master_key())), crypto.new_key()
    wrapped = crypto.wrap(master, b"acme\0c-1", key)
    assert crypto.unwrap(master, b"acme\0c-1", wrapped) == key
    with pytest.raises(Unreadable):
        crypto.unwrap(master, b"acme\0c-2", wrapped)
    with pytest.raises(ValueError):
        crypto.master_key(base64.b64encode(b"short").decode())


# --- the key store and the caches --------------------------------------------------------------

def test_two_processes_seal_under_the_same_key(tmp_path: Path) -> None:
    s = settings(tmp_path)
    a, b = Keyring(s), Keyring(s)
    aead_a, ref = a.for_sealing("acme", "c-1", CONTENT, T)
    aead_b, ref_b = b.for_sealing("acme", "c-1", CONTENT, T + 1000)
    assert ref == ref_b == KeyRef("acme", "c-1", CONTENT, period_of(T), 0)
    sealed = crypto.seal(aead_a, ref, b"x")
    assert crypto.unseal(aead_b, "acme", sealed) == b"x"
    assert a.for_sealing("acme", "c-1", CONTENT, T + DAY_MS)[1].period == period_of(T) + 1  # a new key each day


def test_erasure_destroys_the_keys_and_every_cache_forgets_them(tmp_path: Path) -> None:
    s = settings(tmp_path)
    writer, reader = Keyring(s), Keyring(s)
    _, ref = writer.for_sealing("acme", "c-1", PROFILE)
    assert reader.for_opening(ref) is not None
    wrapped = writer.store.wrapped("acme", "c-1", PROFILE, 0, 0)[0]
    assert writer.store.erase("acme", ["c-1"], T) == {"c-1": 1}
    assert reader.for_opening(ref) is None and reader.state(ref) == "erased"  # its cache followed the log
    _, again = writer.for_sealing("acme", "c-1", PROFILE)
    assert again.gen == 1  # written again after the erasure: new keys
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))
    assert wrapped.encode() not in blob and base64.b64decode(wrapped) not in blob  # gone from the files


def test_expiry_destroys_old_content_keys_only(ring: Keyring) -> None:
    _, old = ring.for_sealing("acme", "c-1", CONTENT, T)
    _, new = ring.for_sealing("acme", "c-1", CONTENT, T + 40 * DAY_MS)
    _, profile = ring.for_sealing("acme", "c-1", PROFILE)
    assert ring.store.expire("acme", period_of(T) + 1, T + 40 * DAY_MS) == 1
    assert ring.for_opening(old) is None and ring.state(old) == "expired"
    assert ring.for_opening(new) is not None and ring.for_opening(profile) is not None


@pytest.mark.parametrize("as_of_days, days, kept_from_day", [
    (30.5, 30, 0),   # day 0 ended 29.5 days before: kept
    (31.0, 30, 1),   # day 0 ended 30 days before: shredded
    (40.2, 7, 33),
    (1.0, 1, 0),
])
def test_retention_cut_in_event_time(as_of_days: float, days: int, kept_from_day: int) -> None:
    as_of = int(as_of_days * DAY_MS)
    assert retention.cut(as_of, days) == kept_from_day


def test_retention_runs_per_tenant(ring: Keyring) -> None:
    s = ring.settings.model_copy(update={"retention_days": 30, "tenant_retention_days": {"globex": 0}})
    _, acme_ref = ring.for_sealing("acme", "c-1", CONTENT, T)
    _, globex_ref = ring.for_sealing("globex", "c-2", CONTENT, T)
    done = retention.run(s, ring.store, ["acme", "globex"], lambda t: T + 45 * DAY_MS, T)
    assert [(e.tenant, e.keys) for e in done] == [("acme", 1)]
    assert ring.for_opening(acme_ref) is None and ring.for_opening(globex_ref) is not None


# --- events sealed and opened -----------------------------------------------------------------

def _message() -> dict:
    sender = f.identity("whatsapp", "33612345678", phone="+33612345678", name="Zoltan Kovacs")
    e = f.received("acme", sender, "Re: Order 4455667 never arrived", T, subject="Order 4455667")
    e["channel_message_id"] = "wamid.opaque-1"  # providers' ids stay readable (docs/PRIVACY.md)
    e["attachments"] = [{"kind": "image", "media_id": "m-1", "url": "https://cdn.example/p.jpg",
                         "mime_type": "image/jpeg", "size_bytes": 10, "sha256": "ab", "caption": "my parcel",
                         "filename": "p.jpg"}]
    return e


def test_a_sealed_message_keeps_only_tokens_and_what_routing_needs(ring: Keyring) -> None:
    plain = _message()
    sealed = Sealer(ring).message(plain)
    wire = Codec().encode(sealed)
    for secret in (b"33612345678", b"Zoltan", b"4455667", b"cdn.example", b"my parcel", b"p.jpg"):
        assert secret not in wire, secret
    assert sealed["sender"]["id"].startswith("~") and sealed["sender"]["channel"] == "whatsapp"
    assert sealed["envelope"]["partition_key"] == f"acme|whatsapp|{sealed['sender']['id']}"
    assert sealed["attachments"][0]["kind"] == "image" and sealed["attachments"][0]["url"] is None
    p = sealed["privacy"]
    assert [k.split(":")[0] for k in p["keys"]] == ["phone", "channel"]
    # the customer is the one the identity processor gives the tokens: a pure function of them
    assert p["subject_id"] == identity.new_customer_id("acme", p["keys"][0])
    assert p["subject_token"] and p["ref_tokens"]


def test_opening_restores_the_message_until_the_subject_is_erased(ring: Keyring) -> None:
    plain = _message()
    sealed = Codec().decode(Codec().encode(Sealer(ring).message(plain)))
    opened = Opener(ring).open(sealed)
    for k in ("text", "subject", "attachments"):
        assert opened[k] == plain[k], k
    assert opened["sender"]["id"] == "33612345678" and opened["sender"]["display_name"] == "Zoltan Kovacs"
    assert opened["sender"]["token"] == sealed["sender"]["id"]
    assert opened["_privacy"] == {"subject": sealed["privacy"]["subject_id"], "identity": OPEN, "content": OPEN}
    ring.store.erase("acme", [sealed["privacy"]["subject_id"]], T)
    gone = Opener(ring).open(sealed)
    assert gone["text"] is None and gone["subject"] is None and gone["attachments"] == []
    assert gone["sender"]["id"] is None and gone["sender"]["token"] == sealed["sender"]["id"]
    assert gone["_privacy"]["identity"] == ERASED and gone["_privacy"]["content"] == ERASED


def test_expired_content_leaves_the_identity_readable(ring: Keyring) -> None:
    sealed = Sealer(ring).message(_message())
    ring.store.expire("acme", period_of(T) + 1, T)
    opened = Opener(ring).open(sealed)
    assert opened["text"] is None and opened["_privacy"]["content"] == EXPIRED
    assert opened["sender"]["display_name"] == "Zoltan Kovacs" and opened["_privacy"]["identity"] == OPEN


def test_a_raw_body_of_two_subjects_needs_both_keys(ring: Keyring) -> None:
    env = envelope("RawRequest", event_id="raw-1", occurred_at=T, tenant_id="acme", partition_key="acme|whatsapp|1",
                   producer="test")
    raw = make("RawRequest", env, channel="webchat", method="POST", path="/webhooks/webchat/1", headers={},
               body=b'{"from": "33612345678"}', query="openid=o-77", remote_addr="10.0.0.7")
    sealed = seal_raw(ring, raw, ["c-1", "c-2"])
    assert b"33612345678" not in sealed["body"] and sealed["remote_addr"] is None and sealed["query"] == ""
    opened = Opener(ring).open(sealed)
    assert (opened["body"], opened["query"], opened["remote_addr"]) == (raw["body"], raw["query"], raw["remote_addr"])
    provider = seal_raw(ring, {**raw, "channel": "whatsapp", "query": ""}, ["c-1"])
    assert provider["remote_addr"] == "10.0.0.7" and provider["privacy"]["data"] is None  # a provider's address
    ring.store.erase("acme", ["c-2"], T)
    opened = Opener(ring).open(sealed)
    assert opened["body"] == b"" and opened["_privacy"]["content"] == ERASED


def test_context_is_sealed_under_the_profile_key(ring: Keyring) -> None:
    env = envelope("CustomerContextUpdated", event_id="ctx-1", occurred_at=T, tenant_id="acme",
                   partition_key="acme|c-1", producer="test")
    ctx = make("CustomerContextUpdated", env, customer_id="c-1", source="crm", name="Zoltan Kovacs", tier="vip",
               attributes={"address": "12 rue des Lilas"})
    sealed = Sealer(ring).context(ctx)
    assert sealed["tier"] == "vip" and sealed["name"] is None and sealed["attributes"] == {}
    assert b"Lilas" not in Codec().encode(sealed)
    assert Opener(ring).open(sealed)["attributes"] == {"address": "12 rue des Lilas"}


def test_replies_to_a_token_identity_keep_it(ring: Keyring) -> None:
    sealed = Sealer(ring).message(f.sent("acme", {**f.identity("whatsapp", TOKEN_ID)}, "Hello", T, customer_id="c-9"))
    assert sealed["recipient"]["id"] == TOKEN_ID and sealed["privacy"]["subject_id"] == "c-9"


# --- the erasure plan -------------------------------------------------------------------------

def test_an_erasure_reaches_every_stage_that_holds_the_subject() -> None:
    idents = {"c-1": ["channel:whatsapp:~aaa", "phone:~ppp"], "c-2": ["channel:email:~eee", "email:~mmm"]}
    planned = erasure.plan("acme", "c-1", idents, "e-1", T)
    where = [(t.name, k) for t, k, _ in planned]
    assert where == [("parley.messages", "acme|whatsapp|~aaa"), ("parley.messages", "acme|email|~eee"),
                     ("parley.identity.commands", "acme"), ("parley.conversation.messages", "acme|c-1"),
                     ("parley.conversation.messages", "acme|c-2")]
    graph = planned[2][2]
    assert graph["customer_ids"] == ["c-1", "c-2"] and len(graph["identity_keys"]) == 4
    assert erasure.plan("acme", "c-1", idents, "e-1", T) == planned  # the same ids again
    for _, _, e in planned:
        Codec().encode(e)
    assert erasure.matches(b"acme|whatsapp|acct|~aaa", ["~aaa"]) and not erasure.matches(b"acme|x", ["~aaa"])


def test_the_evidence_holds_no_personal_data() -> None:
    e = erasure.Erasure(derive_id("x"), "acme", "c-1", ["c-1"], T, T + 5, keys_destroyed=3, steps=["destroyed 3 keys"])
    done = erasure.completed(e, "ticket-42", "customer request")
    assert Codec().decode(Codec().encode(done))["keys_destroyed"] == 3
