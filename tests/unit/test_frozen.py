"""streams.frozen.replace gives what dataclasses.replace gives, for the records the decisions use."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.frozen import replace
from streams.routing.state import Agent, CustomerRoute, ThreadRoute


@settings(max_examples=200, deadline=None)
@given(stage=st.sampled_from(["new", "bot", "human"]), priority=st.integers(-5, 5),
       handled=st.lists(st.text(max_size=4), max_size=3).map(tuple), bot_turns=st.integers(0, 9))
def test_the_same_record_as_dataclasses_replace(stage: str, priority: int, handled: tuple[str, ...],
                                                bot_turns: int) -> None:
    t = ThreadRoute("t1", "c1", stage="bot", queue="q", handled=("x",))
    changes = {"stage": stage, "priority": priority, "handled": handled, "bot_turns": bot_turns}
    fast, slow = replace(t, **changes), dataclasses.replace(t, **changes)
    assert fast == slow and hash(fast) == hash(slow) and type(fast) is ThreadRoute
    assert t == ThreadRoute("t1", "c1", stage="bot", queue="q", handled=("x",))  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.stage = "resolved"  # type: ignore[misc]  # still frozen


def test_unknown_fields_are_refused_and_other_classes_go_to_dataclasses() -> None:
    with pytest.raises(TypeError):
        replace(Agent("a"), presence="online", not_a_field=1)
    assert replace(CustomerRoute("c"), tier="gold") == CustomerRoute("c", tier="gold")

    @dataclasses.dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    with pytest.raises(ValueError):  # __post_init__ runs: the dataclasses path
        replace(Checked(1), n=-1)
