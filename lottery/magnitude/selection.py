"""Global selection by magnitude: exactly k entries with the smallest values, over all eligible
tensors at once (the search's pruning steps and the bad and random tickets)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from lottery.magnitude.masks import WeightMasks
from lottery.masks import MaskShapeError

# Below this size torch.kthvalue on everything is fast enough (~0.1 s).
EXACT_SELECTION_MAX = 1 << 22


def kth_value(scores: Tensor, k: int) -> Tensor:
    """The k-th smallest entry (1-based) of the flat `scores`: torch.kthvalue, made fast on large inputs.

    kthvalue over bert-base's 85M weights takes 1.5-2.5 s on 2 cores. Instead, a strided sample
    of ~1M entries brackets the answer (+-8 sigma of its rank), one pass counts the entries below
    the bracket and kthvalue runs on the ~1% inside it. The result is exact; if the bracket
    misses, the full kthvalue is used.
    """
    n = scores.numel()
    if n <= EXACT_SELECTION_MAX:
        return torch.kthvalue(scores, k).values
    sample = scores[:: max(1, n >> 20)]
    size = sample.numel()
    rank, slack = k * size / n, 4.0 * math.sqrt(size)
    low = torch.kthvalue(sample, max(1, int(rank - slack))).values
    high = torch.kthvalue(sample, min(size, int(rank + slack) + 1)).values
    below = int(torch.count_nonzero(scores < low))
    band = scores[(scores >= low) & (scores <= high)]
    if below < k <= below + band.numel():
        return torch.kthvalue(band, k - below).values
    return torch.kthvalue(scores, k).values


def smallest(scores: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """Bool mask of exactly `k` entries of the flat `scores` with the smallest values.

    Entries equal to the k-th value are taken in index order, or in a seeded random order when
    a generator is given, so the count is exact and the choice deterministic.
    """
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= scores.numel():
        return torch.ones_like(scores, dtype=torch.bool)
    kth = kth_value(scores, k)
    chosen = scores <= kth
    surplus = int(torch.count_nonzero(chosen)) - k
    if surplus > 0:  # ties at the k-th value: drop the last ones
        ties = torch.nonzero(scores == kth).squeeze(1)
        if generator is not None:
            ties = ties[torch.randperm(ties.numel(), generator=generator).to(ties.device)]
        chosen[ties[ties.numel() - surplus :]] = False
    return chosen


def magnitudes(params: Mapping[str, Tensor], masks: WeightMasks, *, pruned_as_inf: bool) -> Tensor:
    """|w| of the masked tensors, flattened into one float32 vector (pruned entries +inf if asked)."""
    device = params[next(iter(masks))].device if len(masks) else torch.device("cpu")
    flat = torch.empty(masks.num_total(), dtype=torch.float32, device=device)
    for name, chunk in zip(masks, flat.split([m.numel() for m in masks.values()])):
        torch.abs(params[name].detach().reshape(-1), out=chunk)
        if pruned_as_inf:
            chunk.masked_fill_(~masks.on(name, device).reshape(-1), math.inf)
    if torch.isnan(flat).any():
        raise ValueError("cannot prune by magnitude: some eligible weights are NaN")
    return flat


def unflatten(flat: Tensor, like: WeightMasks) -> WeightMasks:
    chunks = flat.cpu().split([m.numel() for m in like.values()])
    return WeightMasks({name: c.view(m.shape) for (name, m), c in zip(like.items(), chunks)})


def check_same_names(params: Mapping[str, Tensor], masks: WeightMasks) -> None:
    for name, mask in masks.items():
        if name not in params:
            raise MaskShapeError(f"the mask has parameter {name!r} but it is not among the given parameters")
        if params[name].shape != mask.shape:
            raise MaskShapeError(
                f"parameter {name!r}: mask has shape {tuple(mask.shape)} but the parameter has {tuple(params[name].shape)}"
            )

