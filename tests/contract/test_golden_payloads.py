"""Golden payloads of every released version decode with today's reader."""

from __future__ import annotations

import json

import pytest

from parley.schema_tools import GOLDEN_DIR, from_json
from schemas.catalog import catalog
from schemas.codec import Codec

pytestmark = pytest.mark.contract

CAT = catalog()
GOLDEN = sorted(GOLDEN_DIR.glob("*/v*.bin"))


def test_every_released_version_has_a_golden_payload() -> None:
    for sv in CAT.all_versions():
        assert (GOLDEN_DIR / sv.fullname / f"v{sv.version}.bin").exists(), (sv.fullname, sv.version)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_golden_decodes_with_todays_reader(path) -> None:
    written = from_json(json.loads(path.with_suffix(".json").read_text()))
    decoded = Codec().decode(path.read_bytes())
    reader = CAT.current[path.parent.name]
    for field in reader.schema["fields"]:
        name = field["name"]
        if name in written:
            assert decoded[name] == written[name], name
        else:  # added after this version was written: the reader's default
            assert decoded[name] == field["default"], name


def test_v1_message_received_gets_v2_default() -> None:
    v1 = GOLDEN_DIR / "parley.message.MessageReceived" / "v1.bin"
    decoded = Codec().decode(v1.read_bytes())
    assert decoded["references"] == []
    assert decoded["envelope"]["schema_version"] == 1
