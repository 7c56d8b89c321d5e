"""How much pruning masks agree across seeds (and across tasks), in plain numpy/scipy.

All functions take masks as a 2-D array ``[n_seeds, n_elements]`` with 1 = the element (a head,
an MLP, a weight) survived pruning in that seed. The paper uses these statistics to show that good
structured subnetworks differ a lot between fine-tuning seeds.

Conventions for the edge cases (documented here once, used throughout):
- two empty surviving sets are identical, so their Jaccard similarity (and the IoU of masks that
  keep nothing in any seed) is 1.0;
- a mean over seed pairs needs at least two seeds, otherwise it is nan;
- Krippendorff's alpha and Cochran's Q are nan when the data have no variation to explain.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import chi2

__all__ = [
    "cochrans_q",
    "intersection_over_union",
    "jaccard",
    "krippendorff_alpha_nominal",
    "mean_pairwise_jaccard",
    "overlap_matrix",
    "task_overlap_counts",
]


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
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


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
    pairs = np.where(unions[i, j] == 0, 1.0, intersections[i, j] / np.maximum(unions[i, j], 1))
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
    counts = np.array([[[np.count_nonzero(flat[a][s] & flat[b][s]) for b in tasks] for a in tasks] for s in seeds],
                      dtype=float)
    std = counts.std(axis=0, ddof=1) if len(seeds) > 1 else np.full(counts.shape[1:], np.nan)
    return tasks, counts.mean(axis=0), std
