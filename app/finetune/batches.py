"""Which examples each optimizer step sees, deterministically from the seed.

The examples form an endless stream: epoch 0 in their (already shuffled) order, every later
epoch in its own seeded permutation. Step s takes the next `per_step` examples of the stream,
so any step's batch can be recomputed on resume without replaying the ones before.

With `groups` (one key per example: its prompt head, that is its taxonomy), each epoch is cut
into blocks of `per_step` examples of one group, in a seeded order of blocks, so that a step
computes its shared head once per micro-batch instead of once per taxonomy it draws from. A
group's last examples that do not fill a block go into mixed blocks at the epoch's end. Where
the count is not a multiple of `per_step`, a step spans two epochs: each later epoch opens
with as many of its leftovers as that step needs, so that its blocks start on a step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence

from app.finetune.data import Example


class StepOrder:
    """The examples of each optimizer step."""

    def __init__(
        self, count: int, per_step: int, seed: int, groups: Sequence[Hashable] | None = None
    ) -> None:
        if count < 1 or per_step < 1:
            raise ValueError("need at least one example and one example per step")
        if groups is not None and len(groups) != count:
            raise ValueError(f"{len(groups)} group keys for {count} examples")
        self.count = count
        self.per_step = per_step
        self.seed = seed
        self.groups = groups
        self._orders: dict[int, list[int]] = {}

    def _epoch_order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(self.count))
            if epoch > 0:
                random.Random(f"{self.seed}/epoch{epoch}").shuffle(order)
            if self.groups is not None:
                order = self._in_blocks(order, epoch)
            self._orders = {epoch: order}  # steps move forward: keep only the current epoch
        return self._orders[epoch]

    def _in_blocks(self, order: list[int], epoch: int) -> list[int]:
        """`order` rearranged into seeded blocks of `per_step` examples of one group each."""
        assert self.groups is not None
        members: dict[Hashable, list[int]] = {}
        for index in order:
            members.setdefault(self.groups[index], []).append(index)
        blocks: list[list[int]] = []
        rest: list[int] = []
        for indices in members.values():  # first-seen order: deterministic for a given order
            whole = len(indices) - len(indices) % self.per_step
            blocks += [indices[i : i + self.per_step] for i in range(0, whole, self.per_step)]
            rest += indices[whole:]
        random.Random(f"{self.seed}/blocks{epoch}").shuffle(blocks)
        opening = (-epoch * self.count) % self.per_step  # of the step begun the epoch before
        lead = rest[:opening]  # where there are too few leftovers, blocks start off a step
        return lead + [index for block in blocks for index in block] + rest[len(lead) :]

    def indices(self, step: int) -> list[int]:
        """Indices of the examples of step `step` (0-based)."""
        start = step * self.per_step
        return [
            self._epoch_order(position // self.count)[position % self.count]
            for position in range(start, start + self.per_step)
        ]

    def steps_for_epochs(self, epochs: float) -> int:
        """Steps needed to see `epochs` times the examples (at least one)."""
        return max(1, math.ceil(epochs * self.count / self.per_step))


PADDING_SLACK = 1.25  # a micro-batch holds at most this many padded tokens per real one


def micro_batches(
    examples: Sequence[Example], batch_size: int, max_tokens: int
) -> list[list[Example]]:
    """Split a step's examples into micro-batches that share a prompt head, of similar lengths.

    Examples of one taxonomy go together, so that their shared head (instructions and taxonomy)
    is computed once per micro-batch. Counting only the tokens after the head, each micro-batch
    has at most `batch_size` examples, `max_tokens` padded tokens (an example longer than that
    goes alone) and PADDING_SLACK padded tokens per real token: on a CPU a long call padded
    into a batch of short ones costs as much as the padding, batching itself gains little.
    """
    groups: dict[tuple[int, ...], list[Example]] = {}
    for example in examples:
        groups.setdefault(example.ids[: example.head], []).append(example)
    batches: list[list[Example]] = []
    for group in groups.values():
        current: list[Example] = []
        real = 0
        for example in sorted(group, key=lambda e: len(e.ids)):
            width = len(example.ids) - example.head  # the longest so far: sorted ascending
            padded = (len(current) + 1) * width
            full = len(current) >= batch_size or padded > max_tokens
            if current and (full or padded > PADDING_SLACK * (real + width)):
                batches.append(current)
                current, real = [], 0
            current.append(example)
            real += width
        if current:
            batches.append(current)
    return batches
