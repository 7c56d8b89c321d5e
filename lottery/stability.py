"""How much pruning masks agree across seeds (and across tasks), in plain numpy/scipy.

All functions take masks as a 2-D array ``[n_seeds, n_elements]`` with 1 = the element (a head,
an MLP, a weight) survived pruning in that seed. The paper uses these statistics to show that good
structured subnetworks differ a lot between fine-tuning seeds.

Conventions for the edge cases (documented here once, used throughout):
- two empty surviving sets are identical, so their Jaccard similarity (and the IoU of masks that
  keep nothing in any seed) is 1.0 (`EMPTY_JACCARD`); the chance levels follow the same rule, so
  masks that keep nothing agree exactly as much as chance says (excess 0);
- a mean over seed pairs needs at least two seeds, otherwise it is nan;
- Krippendorff's alpha and Cochran's Q are nan when the data have no variation to explain.

Chance levels (`chance_jaccard`, `stability_vs_chance`, `agreement_vs_chance`,
`task_overlap_vs_chance`, `super_survivors_vs_chance`, `paired_jaccard_vs_chance`,
`survival_counts_vs_chance`): what the same statistic gives for independent, uniformly random masks
that keep exactly as many units as the observed ones (each mask permuted on its own). Masks of
survival rate p already share about p / (2 - p) of their units by chance, so an agreement figure
says something only beside that level. Each comparison returns ``observed``, ``chance`` (the
expectation under that null, exact where a formula exists), ``excess`` (observed - chance) and ``p``
(one-sided permutation p-value that the observed agreement is at least as high, with the +1
correction: ``(1 + #{null >= observed}) / (permutations + 1)``; masks so small or so full that every
permutation agrees as much give a large p, as they should). Permutations are drawn from
``numpy.random.default_rng(seed)``: the same call gives the same p.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache

import numpy as np
from scipy.stats import chi2, hypergeom

__all__ = [
    "EMPTY_JACCARD",
    "agreement_vs_chance",
    "chance_jaccard",
    "cochrans_q",
    "intersection_over_union",
    "jaccard",
    "krippendorff_alpha_nominal",
    "mean_pairwise_jaccard",
    "overlap_matrix",
    "paired_jaccard_vs_chance",
    "stability_vs_chance",
    "super_survivors_vs_chance",
    "survival_counts_vs_chance",
    "task_overlap_counts",
    "task_overlap_vs_chance",
]

EMPTY_JACCARD = 1.0  # the Jaccard similarity of two empty sets (see the module docstring)


def _binary(masks: np.ndarray, ndim: int = 2) -> np.ndarray:
    """``masks`` as a bool array, after checking its shape and that it holds only 0 and 1."""
    array = np.asarray(masks)
    if array.ndim != ndim:
        raise ValueError(f"expected a {ndim}-D 0/1 mask array, got shape {array.shape}")
    if array.size and not np.isin(array, (0, 1)).all():
        raise ValueError("masks must contain only 0 and 1 (1 = survived)")
    return array.astype(bool)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity |a and b| / |a or b| of two 1-D 0/1 masks (1.0 if both are empty)."""
    a, b = _binary(a, ndim=1), _binary(b, ndim=1)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in length: {a.shape[0]} vs {b.shape[0]}")
    union = np.count_nonzero(a | b)
    return EMPTY_JACCARD if union == 0 else np.count_nonzero(a & b) / union


def intersection_over_union(masks: np.ndarray) -> float:
    """|elements surviving in every seed| / |elements surviving in any seed|."""
    m = _binary(masks)
    union = np.count_nonzero(m.any(axis=0))
    return 1.0 if union == 0 else np.count_nonzero(m.all(axis=0)) / union


def mean_pairwise_jaccard(masks: np.ndarray) -> float:
    """Mean Jaccard similarity of the surviving sets over all unordered pairs of seeds."""
    m = _binary(masks).astype(np.int64)
    n_seeds = m.shape[0]
    if n_seeds < 2:
        return float("nan")
    intersections = m @ m.T
    sizes = np.diag(intersections)
    unions = sizes[:, None] + sizes[None, :] - intersections
    i, j = np.triu_indices(n_seeds, k=1)
    pairs = np.where(unions[i, j] == 0, EMPTY_JACCARD, intersections[i, j] / np.maximum(unions[i, j], 1))
    return float(pairs.mean())


