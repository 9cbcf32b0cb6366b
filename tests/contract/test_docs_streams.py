"""docs/STREAMS.md describes the topology the worker runs: its stage table is generated from
``streams/topology.py`` and its diagram names every stage and every topic of it."""

from __future__ import annotations

import re
from pathlib import Path

from parley.settings import WorkerSettings
from streams import topology

DOC = Path(__file__).resolve().parents[2] / "docs" / "STREAMS.md"


def _stages():
    return topology.build(WorkerSettings(routing_file=None))


def test_the_stage_table_is_the_topology() -> None:
    text = DOC.read_text()
    block = re.search(r"<!-- stages:start -->\n(.*?)\n<!-- stages:end -->", text, re.S)
    assert block, "docs/STREAMS.md lost its stages markers"
    assert block.group(1) == topology.stage_table(_stages()), "stale: run python -m streams.topology"


def test_the_diagram_names_every_stage_and_topic() -> None:
    text = DOC.read_text()
    diagram = text.split("```")[1]
    for s in _stages():
        assert s.name in diagram, s.name
        for t in [*(i.topic for i in s.inputs), *s.outputs]:
            assert t.name in diagram, (s.name, t.name)
    assert topology.__doc__ and diagram.strip() in topology.__doc__  # one drawing, in both places
