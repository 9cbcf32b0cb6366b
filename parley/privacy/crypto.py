"""The primitives: AES-256-GCM sealing under a named key, HMAC tokens, key wrapping (pure).

Every primitive is the ``cryptography`` package's (AES-GCM) or the standard library's (HMAC-
SHA256); this module only frames their inputs and outputs.

A **sealed** value names the key that opens it in a header that is also authenticated (AES-GCM
associated data, with the tenant): version, key kind (``p`` profile: identities and context,
kept until erasure; ``c`` content: what was written, per day, shredded by retention), period
(the content key's day, 0 for a profile key), generation (a subject erased and back later gets
new keys) and the subject (the customer id the data belongs to). Then a random 96-bit nonce and
the ciphertext with its 128-bit tag. Two framings of the same bytes:

- text (Avro strings, JSON stores): ``ps1.`` + base64(header | nonce | ciphertext);
- binary (raw request bodies, dead-letter payloads): ``MAGIC`` + header | nonce | ciphertext.

A **token** is HMAC-SHA256 under the tenant's index key of a domain and a value, 128 bits in
hex: equal values give equal tokens (identity keys, normalised subjects, order references),
so the pipeline can match and key by them without reading the value.

A **wrapped key** is the key sealed by AES-GCM under the master key, with the key's id as
associated data (a wrapped key moved to another row does not unwrap).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import uuid
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
PROFILE, CONTENT = "p", "c"
TEXT_PREFIX = "ps1."
MAGIC = b"\xa7PS1"
NONCE_BYTES = 12
KEY_BYTES = 32
_HEAD = struct.Struct(">BcIH")  # version, kind, period, generation


class Unreadable(Exception):
    """A sealed value that does not open: its key is gone (erased, expired) or it is damaged."""


@dataclass(frozen=True)
class KeyRef:
    """Which key seals a value: (tenant, subject, kind, period, generation)."""

    tenant: str
    subject: str
    kind: str
    period: int
    gen: int

    @property
    def id(self) -> bytes:
        """The key's id, bound into its wrapping."""
        return f"{self.tenant}\0{self.subject}\0{self.kind}\0{self.period}\0{self.gen}".encode()


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


# --- headers ---------------------------------------------------------------------------------

@lru_cache(maxsize=65_536)
def header(ref: KeyRef) -> bytes:
    """version | kind | period | gen | subject (16 bytes for a canonical UUID, else its UTF-8);
    remembered: every value sealed under one key has the same header."""
    head = _HEAD.pack(VERSION, ref.kind.encode(), ref.period, ref.gen)
    try:
        u = uuid.UUID(ref.subject)
        if str(u) == ref.subject:
            return head + b"\x00" + u.bytes
    except ValueError:
        pass
    raw = ref.subject.encode()
    if len(raw) > 255:
        raise ValueError(f"subject id too long: {len(raw)} bytes")
    return head + b"\x01" + bytes([len(raw)]) + raw


def parse_header(tenant: str, data: bytes) -> tuple[KeyRef, int]:
    """(the key reference, where the nonce starts) of sealed bytes without their framing."""
    try:
        version, kind, period, gen = _HEAD.unpack_from(data, 0)
        at = _HEAD.size
        if version != VERSION:
            raise Unreadable(f"sealed with version {version}")
        if data[at] == 0:
            subject, at = _uuid_text(bytes(data[at + 1:at + 17])), at + 17
        else:
            n = data[at + 1]
            subject, at = bytes(data[at + 2:at + 2 + n]).decode(), at + 2 + n
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
        raise Unreadable(f"not a sealed value: {e}") from None
    return KeyRef(tenant, subject, kind.decode(), period, gen), at


@lru_cache(maxsize=65_536)
def _uuid_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


def _aad(tenant: str, head: bytes) -> bytes:
    return tenant.encode() + b"\0" + head


# --- sealing ---------------------------------------------------------------------------------

def seal(aead: AESGCM, ref: KeyRef, plaintext: bytes) -> bytes:
    """header | nonce | ciphertext+tag (no framing)."""
    head = header(ref)
    nonce = os.urandom(NONCE_BYTES)
    return head + nonce + aead.encrypt(nonce, plaintext, _aad(ref.tenant, head))


def unseal(aead: AESGCM, tenant: str, data: bytes, parsed: tuple[KeyRef, int] | None = None) -> bytes:
    """The plaintext of sealed bytes; ``parsed``: their ``parse_header``, when the caller has it."""
    ref, at = parsed or parse_header(tenant, data)
    try:
        return aead.decrypt(data[at:at + NONCE_BYTES], data[at + NONCE_BYTES:], _aad(tenant, data[:at]))
    except InvalidTag:
        raise Unreadable(f"sealed value of {ref.subject} does not authenticate") from None


def seal_text(aead: AESGCM, ref: KeyRef, plaintext: bytes) -> str:
    return TEXT_PREFIX + binascii.b2a_base64(seal(aead, ref, plaintext), newline=False).decode()


def text_bytes(value: str) -> bytes:
    """The sealed bytes of a ``ps1.`` string."""
    if not value.startswith(TEXT_PREFIX):
        raise Unreadable("not a sealed string")
    try:
        return binascii.a2b_base64(value[len(TEXT_PREFIX):])
    except (ValueError, TypeError, binascii.Error) as e:
        raise Unreadable(f"not a sealed string: {e}") from None


def is_sealed_text(value: object) -> bool:
    return isinstance(value, str) and value.startswith(TEXT_PREFIX)


def is_sealed_bytes(value: object) -> bool:
    return isinstance(value, (bytes, bytearray)) and bytes(value[:len(MAGIC)]) == MAGIC


def text_ref(tenant: str, value: str) -> KeyRef:
    return parse_header(tenant, text_bytes(value))[0]


def bytes_ref(tenant: str, value: bytes) -> KeyRef:
    return parse_header(tenant, value[len(MAGIC):])[0]


# --- tokens ----------------------------------------------------------------------------------

def token(index_key: bytes, domain: str, value: str) -> str:
    """HMAC-SHA256(index key, domain NUL value), 128 bits in hex (32 characters)."""
    return hmac.digest(index_key, domain.encode() + b"\0" + value.encode(), hashlib.sha256)[:16].hex()


# --- wrapping --------------------------------------------------------------------------------

def kek_id(master: bytes) -> str:
    """A short name for a master key (which one wrapped a row), not a secret."""
    return hashlib.sha256(b"parley-kek\0" + master).hexdigest()[:12]


def wrap(master: AESGCM, key_id: bytes, key: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + master.encrypt(nonce, key, b"parley-key\0" + key_id)).decode()


def unwrap(master: AESGCM, key_id: bytes, wrapped: str) -> bytes:
    raw = base64.b64decode(wrapped)
    try:
        return master.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], b"parley-key\0" + key_id)
    except InvalidTag:
        raise Unreadable("a wrapped key does not unwrap under this master key") from None


def master_key(text: str) -> bytes:
    """The 32 bytes of a base64 master key (``parley privacy keygen``)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError) as e:
        raise ValueError(f"the privacy master key is not base64: {e}") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"the privacy master key must be {KEY_BYTES} bytes, not {len(raw)}")
    return raw


def new_master_key() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()
