"""Keys are part of the contract: every topic builds and parses its own key, spelled as on the wire.

The key bytes decide partitions (murmur2 of the key), so a key must be spelled exactly as the
producers always spelled it; the literal strings below pin that spelling.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas import keys, topics

EVERY = topics.ALL + topics.INTERNAL
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("adapters", "streams", "projections", "egress", "parley", "schemas", "batch", "bench")


def _parts(t: topics.Topic) -> tuple[str, ...]:
    """Sample parts: a tenant first, an int where the key has an interval, a "|" in the last part."""
    out = ["acme" if name == "tenant" else "1731400800000" if name == "interval" else f"{name}-1"
           for name in t.key_parts]
    if len(out) > 1:
        out[-1] += "|tail"
    return tuple(out)


@pytest.mark.parametrize("t", EVERY, ids=lambda t: t.name)
def test_every_topic_has_a_key_builder_and_parser(t: topics.Topic) -> None:
    assert t.key_parts and all(t.key_parts), t.key_shape
    parts = _parts(t)
    key = t.key(*parts)
    assert t.parse_key(key) == parts
    assert t.parse_key(key.encode()) == parts
    assert t.key(*t.parse_key(key)) == key


@pytest.mark.parametrize("t", EVERY, ids=lambda t: t.name)
def test_the_tenant_parser_reads_every_tenant_key(t: topics.Topic) -> None:
    if t.key_parts[0] != "tenant":
        assert t in (topics.DEAD_LETTER, topics.INGRESS_CLAIMS)  # keyed by stage, by request attempt
        return
    key = t.key(*_parts(t))
    assert keys.tenant_of(key) == keys.tenant_of(key.encode()) == "acme"


@pytest.mark.parametrize(("key", "wire"), [
    (topics.RAW_INGRESS.key("acme", "whatsapp", "106540352242922"), "acme|whatsapp|106540352242922"),
    (topics.MESSAGES.key("acme", "email", "a|b@x.org"), "acme|email|a|b@x.org"),
    (topics.AGENT_STATUS.key("acme"), "acme"),
    (topics.CONVERSATION_MESSAGES.key("acme", "c-1"), "acme|c-1"),
    (topics.KPI_INTERVALS.key("acme", 1731400800000, "agent_status", "marc"), "acme|1731400800000|agent_status|marc"),
    (topics.SERVICE_WINDOWS.key("acme", "whatsapp", "acct-1", "+33612345678"), "acme|whatsapp|acct-1|+33612345678"),
    (keys.scoped("acme", "thread-1"), "acme|thread-1"),
    (keys.scoped("acme", "marc", 1731400800000), "acme|marc|1731400800000"),
])
def test_keys_are_spelled_as_on_the_wire(key: str, wire: str) -> None:
    assert key == wire


def test_a_wrong_number_of_parts_is_refused() -> None:
    with pytest.raises(TypeError):
        topics.CONVERSATIONS.key("acme")
    with pytest.raises(ValueError):
        topics.CONVERSATIONS.parse_key(b"acme")


def test_no_module_spells_a_tenant_key_by_hand() -> None:
    """Keys come from their topic (``Topic.key``) or ``schemas.keys``, not from f-strings."""
    by_hand = re.compile(r'f"\{[^}]*tenant[^}]*\}\||f"\{t\}\|')
    found = [f"{p.relative_to(ROOT)}:{n}" for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if by_hand.search(line)]
    assert found == []
