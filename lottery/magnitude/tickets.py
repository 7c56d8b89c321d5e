"""Good, random and bad weight tickets: random keeps as many weights as good, uniformly; bad keeps as
many of the smallest fine-tuned weights."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from lottery.magnitude.masks import WeightMasks
from lottery.magnitude.selection import check_same_names, magnitudes, smallest, unflatten


def random_weight_ticket(good: WeightMasks, *, seed: int, per_matrix: bool = False) -> WeightMasks:
    """A uniformly random mask keeping exactly as many weights as `good`.

    Default: the same *global* count, drawn uniformly over all masked weights (the paper's
    "random unstructured at the same sparsity"), so per-tensor counts vary. `per_matrix=True`
    keeps each tensor's count instead. Seeded with its own `torch.Generator`.
    """
    generator = torch.Generator().manual_seed(seed)

    def draw(total: int, keep: int) -> Tensor:
        # The `keep` smallest of i.i.d. float64 keys: a uniform subset, 3x faster than randperm.
        keys = torch.rand(total, dtype=torch.float64, generator=generator)
        return smallest(keys, keep, generator)

    if per_matrix:
        return WeightMasks({n: draw(m.numel(), int(m.sum())).view(m.shape) for n, m in good.items()})
    return unflatten(draw(good.num_total(), good.num_kept()), good)


def bad_weight_ticket(params: Mapping[str, Tensor], good: WeightMasks, *, seed: int) -> WeightMasks:
    """Keep the smallest-|w| weights (prune the largest), exactly as many as `good` keeps, globally.

    `params` must hold the unmasked fine-tuned weights (e.g. a `snapshot_cpu` taken before any
    mask was applied), or the zeroed weights would be the first kept. `seed` only orders exact ties.
    """
    check_same_names(params, good)
    generator = torch.Generator().manual_seed(seed)
    weights = magnitudes(params, good, pruned_as_inf=False)
    return unflatten(smallest(weights, good.num_kept(), generator), good)

