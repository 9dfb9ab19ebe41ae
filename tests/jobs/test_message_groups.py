"""How a batch's ids are split into queue messages."""

from __future__ import annotations

import pytest

from app.jobs.queue import SPREAD, message_groups


@pytest.mark.parametrize(
    ("n", "per_message", "sizes"),
    [
        (1, 8, [1]),
        (15, 8, [1] * 15),  # a small batch: one id a message, for many workers
        (SPREAD * 2, 8, [2] * SPREAD),
        (100, 8, [6] * 16 + [4]),
        (500, 8, [8] * 62 + [4]),  # a chunk fanned out by a worker
        (500, 1, [1] * 500),
    ],
)
def test_message_groups(n: int, per_message: int, sizes: list[int]) -> None:
    ids = [f"id-{i}" for i in range(n)]
    groups = message_groups(ids, per_message)
    assert [len(group) for group in groups] == sizes
    assert [i for group in groups for i in group] == ids  # every id once, in order