def krippendorff_alpha_nominal(masks: np.ndarray) -> float:
    """Krippendorff's alpha at the nominal level: seeds are coders, elements are units.

    ``masks`` may hold any category codes (not only 0/1) and nan for a missing value. Only
    pairable values count: a unit coded by fewer than two coders is dropped. With the coincidence
    matrix ``o[c, k] = sum_u (number of c-k pairs of different coders in u) / (m_u - 1)`` and its
    marginals ``n_c``, ``alpha = 1 - (n - 1) * sum_{c != k} o[c, k] / sum_{c != k} n_c * n_k``.

    Returns nan when alpha is undefined: fewer than two pairable values, or only one category
    among them (no variation, so expected disagreement is 0; e.g. every seed keeps every head).
    """
    data = np.asarray(masks, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D [coders, units] array, got shape {data.shape}")
    categories = np.unique(data[~np.isnan(data)])
    if categories.size < 2:
        return float("nan")
    # counts[u, c]: how many coders gave unit u the category c (nan equals no category)
    counts = (data.T[:, :, None] == categories[None, None, :]).sum(axis=1).astype(float)
    pairable = counts.sum(axis=1)
    counts, pairable = counts[pairable >= 2], pairable[pairable >= 2]
    if pairable.size == 0:
        return float("nan")
    weights = 1.0 / (pairable - 1.0)
    coincidences = np.einsum("u,uc,uk->ck", weights, counts, counts) - np.diag(weights @ counts)
    marginals = coincidences.sum(axis=1)
    n = marginals.sum()
    observed = coincidences.sum() - np.trace(coincidences)
    expected = marginals.sum() ** 2 - (marginals**2).sum()
    if expected == 0:
        return float("nan")
    return float(1.0 - (n - 1.0) * observed / expected)


def cochrans_q(masks: np.ndarray) -> tuple[float, float]:
    """Cochran's Q test that all seeds keep elements at the same rate.

    Seeds are the k treatments and elements the blocks:
    ``Q = (k - 1) * (k * sum_j X_j**2 - N**2) / (k * N - sum_i R_i**2)`` with X_j the survivors of
    seed j, R_i the seeds in which element i survives and N the total; p is the chi-square(k - 1)
    upper tail. Returns (nan, nan) with fewer than two seeds or when every element is kept by all
    seeds or by none (the denominator is 0).
    """
    m = _binary(masks).astype(np.int64)
    k = m.shape[0]
    per_seed, per_element = m.sum(axis=1), m.sum(axis=0)
    total = per_seed.sum()
    denominator = k * total - (per_element**2).sum()
    if k < 2 or denominator == 0:
        return float("nan"), float("nan")
    q = (k - 1) * (k * (per_seed**2).sum() - total**2) / denominator
    return float(q), float(chi2.sf(q, k - 1))


def overlap_matrix(named_masks: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Pairwise Jaccard similarity between named 1-D masks (e.g. tasks' super-good head masks).

    Returns the names in the mapping's order and the symmetric ``[n, n]`` matrix.
    """
    names = list(named_masks)
    masks = [_binary(named_masks[name], ndim=1) for name in names]
    matrix = np.ones((len(names), len(names)))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            matrix[i, j] = matrix[j, i] = jaccard(masks[i], masks[j])
    return names, matrix


def task_overlap_counts(masks: Mapping[str, Mapping[object, np.ndarray]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The paper's task x task overlap (the authors' experiment_analysis/common_components.ipynb).

    ``masks[task][seed]``: a 0/1 mask (any shape: heads [L, H] or MLPs [L]) of that task's good
    ticket for that seed. For each seed, cell (a, b) counts the elements kept in both task a's and
    task b's masks of that seed (the diagonal: the elements a keeps); returns the tasks sorted by
    name and the mean and std (Bessel; nan with one seed) of the counts over the seeds that every
    task has.
    """
    tasks, seeds, stacked = _aligned_task_masks(masks)
    counts = np.einsum("stn,sun->stu", stacked.astype(np.int64), stacked.astype(np.int64)).astype(float)
    std = counts.std(axis=0, ddof=1) if len(seeds) > 1 else np.full(counts.shape[1:], np.nan)
    return tasks, counts.mean(axis=0), std


def _aligned_task_masks(masks: Mapping[str, Mapping[object, np.ndarray]]) -> tuple[list[str], list, np.ndarray]:
    """Tasks sorted by name, the seeds every task has, and the flat masks as bool [seeds, tasks, units]."""
    tasks = sorted(masks)
    if not tasks:
        raise ValueError("task_overlap_counts needs the masks of at least one task")
    seeds = set(masks[tasks[0]])
    for task in tasks[1:]:
        seeds &= set(masks[task])
    if not seeds:
        raise ValueError(f"the tasks share no seed: {({t: sorted(map(str, masks[t])) for t in tasks})}")
    seeds = sorted(seeds, key=str)
    flat = {t: {s: _binary(np.asarray(masks[t][s]).reshape(1, -1))[0] for s in seeds} for t in tasks}
    sizes = {flat[t][s].shape for t in tasks for s in seeds}
    if len(sizes) > 1:
        raise ValueError(f"masks differ in size: {sorted(sizes)}")
    return tasks, seeds, np.array([[flat[t][s] for t in tasks] for s in seeds], dtype=bool)


# ------------------------------------------------------------------------------ chance levels

_DRAW_BUDGET = 1 << 22  # mask entries drawn at once: bounds memory for long masks or many permutations


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number of units, got {value!r}")
    return int(value)


def chance_jaccard(kept_a: int, kept_b: int, n: int) -> float:
    """Expected Jaccard similarity of two independent, uniformly random masks keeping `kept_a` and
    `kept_b` of the same `n` units.

    Exact: the intersection K of the two masks is hypergeometric (n units, kept_a of them marked,
    kept_b drawn), and E[J] = sum_k P(K = k) * k / (kept_a + kept_b - k). Two empty masks have an
    empty union; their Jaccard is `EMPTY_JACCARD` (1.0), as in `jaccard`, so the chance level of
    masks that keep nothing equals what they show. About p / (2 - p) for two masks of survival rate p.
    """
    a, b, n = (_check_count(value, name) for value, name in ((kept_a, "kept_a"), (kept_b, "kept_b"), (n, "n")))
    if n < 0 or not (0 <= a <= n and 0 <= b <= n):
        raise ValueError(f"masks keep 0 to n units: got kept_a={a}, kept_b={b}, n={n}")
    return _chance_jaccard(a, b, n)


@lru_cache(maxsize=65536)
def _chance_jaccard(a: int, b: int, n: int) -> float:
    if a == 0 and b == 0:
        return EMPTY_JACCARD
    if max(a, b) == n:  # one mask keeps everything: the other lies inside it
        return min(a, b) / n
    shared = np.arange(max(0, a + b - n), min(a, b) + 1)
    return float(np.sum(hypergeom.pmf(shared, n, a, b) * shared / (a + b - shared)))


def _result(observed: float, chance: float, null: np.ndarray | None) -> dict[str, float]:
    """observed, chance, excess and the one-sided permutation p (nan when observed is nan)."""
    if null is None or np.isnan(observed):
        p = float("nan")
    else:
        tolerance = 1e-9 * max(1.0, abs(observed))
        p = (1 + np.count_nonzero(null >= observed - tolerance)) / (null.size + 1)
    return {"observed": float(observed), "chance": float(chance), "excess": float(observed - chance), "p": float(p)}


def _stack(masks: Sequence[np.ndarray]) -> np.ndarray:
    """A sequence of same-shape 0/1 masks (any shape each) as bool [masks, units]."""
    flat = [np.asarray(mask).reshape(-1) for mask in masks]
    if not flat:
        raise ValueError("no masks given")
    shapes = {np.asarray(mask).shape for mask in masks}
    if len(shapes) > 1:
        raise ValueError(f"masks differ in shape: {sorted(shapes)}")
    return _binary(np.stack(flat))


def _random_batches(sizes: np.ndarray, n: int, permutations: int, seed: int, fixed: np.ndarray | None = None
                    ) -> Iterator[np.ndarray]:
    """`permutations` draws, in batches, of len(sizes) independent uniformly random masks over n
    units, mask i keeping sizes[i] units: bool arrays [batch, len(sizes), n].

    Masks flagged in `fixed` are not drawn but kept at one arrangement (the first sizes[i] units):
    for a statistic that does not change when the units are relabelled, fixing one mask of a group
    that is compared only within itself (one per seed) leaves its distribution unchanged, since
    relabelling the units by the inverse of that mask's permutation maps one draw onto the other.
    """
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    rng = np.random.default_rng(seed)
    base = np.arange(n)[None, :] < np.asarray(sizes).reshape(-1, 1)
    free = np.ones(len(base), dtype=bool) if fixed is None else ~np.asarray(fixed, dtype=bool)
    batch = max(1, _DRAW_BUDGET // max(1, base.size))
    for start in range(0, permutations, batch):
        count = min(batch, permutations - start)
        draws = np.empty((count, *base.shape), dtype=bool)
        draws[:, ~free] = base[~free]
        draws[:, free] = rng.permuted(np.broadcast_to(base[free], (count, int(free.sum()), n)), axis=-1)
        yield draws


def _first_of_each(groups: int, size: int) -> np.ndarray:
    """Flags for `groups` consecutive groups of `size` masks: the first mask of each group."""
    flags = np.zeros((groups, size), dtype=bool)
    flags[:, 0] = True
    return flags.reshape(-1)


def _pair_jaccards(gram: np.ndarray, sizes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Jaccard of mask pairs (i, j) from intersections `gram[..., i, j]` and mask sizes."""
    shared = gram[..., i, j]
    union = sizes[i] + sizes[j] - shared
    return np.where(union > 0, shared / np.maximum(union, 1), EMPTY_JACCARD)


def _alpha_from_shared(pair_shared_total: np.ndarray | float, sizes: np.ndarray, n: int) -> np.ndarray:
    """Krippendorff's nominal alpha of complete 0/1 data (m masks over n units) from the sum over
    mask pairs of their intersections: with r_u the masks keeping unit u, sum_u r_u^2 = N1 + 2 S,
    the disagreement D = 2 (m N1 - sum_u r_u^2) / (m - 1) and alpha = 1 - (m n - 1) D / (2 N0 N1)."""
    m, kept = sizes.size, float(sizes.sum())
    values, pruned = m * n, m * n - kept
    if m < 2 or kept == 0 or pruned == 0:
        return np.full(np.shape(pair_shared_total), np.nan)
    disagreement = 2.0 * (m * kept - kept - 2.0 * np.asarray(pair_shared_total, dtype=float)) / (m - 1)
    return 1.0 - (values - 1.0) * disagreement / (2.0 * pruned * kept)


def agreement_vs_chance(masks: Sequence[np.ndarray], permutations: int = 10000, seed: int = 0
                        ) -> dict[str, dict[str, float]]:
    """The agreement of same-shape 0/1 masks (seeds) beside its chance level, for each statistic:

    - ``mean_jaccard``: mean pairwise Jaccard; chance = mean over pairs of `chance_jaccard` (exact);
    - ``iou``: |kept in all| / |kept in any|; chance = the mean over the permutations (estimated);
    - ``kept_in_all``: units every mask keeps (super-survivors); chance = n * prod(kept_i / n) (exact:
      a unit is in mask i with probability kept_i / n, independently);
    - ``krippendorff_alpha``: nominal alpha (= `krippendorff_alpha_nominal` on these masks); chance
      exact (alpha is linear in the masks' pairwise intersections, whose expectations are
      kept_i * kept_j / n).

    Each: {observed, chance, excess, p}, p from the same `permutations` draws (one-sided: the
    observed agreement is at least as high). nan where a statistic is undefined (one mask has no
    pairs; alpha without variation).
    """
    stacked = _stack(masks)
    m, n = stacked.shape
    sizes = stacked.sum(axis=1).astype(np.int64)
    i, j = np.triu_indices(m, k=1)
    gram = (stacked.astype(np.int64) @ stacked.T.astype(np.int64)).astype(float)
    kept_all, kept_any = int(stacked.all(axis=0).sum()), int(stacked.any(axis=0).sum())
    observed = {
        "mean_jaccard": float(_pair_jaccards(gram, sizes, i, j).mean()) if m > 1 else float("nan"),
        "iou": kept_all / kept_any if kept_any else EMPTY_JACCARD,
        "kept_in_all": float(kept_all),
        "krippendorff_alpha": float(_alpha_from_shared(gram[i, j].sum(), sizes, n)),
    }
    null: dict[str, list[np.ndarray]] = {name: [] for name in observed}
    for batch in _random_batches(sizes, n, permutations, seed, fixed=_first_of_each(1, m)):
        values = batch.astype(np.float32)
        batch_gram = values @ values.transpose(0, 2, 1)
        all_kept, any_kept = batch.all(axis=1).sum(axis=-1), batch.any(axis=1).sum(axis=-1)
        if m > 1:
            null["mean_jaccard"].append(_pair_jaccards(batch_gram, sizes, i, j).mean(axis=-1))
        null["iou"].append(np.where(any_kept > 0, all_kept / np.maximum(any_kept, 1), EMPTY_JACCARD))
        null["kept_in_all"].append(all_kept.astype(float))
        null["krippendorff_alpha"].append(_alpha_from_shared(batch_gram[:, i, j].sum(axis=-1), sizes, n))
    draws = {name: np.concatenate(parts) if parts else None for name, parts in null.items()}
    expected_shared = float(sum(sizes[a] * sizes[b] for a, b in zip(i, j)) / n) if n else 0.0
    chance = {
        "mean_jaccard": float(np.mean([chance_jaccard(sizes[a], sizes[b], n) for a, b in zip(i, j)])) if m > 1
        else float("nan"),
        "iou": float(draws["iou"].mean()),
        "kept_in_all": float(n * np.prod(sizes / n)) if n else 0.0,
        "krippendorff_alpha": float(_alpha_from_shared(expected_shared, sizes, n)),
    }
    return {name: _result(observed[name], chance[name], draws[name]) for name in observed}


def stability_vs_chance(masks: Sequence[np.ndarray], permutations: int = 10000, seed: int = 0) -> dict[str, float]:
    """Mean pairwise Jaccard of same-shape 0/1 masks against independent random masks of the same
    sizes: {observed, chance (exact, the mean over pairs of `chance_jaccard`), excess, p (one-sided
    permutation p-value, each mask permuted independently, +1 corrected: identical masks that keep
    some but not all units give 1 / (permutations + 1))}."""
    return agreement_vs_chance(masks, permutations, seed)["mean_jaccard"]


def super_survivors_vs_chance(masks: Sequence[np.ndarray], permutations: int = 10000, seed: int = 0
                              ) -> dict[str, float]:
    """Units kept by every mask (super-survivors) against independent random masks of the same
    sizes: chance = n * prod(kept_i / n); p one-sided (at least as many). For units pruned in every
    mask, pass the complements ``1 - mask``."""
    return agreement_vs_chance(masks, permutations, seed)["kept_in_all"]


def paired_jaccard_vs_chance(pairs: Sequence[tuple[np.ndarray, np.ndarray]], permutations: int = 10000,
                             seed: int = 0) -> dict[str, float]:
    """Mean over pairs (e.g. one per seed: two protocols' masks on the same fine-tuned model) of the
    Jaccard of the pair's two masks, against independent random masks of the same sizes (chance: the
    mean of `chance_jaccard`; p one-sided, every mask permuted on its own)."""
    if not pairs:
        raise ValueError("no mask pairs given")
    stacked = _stack([mask for pair in pairs for mask in pair])
    n = stacked.shape[1]
    sizes = stacked.sum(axis=1).astype(np.int64)
    first, second = np.arange(0, len(sizes), 2), np.arange(1, len(sizes), 2)

    def mean_jaccard(batch: np.ndarray) -> np.ndarray:
        shared = (batch[..., first, :] & batch[..., second, :]).sum(axis=-1)
        union = sizes[first] + sizes[second] - shared
        return np.where(union > 0, shared / np.maximum(union, 1), EMPTY_JACCARD).mean(axis=-1)

    observed = float(mean_jaccard(stacked))
    fixed = _first_of_each(len(pairs), 2)
    null = np.concatenate([mean_jaccard(batch) for batch in _random_batches(sizes, n, permutations, seed, fixed)])
    chance = float(np.mean([chance_jaccard(sizes[a], sizes[b], n) for a, b in zip(first, second)]))
    return _result(observed, chance, null)


def task_overlap_vs_chance(masks: Mapping[str, Mapping[object, np.ndarray]], permutations: int = 10000,
                           seed: int = 0) -> tuple[list[str], dict[str, np.ndarray]]:
    """`task_overlap_counts` beside its chance level: the tasks (sorted) and [tasks, tasks] arrays
    ``observed`` (mean over the shared seeds of the units kept by both tasks' masks of a seed),
    ``chance`` (mean over seeds of kept_a * kept_b / n: the expected intersection of independent
    random masks of those sizes), ``excess`` and ``p`` (one-sided; every task's mask of every seed
    permuted on its own). The diagonal (what a task keeps) is fixed by the sizes: its chance is the
    observed value and its p is nan.
    """
    tasks, _seeds, stacked = _aligned_task_masks(masks)
    n_seeds, n_tasks, n = stacked.shape
    as_float = stacked.astype(float)
    observed = np.einsum("stn,sun->tu", as_float, as_float) / n_seeds
    sizes = stacked.sum(axis=-1)  # [seeds, tasks]
    chance = np.einsum("st,su->tu", sizes, sizes) / (n * n_seeds) if n else np.zeros_like(observed)
    exceed = np.zeros((n_tasks, n_tasks), dtype=np.int64)
    total = 0
    for batch in _random_batches(sizes.reshape(-1), n, permutations, seed, fixed=_first_of_each(n_seeds, n_tasks)):
        values = batch.reshape(len(batch), n_seeds, n_tasks, n).astype(np.float32)
        null = np.einsum("cstn,csun->ctu", values, values) / n_seeds
        exceed += np.count_nonzero(null >= observed[None] - 1e-9 * np.maximum(1.0, observed[None]), axis=0)
        total += len(batch)
    p = (1 + exceed) / (total + 1)
    diagonal = np.eye(n_tasks, dtype=bool)
    chance[diagonal], p = observed[diagonal], np.where(diagonal, np.nan, p)
    return tasks, {"observed": observed, "chance": chance, "excess": observed - chance, "p": p}


def survival_counts_vs_chance(masks: Sequence[np.ndarray]) -> dict[str, np.ndarray | float]:
    """For each unit, in how many masks it survives, against independent random masks of the same
    sizes: the count of a unit is then a sum of independent Bernoulli(kept_i / n) draws (Poisson
    binomial). Returns ``counts`` [units], ``expected`` (sum_i kept_i / n, the same for every unit)
    and ``p`` [units], the exact upper tail P(count >= observed) (one-sided; not corrected for the
    number of units)."""
    stacked = _stack(masks)
    m, n = stacked.shape
    rates = stacked.sum(axis=1) / n if n else np.zeros(m)
    pmf = np.zeros(m + 1)
    pmf[0] = 1.0
    for rate in rates:  # the Poisson-binomial distribution, one mask at a time
        pmf[1:] = pmf[1:] * (1 - rate) + pmf[:-1] * rate
        pmf[0] *= 1 - rate
    upper = np.cumsum(pmf[::-1])[::-1]  # upper[k] = P(count >= k)
    counts = stacked.sum(axis=0)
    return {"counts": counts, "expected": float(rates.sum()), "p": np.minimum(upper[counts], 1.0)}
