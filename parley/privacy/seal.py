"""Which fields of which event are personal, how they are sealed, and how readers open them.

Sealed (unreadable without the subject's keys), under the subject's *profile* key or under its
*content* key (one a day):

- MessageReceived: profile: ``sender``'s id, display_name, phone_e164, email, login_id;
  content: text, subject, attachments (url, media_id, caption, filename, sha256), rich (payload,
  title, data)
- MessageSent: profile: ``recipient``, the same; content: text, attachments, rich, content (the
  rich message, template parameters)
- DeliveryStatusChanged: profile: ``recipient``, the same; content: error_message (providers
  quote numbers in it)
- CustomerContextUpdated: profile: name, attributes (free-text context)
- RawRequest: content: body (every event's subject, nested), query, remote_addr (web chat: the
  customer's device)
- DeadLetter (ingress): content: payload (the tenant's own content key: no subject can be named)

Readable, so that routing, KPIs and projections work without keys: every id and time, the
channel, account, tier, lifecycle stage, author type, template name, attachment kind, MIME type
and size, rich content kind, and **tokens** (HMAC under the tenant's index key): the channel
identity's id (``~`` + token; records are keyed by it), its identity keys (``keys``: ``phone:~..``,
``email:~..``, ``login:~..``, ``channel:<channel>:~..``, intrinsic first), and for a customer's
message the normalised subject and order references its threads are matched on
(``privacy.subject_token``, ``privacy.ref_tokens``). Equal values give equal tokens; a token
says nothing without the index key.

Where they go: everything sealed of an event is in its ``privacy`` field (``parley.privacy.Sealed``):
``subject_id`` (whose it is), ``identity`` (the sender's or recipient's fields), ``keys`` (its
identity-key tokens), ``data`` (the content fields), ``subject_token`` / ``ref_tokens``. The
sender or recipient itself keeps its channel, and its id becomes the token.

Opening (``Opener.open``) restores the fields as they were written and marks the event with
``_privacy`` (``{"subject": ..., "identity": state, "content": state}``, state ``open``,
``erased``, ``expired`` or ``missing``); the sender or recipient keeps its token as ``token``
and gets its plaintext ``id`` back (None once erased). An event that was never sealed is
returned as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from parley.privacy import crypto
from parley.privacy.crypto import CONTENT, PROFILE, KeyRef, Unreadable
from parley.privacy.keyring import TENANT_SUBJECT, Keyring
from schemas import topics

IDENTITY_FIELDS = ("id", "display_name", "phone_e164", "email", "login_id")
PARTY = {"MessageReceived": "sender", "MessageSent": "recipient", "DeliveryStatusChanged": "recipient"}
CONTENT_FIELDS = {
    "MessageReceived": ("text", "subject", "attachments", "rich"),
    "MessageSent": ("text", "attachments", "rich", "content"),
    "DeliveryStatusChanged": ("error_message",),
}
PROFILE_FIELDS = {"CustomerContextUpdated": ("name", "attributes")}
ATTACHMENT_KEPT = ("kind", "mime_type", "size_bytes")
ID_PREFIX = "~"
OPEN, ERASED, EXPIRED, MISSING = "open", "erased", "expired", "missing"


# --- blanks: what a sealed field reads as ------------------------------------------------------

def _blank_attachment(a: dict[str, Any]) -> dict[str, Any]:
    return {**{k: None for k in a}, **{k: a.get(k) for k in ATTACHMENT_KEPT}}


def _blank(field: str, value: Any) -> Any:
    if field == "attachments":
        return [_blank_attachment(a) for a in value or ()]
    if field == "rich":
        return None if value is None else {"kind": value.get("kind") or "", "payload": None, "title": None,
                                           "data_json": "{}"}
    if field == "attributes":
        return {}
    return None


def _gone(field: str, value: Any) -> Any:
    """What an opened field reads as when its key is gone: nothing of it."""
    return [] if field == "attachments" else {} if field == "attributes" else None


def _privacy(subject: str, data: str | None, subject_token: str | None = None, ref_tokens: Sequence[str] = (),
             *, identity: str | None = None, keys: Sequence[str] = ()) -> dict[str, Any]:
    return {"subject_id": subject, "data": data, "identity": identity, "keys": list(keys),
            "subject_token": subject_token, "ref_tokens": list(ref_tokens)}


def _dumps(values: dict[str, Any]) -> bytes:
    return orjson.dumps(values)


# --- sealing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Party:
    """What the ingress computed of a channel identity: its subject and tokens."""

    subject: str
    id_token: str  # "~" + token: the identity's id on every topic
    keys: tuple[str, ...]  # identity-key tokens, intrinsic first


def seal_identity(keyring: Keyring, tenant: str, ident: dict[str, Any], subject: str) -> tuple[KeyRef, str]:
    """(the profile key's reference, the channel identity's fields sealed under it)."""
    aead, ref = keyring.for_sealing(tenant, subject, PROFILE)
    return ref, crypto.seal_text(aead, ref, _dumps({k: v for k in IDENTITY_FIELDS if (v := ident.get(k)) is not None}))


def seal_message(keyring: Keyring, event: dict[str, Any], party: Party, *, subject_token: str | None = None,
                 ref_tokens: Sequence[str] = (), identity: str | None = None) -> dict[str, Any]:
    """A message event (MessageReceived, MessageSent, DeliveryStatusChanged) with its sender or
    recipient sealed under ``party.subject``'s profile key (``identity``: already sealed), its
    content under the subject's content key of the event's day, and its partition key made of
    the identity's token."""
    if event.get("privacy"):
        return event
    env = event["envelope"]
    etype, tenant = env["event_type"], env["tenant_id"]
    side, names = PARTY[etype], CONTENT_FIELDS[etype]
    ident = event[side]
    if identity is None:
        identity = seal_identity(keyring, tenant, ident, party.subject)[1]
    out = dict(event)
    plain = {}
    for k in names:
        v = event.get(k)
        if v is not None and v != [] and v != {}:
            plain[k] = v
            out[k] = _blank(k, v)
    data = None
    if plain:
        aead, ref = keyring.for_sealing(tenant, party.subject, CONTENT, env["occurred_at"])
        data = crypto.seal_text(aead, ref, _dumps(plain))
    out[side] = {"channel": ident["channel"], "id": party.id_token, "display_name": None, "phone_e164": None,
                 "email": None, "login_id": None}
    out["envelope"] = {**env, "partition_key": topics.MESSAGES.key(tenant, event["channel"], party.id_token)}
    out["privacy"] = {"subject_id": party.subject, "data": data, "identity": identity, "keys": list(party.keys),
                      "subject_token": subject_token, "ref_tokens": list(ref_tokens)}
    return out


