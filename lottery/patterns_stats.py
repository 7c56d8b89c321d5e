"""Do good tickets keep heads of some attention-pattern type more than they prune them?

Comparing the survivors' type shares with all heads' says little when most heads survive (the
survivors then ARE most heads). The comparison that can show an effect is survivors against
pruned heads: per seed s, with a good head mask that keeps k_s of n heads, the share of type t
among the survivors minus its share among the pruned heads, d[s, t].

Null: survival does not depend on the type, i.e. the survivors are as good as k_s heads picked at
random. Under it d has mean exactly 0; its distribution comes from permuting the heads.

Pooled over seeds: the mean of d[s, t] over the seeds. The seeds are not independent samples of
heads: they are the same n heads each time, and good masks agree across seeds. So the pooled null
draws ONE permutation of the heads and applies it to every seed's mask: each seed keeps its size,
a head that survives in every seed stays one head that survives everywhere, and only the link
between a head's type and its survival is broken. (Treating 5 seeds x n heads as 5n independent
heads would make the pooled p far too small.) The per-seed nulls are the same draws seen one seed
at a time (a uniform permutation of that seed's heads).

p-values are two-sided (no direction is claimed), +1 corrected: (1 + #{|null| >= |observed|}) /
(permutations + 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lottery.patterns import TYPES, PatternError

_DRAW_BUDGET = 1 << 22  # permuted mask entries per batch


@dataclass
class TypeContrast:
    """Survivors against pruned heads, per seed ([seeds, types] arrays, types in `TYPES` order; nan
    for a seed that keeps all heads or none) and pooled over seeds ([types] arrays)."""

    seeds: list
    kept: np.ndarray  # [seeds] heads kept
    pruned: np.ndarray  # [seeds] heads pruned
    survivors_share: np.ndarray
    pruned_share: np.ndarray
    difference: np.ndarray  # survivors_share - pruned_share
    null_low: np.ndarray  # 2.5% and 97.5% of the difference under random masks of the same size
    null_high: np.ndarray
    p: np.ndarray
    pooled_survivors_share: np.ndarray  # means over the seeds with both survivors and pruned heads
    pooled_pruned_share: np.ndarray
    pooled_difference: np.ndarray
    pooled_null_low: np.ndarray
    pooled_null_high: np.ndarray
    pooled_p: np.ndarray
    permutations: int


def _one_hot(types: Sequence[Sequence[Sequence[str]]], heads: int) -> np.ndarray:
    """[seeds, heads, types] indicators from per-seed [layers][heads] type names."""
    index = {name: i for i, name in enumerate(TYPES)}
    flat = [[name for row in seed_types for name in row] for seed_types in types]
    if any(len(names) != heads for names in flat):
        raise PatternError(f"types cover {sorted({len(n) for n in flat})} heads; the masks have {heads}")
    unknown = {name for names in flat for name in names} - set(TYPES)
    if unknown:
        raise PatternError(f"unknown attention pattern type(s) {sorted(unknown)}; types are {', '.join(TYPES)}")
    codes = np.array([[index[name] for name in names] for names in flat])
    return np.eye(len(TYPES))[codes]


def _differences(masks: np.ndarray, one_hot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Survivors' and pruned heads' type shares and their difference, [..., seeds, types], from
    masks [..., seeds, heads] (float) and one_hot [seeds, heads, types]."""
    n = masks.shape[-1]
    kept = masks.sum(axis=-1, keepdims=True)
    kept_types = np.einsum("...sn,snt->...st", masks, one_hot)
    all_types = one_hot.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        survivors = np.where((kept > 0) & (kept < n), kept_types / kept, np.nan)
        pruned = np.where((kept > 0) & (kept < n), (all_types - kept_types) / (n - kept), np.nan)
    return survivors, pruned, survivors - pruned


def _two_sided_p(null: np.ndarray, observed: np.ndarray) -> np.ndarray:
    tolerance = 1e-9
    hits = np.count_nonzero(np.abs(null) >= np.abs(observed)[None] - tolerance, axis=0)
    return np.where(np.isnan(observed), np.nan, (1 + hits) / (len(null) + 1))


def survivor_type_contrast(types: Sequence[Sequence[Sequence[str]]], masks: Sequence, seeds: Sequence | None = None,
                           permutations: int = 10000, seed: int = 0) -> TypeContrast:
    """Type shares of surviving against pruned heads, per seed and pooled, against random masks of
    the same sizes (see the module docstring).

    `types[s]`: the [layers][heads] types that go with `masks[s]` (the same pre-trained types for
    every seed, or each seed's fine-tuned types); `masks[s]`: a [layers, heads] 0/1 good head mask.
    """
    if len(types) != len(masks) or not masks:
        raise PatternError(f"one type grid per mask is needed, got {len(types)} type grids for {len(masks)} masks")
    if permutations < 1:
        raise PatternError(f"permutations must be >= 1, got {permutations}")
    flat = np.array([np.asarray(mask).reshape(-1) for mask in masks], dtype=float)
    if not np.isin(flat, (0, 1)).all():
        raise PatternError("head masks must contain only 0 and 1")
    n_seeds, n = flat.shape
    one_hot = _one_hot(types, n)
    survivors, pruned, difference = _differences(flat, one_hot)
    usable = ~np.isnan(difference[:, 0])
    rng = np.random.default_rng(seed)
    batch = max(1, _DRAW_BUDGET // max(1, n_seeds * n))
    null_parts = []
    for start in range(0, permutations, batch):
        count = min(batch, permutations - start)
        order = rng.permuted(np.broadcast_to(np.arange(n), (count, n)), axis=-1)  # one permutation for all seeds
        null_parts.append(_differences(flat[:, order].transpose(1, 0, 2), one_hot)[2])
    null = np.concatenate(null_parts)  # [permutations, seeds, types]

    def mean_over_usable(values: np.ndarray, axis: int = 0) -> np.ndarray:
        shape = list(values.shape)
        del shape[axis]
        return np.compress(usable, values, axis=axis).mean(axis=axis) if usable.any() else np.full(shape, np.nan)

    low, high = np.full(difference.shape, np.nan), np.full(difference.shape, np.nan)
    pooled_null = mean_over_usable(null, axis=1)
    pooled_difference = mean_over_usable(difference)
    pooled_low, pooled_high = np.full(len(TYPES), np.nan), np.full(len(TYPES), np.nan)
    if usable.any():
        low[usable], high[usable] = np.percentile(null[:, usable], [2.5, 97.5], axis=0)
        pooled_low, pooled_high = np.percentile(pooled_null, [2.5, 97.5], axis=0)
    kept = flat.sum(axis=1)
    return TypeContrast(
        seeds=list(seeds) if seeds is not None else list(range(n_seeds)), kept=kept, pruned=n - kept,
        survivors_share=survivors, pruned_share=pruned, difference=difference, null_low=low, null_high=high,
        p=_two_sided_p(null, difference), pooled_survivors_share=mean_over_usable(survivors),
        pooled_pruned_share=mean_over_usable(pruned), pooled_difference=pooled_difference,
        pooled_null_low=pooled_low, pooled_null_high=pooled_high,
        pooled_p=_two_sided_p(pooled_null, pooled_difference), permutations=permutations)
