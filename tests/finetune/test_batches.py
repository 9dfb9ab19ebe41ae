"""How a step's examples are cut into micro-batches, and which examples each step sees."""

from __future__ import annotations

import pytest

from app.finetune.batches import StepOrder, micro_batches
from app.finetune.data import Example, common_prefix_length

HEAD_A = (2, 10, 11, 12)  # the shared prompt head of one taxonomy
HEAD_B = (2, 20, 21)


def _example(head: tuple[int, ...], rest: int, source: int) -> Example:
    ids = head + tuple(range(100, 100 + rest))
    return Example(ids=ids, scored=(len(ids) - 1,), source=source, head=len(head))


def test_micro_batches_never_mix_heads_and_group_similar_lengths() -> None:
    step = [
        _example(HEAD_A, 5, 0),
        _example(HEAD_B, 6, 1),
        _example(HEAD_A, 6, 0),
        _example(HEAD_B, 5, 1),
        _example(HEAD_A, 40, 0),  # much longer: padding the others to it would waste
    ]
    batches = micro_batches(step, batch_size=8, max_tokens=4096)
    assert sorted(sorted(len(e.ids) for e in b) for b in batches) == [[8, 9], [9, 10], [44]]
    assert all(len({e.ids[: e.head] for e in b}) == 1 for b in batches)
    assert sorted(e.ids for b in batches for e in b) == sorted(e.ids for e in step)


def test_micro_batches_respect_the_size_and_token_bounds() -> None:
    step = [_example(HEAD_A, 10, 0) for _ in range(8)]
    assert [len(b) for b in micro_batches(step, batch_size=3, max_tokens=4096)] == [3, 3, 2]
    # Only the tokens after the head count: 10 each, so 25 tokens hold two examples.
    assert [len(b) for b in micro_batches(step, batch_size=8, max_tokens=25)] == [2] * 4


def test_common_prefix_length() -> None:
    assert common_prefix_length([(1, 2, 3), (1, 2, 4), (1, 2)]) == 2
    assert common_prefix_length([(1, 2), (1, 2)]) == 2
    assert common_prefix_length([(5,), (1, 2)]) == 0


def test_step_order_replays_any_step_and_covers_each_epoch() -> None:
    order = StepOrder(count=10, per_step=4, seed=3)
    first_epochs = [i for step in range(5) for i in order.indices(step)]
    assert sorted(first_epochs[:10]) == list(range(10))
    assert sorted(first_epochs[10:20]) == list(range(10))
    assert StepOrder(count=10, per_step=4, seed=3).indices(4) == order.indices(4)
    assert order.steps_for_epochs(1.5) == 4


def test_grouped_step_order_gives_each_step_one_group_and_covers_each_epoch() -> None:
    groups = ["a"] * 9 + ["b"] * 6 + ["c"] * 3  # interleaved below, as a shuffled file is
    keys = [groups[(i * 7) % 18] for i in range(18)]
    order = StepOrder(count=18, per_step=4, seed=3, groups=keys)
    epoch = [i for step in range(4) for i in order.indices(step)] + order.indices(4)[:2]
    assert sorted(epoch) == list(range(18))
    whole = [order.indices(step) for step in range(3)]  # a: 2 blocks, b: 1; the rest mixed
    assert all(len({keys[i] for i in step}) == 1 for step in whole)
    assert sorted(keys[step[0]] for step in whole) == ["a", "a", "b"]
    assert StepOrder(count=18, per_step=4, seed=3, groups=keys).indices(2) == order.indices(2)
    # Step 4 ends epoch 0 with 2 examples and opens epoch 1 with 2 leftovers; the blocks of
    # epoch 1 then start on a step, as in epoch 0.
    stream = [i for step in range(4, 9) for i in order.indices(step)]  # positions 16 to 35
    assert sorted(stream[2:20]) == list(range(18))
    later = [order.indices(step) for step in (5, 6, 7)]
    assert all(len({keys[i] for i in step}) == 1 for step in later)


def test_grouped_step_order_needs_a_key_per_example() -> None:
    with pytest.raises(ValueError, match="3 group keys for 4 examples"):
        StepOrder(count=4, per_step=2, seed=0, groups=["a", "b", "c"])
