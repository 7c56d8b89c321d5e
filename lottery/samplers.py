"""Batch samplers that shard by whole batches, so DDP sees exactly the single-process batches.

Training: length-grouped batches (similar lengths together, so dynamic padding pads little),
seeded and reshuffled per epoch. Evaluation: the dev set in order, cut into batches, batch i going
to rank i % world_size. Sharding whole batches means per-batch quantities (the |gradient| of a
gate, summed over batches for importance) add up across ranks to exactly the one-process value,
and no example is evaluated twice (unlike a padded DistributedSampler).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length examples; call `set_epoch` for a new order each epoch.

    Examples are shuffled, cut into mega-batches of `group_batches` batches, sorted by length
    inside each, cut into batches, and the batches shuffled. Under DDP each rank takes every
    `world_size`-th batch; the batch list is padded by repetition so all ranks take equally many
    steps (otherwise gradient all-reduce would hang).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, *, rank: int = 0,
                 world_size: int = 1, group_batches: int = 50, shuffle: bool = True, group_by_length: bool = True):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.group_batches = group_batches
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue a run killed in `epoch` after `batches_done` of this rank's batches: the next
        iteration over that epoch skips them (the order is the same, it is seeded by the epoch)."""
        self.epoch = epoch
        self._resume = (epoch, batches_done)

    def _global_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        if self.group_by_length:
            mega = self.batch_size * self.group_batches
            order = [i for start in range(0, n, mega)
                     for i in sorted(order[start:start + mega], key=lambda i: -self.lengths[i])]
        batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        if len(batches) % self.world_size:
            batches += batches[: self.world_size - len(batches) % self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        skip = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None
        yield from self._global_batches()[self.rank::self.world_size][skip:]

    def __len__(self) -> int:
        total = math.ceil(len(self.lengths) / self.batch_size)
        return math.ceil(total / self.world_size)


class ShardedSequentialBatchSampler(Sampler[list[int]]):
    """The dataset in order, in batches of `batch_size`; rank r takes batches r, r+W, r+2W, ...

    With `equal_steps`, a rank that runs out of batches yields empty ones (`[]`) so every rank
    takes the same number of steps: Lightning's training loop holds a collective every step.
    Empty batches carry no examples, so sums over batches stay exactly the one-process sums.
    """

    def __init__(self, num_examples: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 equal_steps: bool = False):
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.equal_steps = equal_steps

    def __iter__(self) -> Iterator[list[int]]:
        starts = range(self.rank * self.batch_size, self.num_examples, self.batch_size * self.world_size)
        for start in starts:
            yield list(range(start, min(start + self.batch_size, self.num_examples)))
        for _ in range(len(self) - len(starts)):
            yield []

    def __len__(self) -> int:
        total = math.ceil(self.num_examples / self.batch_size)
        if self.equal_steps:
            return math.ceil(total / self.world_size)
        return len(range(self.rank, total, self.world_size))
