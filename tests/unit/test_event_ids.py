"""Event ids never change: ``derive_id`` is UUIDv5 of the joined parts, exactly."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import _NS, derive_id

PART = st.one_of(st.text(), st.integers(), st.none(), st.floats(allow_nan=False), st.booleans())


@given(st.lists(PART, max_size=6))
def test_derive_id_is_uuid5_of_the_joined_parts(parts) -> None:
    assert derive_id(*parts) == str(uuid.uuid5(_NS, "\x1f".join(str(p) for p in parts)))


def test_known_ids_are_stable() -> None:
    assert derive_id("acme", "customer", "phone:+33612345678") == str(
        uuid.uuid5(uuid.UUID("6f1c1d2e-9a57-4f0e-8a55-7061726c6579"), "acme\x1fcustomer\x1fphone:+33612345678"))
