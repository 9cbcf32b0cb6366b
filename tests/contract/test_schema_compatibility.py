"""Every event schema against all its earlier released versions.

BACKWARD_TRANSITIVE for every event (today's reader reads every released writer, as a replay
from the start of the log needs); FULL_TRANSITIVE for events on public topics (old readers in
other services also read today's writer).
"""

from __future__ import annotations

import json

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas import topics
from schemas.catalog import catalog

pytestmark = pytest.mark.contract

CAT = catalog()
PUBLIC_TYPES = {t for topic in topics.ALL if topic.public for t in topic.value_types}
PAIRS = [(cur, old) for cur in CAT.current.values() for old in CAT.history(cur.fullname)]


def _avro(sv) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps({k: v for k, v in sv.schema.items() if k != "version"}))


def _compatible(reader, writer) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(_avro(reader), _avro(writer))
    return result.compatibility is SchemaCompatibilityType.compatible


def test_some_event_has_history() -> None:
    assert PAIRS, "no released history: the compatibility checks below would check nothing"


@pytest.mark.parametrize(("current", "old"), PAIRS, ids=lambda v: f"{v.name}-v{v.version}")
def test_backward_transitive(current, old) -> None:
    assert _compatible(reader=current, writer=old), f"{current.name} v{current.version} cannot read v{old.version}"


@pytest.mark.parametrize(
    ("current", "old"), [p for p in PAIRS if p[0].name in PUBLIC_TYPES],
    ids=lambda v: f"{v.name}-v{v.version}",
)
def test_forward_transitive_for_public_topics(current, old) -> None:
    assert _compatible(reader=old, writer=current), \
        f"v{old.version} readers cannot read {current.name} v{current.version}"


@pytest.mark.parametrize("current", list(CAT.current.values()), ids=lambda v: v.name)
def test_current_version_is_released_unchanged(current) -> None:
    released = {v.version: v for v in CAT.released.get(current.fullname, [])}
    assert current.version in released, (
        f"{current.name} v{current.version} is not released: run `parley schemas freeze`")
    assert released[current.version].canonical == current.canonical, (
        f"{current.name} v{current.version} changed after release: bump its version")


def test_the_checker_rejects_a_breaking_change() -> None:
    """The checker itself can fail: a new required field without default breaks BACKWARD."""
    cur = CAT.latest("MessageReceived")
    broken = json.loads(json.dumps(cur.schema))
    broken["fields"].append({"name": "mandatory", "type": "string"})
    from schemas.catalog import make_version

    assert not _compatible(reader=make_version(broken), writer=cur)


def test_every_topic_value_type_exists() -> None:
    for topic in topics.ALL:
        for name in topic.value_types:
            assert CAT.latest(name).name == name, (topic.name, name)
