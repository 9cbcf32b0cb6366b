"""A process's keys: the key store behind a cache, the master key, tokens.

``for_sealing`` gets (or creates) the key a new value is sealed with; ``for_opening`` finds the
key a sealed value names, or None once it is destroyed. Unwrapped keys stay in memory (an AES-GCM
object per key), and so does the knowledge that a key is gone (a destroyed key never comes back).
Every ``refresh_s`` the cache reads the key store's log of destructions and forgets what they
destroyed, so an erasure reaches every process within that interval; ``forget`` does it at once
(the erasure command, a stage that reads the erasure). Between the destruction and the refresh a
process may still seal new data under the destroyed key: that data is unreadable too.

No clock in any decision: the clock here only paces the refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from parley.privacy import crypto
from parley.privacy.crypto import CONTENT, PROFILE, KeyRef
from parley.privacy.keystore import KeyStore
from parley.settings import PrivacySettings

DAY_MS = 24 * 3600 * 1000
TENANT_SUBJECT = "~tenant"  # what nobody can be named for (an unparsable request): shredded by retention only


def period_of(at_ms: int) -> int:
    """The content period (UTC day number) of an event time."""
    return max(0, at_ms) // DAY_MS


class PrivacyDisabled(RuntimeError):
    """Sealing asked of a process without a master key."""


class Keyring:
    """The keys one process uses; ``settings.master_key`` must be set to seal or open."""

    def __init__(self, settings: PrivacySettings, store: KeyStore | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_ms: Callable[[], int] | None = None) -> None:
        if settings.master_key is None:
            raise PrivacyDisabled("PARLEY_PRIVACY__MASTER_KEY is not set (parley privacy keygen)")
        self.settings = settings
        self.store = store or KeyStore(settings.keys_url)
        master = crypto.master_key(settings.master_key.get_secret_value())
        self.kek = crypto.kek_id(master)
        self._masters = {self.kek: AESGCM(master)}
        for old in settings.previous_master_keys:
            raw = crypto.master_key(old.get_secret_value())
            self._masters.setdefault(crypto.kek_id(raw), AESGCM(raw))
        self._clock, self._wall = clock, wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._keys: dict[KeyRef, AESGCM | None] = {}
        self._sealing: dict[tuple[str, str, str, int], tuple[AESGCM, KeyRef]] = {}  # the current key of each
        self._gens: dict[tuple[str, str], int] = {}
        self._index: dict[str, bytes] = {}
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._noted: set[tuple[str, str, str]] = set()
        self._seq = self.store.last_seq()
        self._next_refresh = clock() + settings.refresh_s

    # --- keys --------------------------------------------------------------------------------

    def for_sealing(self, tenant: str, subject: str, kind: str, at_ms: int = 0) -> tuple[AESGCM, KeyRef]:
        """The key new data of ``subject`` is sealed with: its profile key, or the content key
        of the day of ``at_ms`` (event time). Created on first use."""
        self.refresh()
        period = period_of(at_ms) if kind == CONTENT else 0
        hit = self._sealing.get((tenant, subject, kind, period))
        if hit is not None:
            return hit
        for _ in range(3):
            gen = self._generation(tenant, subject)
            ref = KeyRef(tenant, subject, kind, period, gen)
            aead = self._keys.get(ref)
            if aead is not None:
                return aead, ref
            aead = self._load(ref) or self._create(ref)
            if aead is not None:
                self._keys[ref] = aead
                self._sealing[(tenant, subject, kind, period)] = (aead, ref)
                return aead, ref
            self._gens.pop((tenant, subject), None)  # erased meanwhile: the next generation
        raise RuntimeError(f"no key could be made for {tenant}/{subject}")

    def for_opening(self, ref: KeyRef) -> AESGCM | None:
        """The key ``ref`` names, or None when it does not exist (destroyed)."""
        self.refresh()
        if ref in self._keys:
            return self._keys[ref]
        aead = self._load(ref)
        self._keys[ref] = aead
        return aead

    def _generation(self, tenant: str, subject: str) -> int:
        gen = self._gens.get((tenant, subject))
        if gen is None:
            gen = self._gens[(tenant, subject)] = self.store.generation(tenant, subject)[0]
        return gen

    def _load(self, ref: KeyRef) -> AESGCM | None:
        found = self.store.wrapped(ref.tenant, ref.subject, ref.kind, ref.period, ref.gen)
        return None if found is None else AESGCM(self._unwrap(ref.id, *found))

    def _create(self, ref: KeyRef) -> AESGCM | None:
        key = crypto.new_key()
        stored = self.store.create(ref.tenant, ref.subject, ref.kind, ref.period, ref.gen,
                                   crypto.wrap(self._masters[self.kek], ref.id, key), self.kek, self._wall())
        return None if stored is None else AESGCM(self._unwrap(ref.id, *stored))

    def _unwrap(self, key_id: bytes, wrapped: str, kek: str) -> bytes:
        master = self._masters.get(kek)
        if master is None:
            raise crypto.Unreadable(f"a key is wrapped under master key {kek}, which this process does not have")
        return crypto.unwrap(master, key_id, wrapped)

    # --- tokens ------------------------------------------------------------------------------

    def index_key(self, tenant: str) -> bytes:
        key = self._index.get(tenant)
        if key is None:
            ref_id = f"{tenant}\0index".encode()
            wrapped, kek = self.store.index_key(tenant, crypto.wrap(self._masters[self.kek], ref_id, crypto.new_key()),
                                                self.kek, self._wall())
            key = self._index[tenant] = self._unwrap(ref_id, wrapped, kek)
        return key

    def token(self, tenant: str, domain: str, value: str) -> str:
        """The token of ``value`` (remembered: a customer's identity keys and references repeat)."""
        memo = (tenant, domain, value)
        tok = self._tokens.get(memo)
        if tok is None:
            if len(self._tokens) >= 200_000:
                self._tokens.clear()
            tok = self._tokens[memo] = crypto.token(self.index_key(tenant), domain, value)
        return tok

    def note_identities(self, tenant: str, subject: str, keys: Iterable[str]) -> None:
        """Remember (once per process) that ``subject`` showed these identity-key tokens."""
        new = [k for k in keys if (tenant, subject, k) not in self._noted]
        if new:
            self.store.note_identities(tenant, subject, new)
            self._noted.update((tenant, subject, k) for k in new)

    # --- what is gone ------------------------------------------------------------------------

    def state(self, ref: KeyRef) -> str:
        """Why ``ref``'s key is missing: ``erased`` (the subject was erased since), ``expired``
        (content past the tenant's retention) or ``missing``."""
        gen, erased_at = self.store.generation(ref.tenant, ref.subject)
        if erased_at is not None and gen > ref.gen:
            return "erased"
        cut = self.store.expired_before(ref.tenant)
        if ref.kind == CONTENT and cut is not None and ref.period < cut:
            return "expired"
        return "missing"

    def erased_at(self, tenant: str, subject: str) -> int | None:
        return self.store.generation(tenant, subject)[1]

    def refresh(self, force: bool = False) -> None:
        """Forget what the key store destroyed since the last look (every ``refresh_s``)."""
        now = self._clock()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + self.settings.refresh_s
        for entry in self.store.log(self._seq):
            self._seq = entry.seq
            if entry.action == "erased" and entry.subject:
                self.forget(entry.tenant, [entry.subject])
            elif entry.action == "expired" and entry.period is not None:
                self._forget_where(partial(_content_before, entry.tenant, entry.period))

    def forget(self, tenant: str, subjects: Iterable[str]) -> None:
        """Drop ``subjects``' keys from memory (after their erasure)."""
        gone = set(subjects)
        self._forget_where(lambda r: r.tenant == tenant and r.subject in gone)
        for s in gone:
            self._gens.pop((tenant, s), None)
        self._noted = {n for n in self._noted if not (n[0] == tenant and n[1] in gone)}

    def _forget_where(self, test: Callable[[KeyRef], bool]) -> None:
        for ref in [r for r in self._keys if test(r)]:
            self._keys[ref] = None  # gone for good: never looked up again
        for k in [k for k, (_, ref) in self._sealing.items() if test(ref)]:
            del self._sealing[k]

    def close(self) -> None:
        self.store.close()


def keyring_from(settings: PrivacySettings) -> Keyring | None:
    """A keyring when a master key is configured, else None (nothing sealed can be opened)."""
    return Keyring(settings) if settings.master_key is not None else None


__all__ = ["CONTENT", "PROFILE", "TENANT_SUBJECT", "Keyring", "PrivacyDisabled", "keyring_from", "period_of"]


def _content_before(tenant: str, period: int, ref: KeyRef) -> bool:
    """Whether ``ref`` is one of ``tenant``'s content keys of a period before ``period``."""
    return ref.tenant == tenant and ref.kind == CONTENT and ref.period < period
