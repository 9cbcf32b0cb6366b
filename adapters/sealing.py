"""Sealing at the ingress and the agent API, before anything reaches Kafka (docs/PRIVACY.md).

For each message the data subject is named *before* any customer id exists: it is the customer
the identity processor will give the message, a pure function of the channel identity
(``streams.identity.logic``: the intrinsic identity key, here as a token, names the customer),
or the customer id an agent's reply carries. The identity keys the processor links by are
computed from the plaintext identity, exactly as it would, and shipped as tokens; so are the
normalised subject and the order references threads are matched on (``streams.threads.logic``).
Then ``parley.privacy.seal`` seals the fields. A sealer is used only when
``PARLEY_PRIVACY__ENABLED`` is true.
"""

from __future__ import annotations

from typing import Any

from parley.privacy import seal
from parley.privacy.keyring import Keyring
from parley.privacy.seal import Party
from streams.identity import logic as identity
from streams.threads.logic import normalise_subject, references

MEMO = 100_000  # channel identities remembered per process (a webhook's sender writes again)


class Sealer:
    """Seals the events of one process with its keyring."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._parties: dict[tuple[Any, ...], Party] = {}
        self._identities: dict[tuple[Any, ...], tuple[Any, str]] = {}  # the last sealing of each identity

    # --- tokens ------------------------------------------------------------------------------

    def key_token(self, tenant: str, key: str) -> str:
        """An identity key as a token, its kind (and channel) kept: ``phone:~..``, ``channel:sms:~..``."""
        kind, _, rest = key.partition(":")
        tok = self.keyring.token(tenant, "id", key)
        if kind == "channel":
            return f"channel:{rest.partition(':')[0]}:{seal.ID_PREFIX}{tok}"
        return f"{kind}:{seal.ID_PREFIX}{tok}"

    def party(self, tenant: str, ident: dict[str, Any], customer_id: str | None = None) -> Party:
        """The subject and tokens of a channel identity (remembered)."""
        memo = (tenant, ident.get("channel"), ident.get("id"), ident.get("phone_e164"), ident.get("email"),
                ident.get("login_id"), customer_id)
        hit = self._parties.get(memo)
        if hit is None and _is_token(ident.get("id")) and customer_id:  # a reply to an identity read sealed
            return Party(customer_id, ident["id"], ())
        if hit is None:
            keys = tuple(self.key_token(tenant, k.key) for k in identity.identity_keys(ident))
            own = self.key_token(tenant, f"channel:{ident['channel']}:{ident['id']}")
            hit = Party(customer_id or identity.new_customer_id(tenant, keys[0]), own.rsplit(":", 1)[1], keys)
            self.keyring.note_identities(tenant, hit.subject, keys)
            if len(self._parties) >= MEMO:
                self._parties.clear()
            self._parties[memo] = hit
        return hit

    # --- events ------------------------------------------------------------------------------

    def message(self, event: dict[str, Any]) -> dict[str, Any]:
        """A MessageReceived, MessageSent or DeliveryStatusChanged, sealed."""
        env = event["envelope"]
        tenant = env["tenant_id"]
        side = seal.PARTY[env["event_type"]]
        party = self.party(tenant, event[side], event.get("customer_id"))
        identity = self.identity(tenant, event[side], party)
        if env["event_type"] != "MessageReceived":
            return seal.seal_message(self.keyring, event, party, identity=identity)
        subject, text = event.get("subject"), event.get("text")
        normal = normalise_subject(subject) if subject else None
        refs = references(subject, text) if subject or text else ()
        return seal.seal_message(
            self.keyring, event, party, identity=identity,
            subject_token=self.keyring.token(tenant, "subject", normal) if normal else None,
            ref_tokens=[self.keyring.token(tenant, "ref", r) for r in refs])

    def identity(self, tenant: str, ident: dict[str, Any], party: Party) -> str:
        """The identity sealed under the subject's profile key; the same ciphertext again while the
        fields and the key are the same (it says no more than the token next to it: same identity)."""
        memo = (tenant, party.subject, *(ident.get(k) for k in seal.IDENTITY_FIELDS))
        hit = self._identities.get(memo)
        current = self.keyring.for_sealing(tenant, party.subject, seal.PROFILE)[1]
        if hit is None or hit[0] != current:
            if len(self._identities) >= MEMO:
                self._identities.clear()
            hit = self._identities[memo] = seal.seal_identity(self.keyring, tenant, ident, party.subject)
        return hit[1]

    def context(self, event: dict[str, Any]) -> dict[str, Any]:
        """A CustomerContextUpdated, its name and attributes sealed under the customer's profile key."""
        return seal.seal_profile(self.keyring, event, event["customer_id"])

    def raw(self, raw: dict[str, Any], sealed_events: list[dict[str, Any]]) -> dict[str, Any]:
        """A RawRequest sealed under the subjects of the (sealed) events of its request."""
        return seal.seal_raw(self.keyring, raw, seal.sealed_subjects(sealed_events))

    def dead_letter(self, dead: dict[str, Any], tenant: str) -> dict[str, Any]:
        return seal.seal_dead_letter(self.keyring, dead, tenant)


def _is_token(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 33 and value[0] == seal.ID_PREFIX and value[1:].isalnum()


def sealer_from(settings: Any) -> Sealer | None:
    """A sealer when ``settings.privacy.enabled`` (a master key is then required)."""
    p = settings.privacy
    return Sealer(Keyring(p)) if p.enabled else None
