"""Which examples each optimizer step sees, deterministically from the seed.

The examples form an endless stream: epoch 0 in their (already shuffled) order, every later
epoch in its own seeded permutation. Step s takes the next `per_step` examples of the stream,
so any step's batch can be recomputed on resume without replaying the ones before.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from app.finetune.data import Example


class StepOrder:
    """The examples of each optimizer step."""

    def __init__(self, count: int, per_step: int, seed: int) -> None:
        if count < 1 or per_step < 1:
            raise ValueError("need at least one example and one example per step")
        self.count = count
        self.per_step = per_step
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def _epoch_order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(self.count))
            if epoch > 0:
                random.Random(f"{self.seed}/epoch{epoch}").shuffle(order)
            self._orders = {epoch: order}  # steps move forward: keep only the current epoch
        return self._orders[epoch]

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
