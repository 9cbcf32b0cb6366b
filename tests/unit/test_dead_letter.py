"""One dead-letter builder (``schemas.events.dead_letter``) for the ingress, the worker and the
projections: same truncation, tenant rule, key and schema."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from adapters.base import Account, Request
from adapters.records import dead_letter_event
from projections.engine import Decoded
from projections.runner import Feeder
from schemas import topics
from schemas.codec import Codec
from schemas.events import ERROR_LIMIT, dead_letter, derive_id

ROOT = Path(__file__).resolve().parents[2]
CODEC = Codec()


def test_the_error_is_cut_and_the_record_keyed_by_its_stage() -> None:
    dead = dead_letter("identity", "poison", "x" * (ERROR_LIMIT + 10), b"raw", "parley.messages", 3, 42,
                       b"acme|sms|+33612345678")
    assert len(dead["error"]) == ERROR_LIMIT
    assert dead["envelope"]["partition_key"] == topics.DEAD_LETTER.key("identity") == "identity"
    assert dead["headers"] == {"key": "acme|sms|+33612345678"}
    assert CODEC.decode(CODEC.encode(dead, topics.DEAD_LETTER.name)) == dead


@pytest.mark.parametrize(("tenant_id", "key", "tenant"), [
    ("given", b"acme|c-1", "given"), (None, b"acme|c-1", "acme"), (None, None, "unknown"), (None, b"", "unknown"),
])
def test_the_tenant_is_given_else_the_keys_else_unknown(tenant_id: str | None, key: bytes | None,
                                                         tenant: str) -> None:
    assert dead_letter("s", "poison", "e", b"", key=key, tenant_id=tenant_id)["envelope"]["tenant_id"] == tenant


def test_the_id_is_named_by_the_caller_or_derives_from_the_position() -> None:
    at = dead_letter("s", "poison", "e", b"", "t", 0, 7)
    again = dead_letter("s", "poison", "other error", b"", "t", 0, 7)
    assert at["envelope"]["event_id"] == again["envelope"]["event_id"]
    assert dead_letter("s", "poison", "e", b"", "t", 0, 7, event_id="e-1")["envelope"]["event_id"] == "e-1"


def test_the_ingress_dead_letter_is_the_builders() -> None:
    account = Account("acme", "whatsapp", "106")
    req = Request("POST", "https://x/webhooks/whatsapp/106", "/webhooks/whatsapp/106", {},
                  {"content-type": "application/json"}, b"{}", 1_731_400_000_000, "raw-1")
    dead = dead_letter_event("whatsapp", account, req, "unmappable", "y" * 9000, "parley.ingress.raw")
    assert dead == dead_letter(
        "ingress/whatsapp", "unmappable", "y" * 9000, b"{}", source_topic="parley.ingress.raw",
        occurred_at=req.received_at_ms, tenant_id="acme", event_id=derive_id("raw-1", "DeadLetter"),
        headers={"reason": "unmappable", "adapter": "whatsapp", "tenant_id": "acme", "account_id": "106",
                 "raw_event_id": "raw-1", "content_type": "application/json"})


def test_a_projections_dead_letter_is_the_builders() -> None:
    runner = SimpleNamespace(p=SimpleNamespace(name="threads"))
    d = Decoded("parley.conversations", 2, 9, None, "bad magic byte", b"\x07", b"acme|c-1")
    dead = Feeder._dead_letter(runner, d)  # type: ignore[arg-type]
    assert dead == dead_letter("projections/threads", "undecodable", "bad magic byte", b"\x07",
                               "parley.conversations", 2, 9, key=b"acme|c-1",
                               event_id=derive_id("projections", "threads", "parley.conversations", 2, 9))
    assert dead["envelope"]["tenant_id"] == "acme"


def test_no_other_module_builds_a_dead_letter() -> None:
    builds = re.compile(r'(make|envelope)\(\s*"DeadLetter"')
    found = [str(p.relative_to(ROOT)) for pkg in ("adapters", "streams", "projections", "egress", "parley", "schemas")
             for p in sorted((ROOT / pkg).rglob("*.py")) if builds.search(p.read_text())]
    assert found == ["schemas/events.py"]
