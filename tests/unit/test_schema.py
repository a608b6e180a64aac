"""sdwatch.schema: what one table's hints do must not depend on tables built before it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from sdwatch import schema


@dataclass(frozen=True)
class WholeFirst:
    value: int | float


@dataclass(frozen=True)
class FractionFirst:
    value: float | int  # equal to WholeFirst's hint, but tried in the other order


@dataclass(frozen=True)
class AB:
    mode: Literal["a", "b"]


@dataclass(frozen=True)
class BA:
    mode: Literal["b", "a"]


@pytest.mark.parametrize("first", [WholeFirst, FractionFirst])
def test_a_union_tries_its_own_order_whichever_was_built_first(first: type) -> None:
    schema.build(first, {"value": 5})
    whole = schema.build(WholeFirst, {"value": 5}).value
    fraction = schema.build(FractionFirst, {"value": 5}).value
    assert (type(whole), type(fraction)) == (int, float)


@pytest.mark.parametrize("first", [AB, BA])
def test_a_literal_names_its_own_choices_whichever_was_built_first(first: type) -> None:
    with pytest.raises(schema.SpecError):
        schema.build(first, {"mode": "c"})
    with pytest.raises(schema.SpecError, match=r"one of 'a', 'b', got 'c'"):
        schema.build(AB, {"mode": "c"})
    with pytest.raises(schema.SpecError, match=r"one of 'b', 'a', got 'c'"):
        schema.build(BA, {"mode": "c"})
