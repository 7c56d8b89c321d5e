"""Batch samplers that shard by whole batches, so DDP sees exactly the single-process batches.

Training: a new seeded order every epoch, uniform (the authors' RandomSampler) or length-grouped
(similar lengths together, so dynamic padding pads little). The order is a function of
(seed, epoch) only, and the epoch is told to the sampler by the project (`set_epoch`, called by
`callbacks.epoch_order.EpochOrder` at every epoch start), never left to the trainer: Lightning
calls `set_epoch` on a DataLoader's sampler, not on a custom batch sampler, so a sampler that
waited for it repeated epoch 1's order in every epoch. Evaluation: the dev set in order, cut into
batches, batch i going to rank i % world_size. Sharding whole batches means per-batch quantities
(the |gradient| of a gate, summed over batches for importance) add up across ranks to exactly the
one-process value, and no example is evaluated twice (unlike a padded DistributedSampler).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

BATCHINGS = ("uniform", "length_grouped")


class EpochBatchSampler(Sampler[list[int]]):
    """Training batches in an order drawn from (seed, epoch); whole batches sharded over ranks.

    `batching="uniform"`: the examples shuffled and cut into consecutive batches, as the authors'
    RandomSampler + BatchSampler (the last batch may be short). `"length_grouped"`: examples
    shuffled, cut into mega-batches of `group_batches` batches, sorted by length inside each, cut
    into batches, and the batches shuffled. Under DDP rank r takes batches r, r+W, ...; the batch
    list is padded by repetition so all ranks take equally many steps (otherwise the gradient
    all-reduce would hang).

    The order is drawn when the first batch of an epoch is taken, not when `iter()` is called, so
    an epoch set between the two (the trainer makes the first epoch's iterator before its
    epoch-start hooks run) still counts.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, *, batching: str = "length_grouped",
                 rank: int = 0, world_size: int = 1, group_batches: int = 50):
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.batching = batching
        self.rank = rank
        self.world_size = world_size
        self.group_batches = group_batches
        self.epoch = 0
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue a run killed in `epoch` after `batches_done` of this rank's batches: the next
        iteration over that epoch yields its order without them."""
        self.epoch = int(epoch)
        self._skip = (int(epoch), int(batches_done))

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every rank's batches of `epoch`, in order (rank r takes every W-th from the r-th)."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator).tolist()
        if self.batching == "length_grouped":
            mega = self.batch_size * self.group_batches
            order = [i for start in range(0, n, mega)
                     for i in sorted(order[start:start + mega], key=lambda i: -self.lengths[i])]
        batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.batching == "length_grouped":
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        if len(batches) % self.world_size:
            batches += batches[: self.world_size - len(batches) % self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch  # read at the first batch (this is a generator)
        skip = self._skip[1] if self._skip is not None and self._skip[0] == epoch else 0
        self._skip = None
        yield from self.global_batches(epoch)[self.rank::self.world_size][skip:]

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
