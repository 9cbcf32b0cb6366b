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
        if env["event_type"] != "MessageReceived":
            return seal.seal_message(self.keyring, event, party)
        normal = normalise_subject(event.get("subject"))
        refs = references(event.get("subject"), event.get("text"))
        return seal.seal_message(
            self.keyring, event, party,
            subject_token=self.keyring.token(tenant, "subject", normal) if normal else None,
            ref_tokens=[self.keyring.token(tenant, "ref", r) for r in refs])

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