def seal_profile(keyring: Keyring, event: dict[str, Any], subject: str) -> dict[str, Any]:
    """A CustomerContextUpdated with name and attributes sealed under the customer's profile key."""
    names = PROFILE_FIELDS[event["envelope"]["event_type"]]
    aead, ref = keyring.for_sealing(event["envelope"]["tenant_id"], subject, PROFILE)
    plain = {k: event.get(k) for k in names if event.get(k) not in (None, {})}
    data = crypto.seal_text(aead, ref, _dumps(plain)) if plain else None
    return {**event, **{k: _blank(k, event.get(k)) for k in names}, "privacy": _privacy(subject, data)}


def seal_bytes_for(keyring: Keyring, tenant: str, subjects: Sequence[str], at_ms: int, payload: bytes) -> bytes:
    """``payload`` sealed under the content key of each subject in turn (every one of them is needed
    to open it: erasing any one shreds it); the tenant's own key when nobody is named."""
    out = payload
    for subject in (list(dict.fromkeys(subjects)) or [TENANT_SUBJECT]):
        aead, ref = keyring.for_sealing(tenant, subject, CONTENT, at_ms)
        out = crypto.MAGIC + crypto.seal(aead, ref, out)
    return out


PERSON_POSTS = frozenset({"webchat"})  # channels whose requests come from the customer's own device


def seal_raw(keyring: Keyring, raw: dict[str, Any], subjects: Sequence[str]) -> dict[str, Any]:
    """A RawRequest with its body sealed (see ``seal_bytes_for``), and its query string (ids some
    providers put there) and, when the customer's own device posted it, its remote address."""
    env = raw["envelope"]
    tenant, at = env["tenant_id"], env["occurred_at"]
    names = list(dict.fromkeys(subjects)) or [TENANT_SUBJECT]
    out = {**raw, "body": seal_bytes_for(keyring, tenant, names, at, bytes(raw["body"]))}
    meta = {}
    if raw.get("query"):
        meta["query"], out["query"] = raw["query"], ""
    if raw.get("remote_addr") and raw.get("channel") in PERSON_POSTS:
        meta["remote_addr"], out["remote_addr"] = raw["remote_addr"], None
    data = None
    if meta:
        aead, ref = keyring.for_sealing(tenant, names[0], CONTENT, at)
        data = crypto.seal_text(aead, ref, _dumps(meta))
    out["privacy"] = _privacy(names[0], data)
    return out


