"""The stream stages' side of crypto-shredding (docs/PRIVACY.md): tokens in, entries out.

The stages never seal anything and never need a key to decide: a sealed message carries the
tokens the ingress computed (``privacy.keys``: identity keys; ``privacy.subject_token`` and
``privacy.ref_tokens``: what threads match on), so identity, threads, routing and KPIs decide
exactly as on plaintext, and the same sealed input gives the same output in any replay. Only
enrichment reads the text (``Texts``, through the process's keyring); once the subject is erased
or the content has expired it reads nothing and enrichment falls back.

An erasure reaches the stages as ``SubjectErased`` records on their own sequenced inputs (written
by ``parley privacy erase``), so it lands at one place in event time in every run:

- ``identity`` (``parley.messages``, keyed by the channel identity): its ``identities`` entry;
- ``identity-graph`` (``parley.identity.commands``): the owners of the subject's identity keys
  and the subject's customers;
- ``conversations`` (``parley.conversation.messages``, keyed by customer): the customer's threads
  (normalised subjects and references, as tokens) and its resolution timer.

Stores holding ids, times and counts only (ids seen, reply ids, routes, KPI measures) keep them:
the KPIs keep their counts. Every deletion is a tombstone on the stage's changelog.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import topics
from schemas.keys import scoped
from streams.identity.logic import IdentityKey
from streams.runtime.task import Task
from streams.threads.logic import text_features

ERASED = "SubjectErased"


def sealed_key_tokens(event: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The identity keys (tokens, intrinsic first) a sealed message carries, else None."""
    p = event.get("privacy")
    if not p or not p.get("keys"):
        return None
    return tuple(p["keys"])


def as_keys(tokens: tuple[str, ...]) -> list[IdentityKey]:
    return [IdentityKey(k, k.partition(":")[0]) for k in tokens]


def thread_features(msg: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """What threads match a customer message on: its tokens when sealed, else its plaintext
    (``streams.threads.logic.text_features``)."""
    p = msg.get("privacy")
    if p is None:
        return text_features(msg)
    return p.get("subject_token"), tuple(p.get("ref_tokens") or ())


def lean(event: dict[str, Any]) -> dict[str, Any]:
    """The event without its sealed part, for a stage that decides on readable fields only
    (routing: its requests are then as small as on plaintext)."""
    return event if not event.get("privacy") else {**event, "privacy": None}


class Texts:
    """A message's text for enrichment, opened with the process's keyring when sealed."""

    def __init__(self, opener: Any | None) -> None:
        self.opener = opener

    def text(self, event: Mapping[str, Any]) -> str | None:
        if self.opener is None or not event.get("privacy"):
            return event.get("text")
        return self.opener.text(event)

    def forget(self, tenant: str, customers: list[str]) -> None:
        if self.opener is not None:
            self.opener.keyring.forget(tenant, customers)


def texts_from(settings: Any) -> Texts:
    """Texts opened with a keyring when the settings hold a master key."""
    from parley.privacy.keyring import keyring_from
    from parley.privacy.seal import Opener

    keyring = keyring_from(settings.privacy) if getattr(settings, "privacy", None) else None
    return Texts(Opener(keyring) if keyring is not None else None)


# --- erasure, per stage ------------------------------------------------------------------------

def forget_identity(ctx: Task, event: Mapping[str, Any]) -> None:
    """``identity``: drop the entries of the channel identities the erasure names."""
    tenant = event["envelope"]["tenant_id"]
    store = ctx.store("identities")
    for key in event["identity_keys"]:
        kind, _, rest = key.partition(":")
        if kind == "channel":
            channel, _, ident = rest.partition(":")
            store.pop(topics.MESSAGES.key(tenant, channel, ident))


def forget_graph(ctx: Task, event: Mapping[str, Any]) -> None:
    """``identity-graph``: drop who owns the subject's identity keys, and the subject's customers."""
    tenant = event["envelope"]["tenant_id"]
    owners, customers = ctx.store("owners"), ctx.store("customers")
    erased = set(event["customer_ids"]) | {event["customer_id"]}
    for key in event["identity_keys"]:
        if owners.get(scoped(tenant, key)) in erased:
            owners.pop(scoped(tenant, key))
    for cid in sorted(erased):
        customers.pop(scoped(tenant, cid))


def forget_threads(ctx: Task, event: Mapping[str, Any], texts: Texts | None = None) -> None:
    """``conversations``: drop the customer's threads and its timer; forget its keys in memory."""
    tenant = event["envelope"]["tenant_id"]
    key = topics.CONVERSATION_MESSAGES.key(tenant, event["customer_id"])  # the threads' key
    ctx.store("threads").pop(key)
    ctx.timer(key, None)
    if texts is not None:
        texts.forget(tenant, sorted(set(event["customer_ids"]) | {event["customer_id"]}))
