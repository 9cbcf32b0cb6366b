"""Retention per tenant: message content kept N days (event time), then shredded.

Content is sealed under a key per subject and per UTC day of the event (``keyring.period_of``):
a new key every day for every customer who writes is the scheduled key rotation. Retention
destroys, for each tenant with ``retention_days`` N > 0, every content key of a day that ended
more than N days before ``as_of``: what those keys sealed (texts, subjects, attachments, rich
content, raw bodies, delivery errors) becomes unreadable everywhere at once. Profile keys
(identities, CRM context) are kept: they go with an erasure.

``as_of`` is event time: by default the newest event time the projections hold for the tenant
(``parley privacy retention``), so a replay of an old log expires what is old in *its* time, and
a test can move time by writing events. The cut is a pure function of (``as_of``, N).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from parley.privacy.keyring import DAY_MS, period_of
from parley.privacy.keystore import KeyStore
from parley.settings import PrivacySettings


@dataclass(frozen=True)
class Expiry:
    tenant: str
    days: int
    as_of: int
    before_period: int  # content of days before this one is shredded
    keys: int  # content keys destroyed now

    @property
    def cut_ms(self) -> int:
        return self.before_period * DAY_MS


def cut(as_of: int, days: int) -> int:
    """The first day whose content is kept: every day that ended ``days`` days before ``as_of``
    (event time) or earlier is shredded."""
    return period_of(as_of - days * DAY_MS)


def run(settings: PrivacySettings, keys: KeyStore, tenants: Iterable[str],
        as_of: Callable[[str], int | None], wall_ms: int) -> list[Expiry]:
    """Expire every tenant's content past its retention; ``as_of(tenant)`` is its event time now."""
    out = []
    for tenant in sorted(set(tenants)):
        days = settings.retention_for(tenant)
        at = as_of(tenant)
        if days <= 0 or at is None:
            continue
        before = cut(at, days)
        out.append(Expiry(tenant, days, at, before, keys.expire(tenant, before, wall_ms)))
    return out