def seal_dead_letter(keyring: Keyring, dead: dict[str, Any], tenant: str) -> dict[str, Any]:
    """An ingress DeadLetter's payload (the request body) under the tenant's own content key."""
    at = dead["envelope"]["occurred_at"]
    return {**dead, "payload": seal_bytes_for(keyring, tenant, [], at, bytes(dead["payload"])),
            "privacy": _privacy(TENANT_SUBJECT, None)}


# --- opening ----------------------------------------------------------------------------------

class Opener:
    """Opens sealed events with a keyring (projections, exports, the conversations stage)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def _open_text(self, tenant: str, value: str) -> tuple[dict[str, Any] | None, str]:
        """(the sealed values, state)."""
        try:
            data = crypto.text_bytes(value)
            parsed = crypto.parse_header(tenant, data)
        except Unreadable:
            return None, MISSING
        aead = self.keyring.for_opening(parsed[0])
        if aead is None:
            return None, self.keyring.state(parsed[0])
        try:
            return orjson.loads(crypto.unseal(aead, tenant, data, parsed)), OPEN
        except (Unreadable, orjson.JSONDecodeError):
            return None, MISSING

    def open_bytes(self, tenant: str, value: bytes) -> tuple[bytes | None, str]:
        """(the payload, state) of sealed bytes, every layer opened."""
        out = bytes(value)
        while crypto.is_sealed_bytes(out):
            data = out[len(crypto.MAGIC):]
            try:
                ref, _ = crypto.parse_header(tenant, data)
            except Unreadable:
                return None, MISSING
            aead = self.keyring.for_opening(ref)
            if aead is None:
                return None, self.keyring.state(ref)
            try:
                out = crypto.unseal(aead, tenant, data)
            except Unreadable:
                return None, MISSING
        return out, OPEN

    def identity(self, event: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """(the event's sender or recipient with its fields back and ``token`` set, state)."""
        side = PARTY.get(event["envelope"]["event_type"])
        p = event.get("privacy") or {}
        ident = event.get(side) if side else None
        if not ident or not p.get("identity"):
            return ident, OPEN
        plain, state = self._open_text(event["envelope"]["tenant_id"], p["identity"])
        out = {**ident, "token": ident["id"], **{k: None for k in IDENTITY_FIELDS}}
        if plain is not None:
            out.update({k: plain.get(k) for k in IDENTITY_FIELDS})
        return out, state

    def content(self, event: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """(the sealed content fields of ``event``, state); ({}, open) when there was none."""
        p = event.get("privacy")
        if not p or not p.get("data"):
            return {}, OPEN
        return self._open_text(event["envelope"]["tenant_id"], p["data"])

    def text(self, event: dict[str, Any]) -> str | None:
        """A message's text, sealed or not (None when its key is gone)."""
        if not event.get("privacy"):
            return event.get("text")
        values, _ = self.content(event)
        return (values or {}).get("text")

    def open(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event as it was written, or as much of it as its keys still open."""
        p = event.get("privacy")
        if not p:
            return event
        etype = event["envelope"]["event_type"]
        out = dict(event)
        marks = {"subject": p["subject_id"], "identity": OPEN, "content": OPEN}
        side = PARTY.get(etype)
        if side and p.get("identity"):
            out[side], marks["identity"] = self.identity(event)
        names = CONTENT_FIELDS.get(etype) or PROFILE_FIELDS.get(etype) or ()
        if names:
            values, marks["content"] = self.content(event)
            for k in names:
                out[k] = (values or {}).get(k, event.get(k)) if values is not None else _gone(k, event.get(k))
        elif etype == "RawRequest":
            out.update(self._raw(event, marks))
        elif etype == "DeadLetter":
            payload, marks["content"] = self.open_bytes(event["envelope"]["tenant_id"], event["payload"])
            out["payload"] = payload if payload is not None else b""
        out["_privacy"] = marks
        return out

    def _raw(self, event: dict[str, Any], marks: dict[str, Any]) -> dict[str, Any]:
        tenant = event["envelope"]["tenant_id"]
        body, marks["content"] = self.open_bytes(tenant, event["body"])
        meta, _ = self._open_text(tenant, event["privacy"]["data"]) if event["privacy"].get("data") else ({}, OPEN)
        return {"body": body if body is not None else b"", "query": (meta or {}).get("query", event.get("query", "")),
                "remote_addr": (meta or {}).get("remote_addr", event.get("remote_addr"))}


def sealed_subjects(events: Iterable[dict[str, Any]]) -> list[str]:
    """The subjects named by sealed events, in order, once each."""
    return list(dict.fromkeys(p["subject_id"] for e in events if (p := e.get("privacy"))))


def ref_of(tenant: str, value: str) -> KeyRef | None:
    try:
        return crypto.text_ref(tenant, value)
    except Unreadable:
        return None
