"""The share of the initiation deadline kept back for composing the answer."""

from __future__ import annotations

import pytest

from leadlookup.usecases.initiation import answer_reserve_s


@pytest.mark.parametrize(
    ("deadline_ms", "reserve_ms"),
    [(1500, 150), (3000, 150), (1200, 150), (800, 100), (400, 50), (8, 1)],
)
def test_answer_reserve_is_150_ms_or_an_eighth_of_a_shorter_deadline(
    deadline_ms: int, reserve_ms: int
) -> None:
    reserve = answer_reserve_s(deadline_ms)

    assert round(reserve * 1000, 6) == reserve_ms
