"""Mask-agreement statistics against values worked out by hand from their formulas."""

import math

import numpy as np
import pytest
from scipy.stats import chi2

from lottery.stability import (
    cochrans_q,
    intersection_over_union,
    jaccard,
    krippendorff_alpha_nominal,
    mean_pairwise_jaccard,
    overlap_matrix,
)

# 3 seeds x 4 elements. Surviving sets: s1 = {1, 2}, s2 = {1}, s3 = {1, 2, 4}.
MASKS = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [1, 1, 0, 1],
    ]
)


def test_iou_by_hand():
    # survive in all: {1}; survive in any: {1, 2, 4}
    assert intersection_over_union(MASKS) == pytest.approx(1 / 3)


def test_mean_pairwise_jaccard_by_hand():
    # J(s1,s2) = 1/2, J(s1,s3) = 2/3, J(s2,s3) = 1/3 -> mean 1/2
    assert mean_pairwise_jaccard(MASKS) == pytest.approx((1 / 2 + 2 / 3 + 1 / 3) / 3)


def test_krippendorff_alpha_by_hand():
    # Units (columns) with values [1,1,1], [1,0,1], [0,0,0], [0,0,1]; each has m_u = 3 coders, so
    # each ordered pair of coders adds 1/2 to the coincidence matrix:
    #   o11 = 3 (u1) + 1 (u2) = 4, o00 = 3 (u3) + 1 (u4) = 4, o01 = o10 = 1 (u2) + 1 (u4) = 2
    #   n0 = n1 = 6, n = 12
    # alpha = 1 - (n - 1) * (o01 + o10) / (2 * n0 * n1) = 1 - 11 * 4 / 72 = 7/18
    assert krippendorff_alpha_nominal(MASKS) == pytest.approx(7 / 18)


def test_krippendorff_alpha_skips_units_with_one_coder():
    # A fourth seed that coded nothing, and a fifth unit coded by one seed only, change nothing.
    data = np.full((4, 5), np.nan)
    data[:3, :4] = MASKS
    data[0, 4] = 1
    assert krippendorff_alpha_nominal(data) == pytest.approx(7 / 18)


def test_krippendorff_alpha_undefined_without_variation():
    assert math.isnan(krippendorff_alpha_nominal(np.ones((3, 5))))
    assert math.isnan(krippendorff_alpha_nominal(np.full((3, 5), np.nan)))


def test_krippendorff_alpha_perfect_agreement_is_one():
    row = np.array([1, 0, 1, 1, 0])
    assert krippendorff_alpha_nominal(np.stack([row, row, row])) == pytest.approx(1.0)


@pytest.mark.parametrize("shape, missing", [((5, 40), 0.0), ((3, 25), 0.2), ((7, 144), 0.1)])
def test_krippendorff_alpha_matches_reference_package(shape, missing):
    krippendorff = pytest.importorskip(
        "krippendorff", reason="cross-check only: the `krippendorff` package is not installed"
    )
    rng = np.random.default_rng(sum(shape))
    data = (rng.random(shape) < 0.6).astype(float)
    data[rng.random(shape) < missing] = np.nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert krippendorff_alpha_nominal(data) == pytest.approx(expected, abs=1e-12)


def test_cochrans_q_by_hand():
    # k = 3 seeds; survivors per seed X = (2, 1, 3), N = 6; per element R = (3, 2, 0, 1), sum R^2 = 14
    # Q = (k-1) (k sum X^2 - N^2) / (k N - sum R^2) = 2 (3 * 14 - 36) / (18 - 14) = 3
    # chi-square with 2 df: sf(x) = exp(-x / 2)
    q, p = cochrans_q(MASKS)
    assert q == pytest.approx(3.0)
    assert p == pytest.approx(math.exp(-1.5))


def test_cochrans_q_textbook_example():
    # The usual textbook layout: 6 subjects (blocks) answer 4 treatments A..D with 0/1, worked
    # through by hand; here treatments are the rows. Subject responses (A B C D):
    #   1: 1 1 0 1   2: 1 1 1 1   3: 0 1 0 0   4: 0 0 0 0   5: 1 1 0 1   6: 0 1 0 1
    # X = (A 3, B 5, C 1, D 4), N = 13, sum X^2 = 9 + 25 + 1 + 16 = 51
    # R = (3, 4, 1, 0, 3, 2), sum R^2 = 9 + 16 + 1 + 0 + 9 + 4 = 39
    # Q = 3 (4 * 51 - 169) / (4 * 13 - 39) = 3 * 35 / 13 = 105 / 13
    subjects = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1], [0, 1, 0, 1]])
    q, p = cochrans_q(subjects.T)
    assert q == pytest.approx(105 / 13)
    assert p == pytest.approx(chi2.sf(105 / 13, 3))
    assert 0.04 < p < 0.05


def test_cochrans_q_with_two_seeds_is_mcnemar():
    rng = np.random.default_rng(3)
    masks = (rng.random((2, 60)) < 0.5).astype(int)
    b = np.count_nonzero((masks[0] == 1) & (masks[1] == 0))
    c = np.count_nonzero((masks[0] == 0) & (masks[1] == 1))
    q, _ = cochrans_q(masks)
    assert q == pytest.approx((b - c) ** 2 / (b + c))


def test_cochrans_q_undefined_when_all_elements_agree():
    q, p = cochrans_q(np.array([[1, 0, 1], [1, 0, 1]]))
    assert math.isnan(q) and math.isnan(p)


@pytest.mark.parametrize("row", [[1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
def test_identical_masks_agree_fully(row):
    masks = np.array([row] * 4)
    assert intersection_over_union(masks) == 1.0
    assert mean_pairwise_jaccard(masks) == 1.0


def test_single_seed_has_no_pairs():
    assert math.isnan(mean_pairwise_jaccard(MASKS[:1]))
    assert intersection_over_union(MASKS[:1]) == 1.0


def test_rejects_non_binary_or_wrong_shape():
    with pytest.raises(ValueError, match="0 and 1"):
        intersection_over_union(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="2-D"):
        mean_pairwise_jaccard(np.array([0, 1]))


def test_overlap_matrix():
    names, matrix = overlap_matrix({"cola": MASKS[0], "rte": MASKS[1], "sst2": MASKS[2]})
    assert names == ["cola", "rte", "sst2"]
    expected = np.array([[1, 1 / 2, 2 / 3], [1 / 2, 1, 1 / 3], [2 / 3, 1 / 3, 1]])
    np.testing.assert_allclose(matrix, expected)
    assert jaccard(MASKS[0], MASKS[2]) == pytest.approx(2 / 3)


def test_task_overlap_counts_are_the_papers_common_components():
    # common_components.ipynb: per seed, heads kept in both tasks' masks of that seed; mean, std (ddof=1)
    from lottery.stability import task_overlap_counts

    masks = {
        "rte": {1: np.array([[1, 1], [0, 1]]), 2: np.array([[0, 1], [0, 0]])},
        "cola": {1: np.array([[1, 0], [1, 1]]), 2: np.array([[1, 1], [0, 0]]), 3: np.array([[1, 1], [1, 1]])},
    }
    names, mean, std = task_overlap_counts(masks)
    assert names == ["cola", "rte"]  # sorted; seed 3 is not shared, so it is left out
    np.testing.assert_allclose(mean, [[2.5, 1.5], [1.5, 2.0]])
    np.testing.assert_allclose(std, [[np.std([3, 2], ddof=1), np.std([2, 1], ddof=1)],
                                     [np.std([2, 1], ddof=1), np.std([3, 1], ddof=1)]])
    with pytest.raises(ValueError, match="share no seed"):
        task_overlap_counts({"a": {1: np.ones(2)}, "b": {2: np.ones(2)}})


# ------------------------------------------------------------------------------ chance levels

from itertools import combinations

from scipy.stats import hypergeom, kstest

from lottery.stability import (
    EMPTY_JACCARD,
    agreement_vs_chance,
    chance_jaccard,
    paired_jaccard_vs_chance,
    stability_vs_chance,
    super_survivors_vs_chance,
    survival_counts_vs_chance,
    task_overlap_counts,
    task_overlap_vs_chance,
)


def _all_masks(n: int, kept: int) -> list[np.ndarray]:
    masks = []
    for chosen in combinations(range(n), kept):
        mask = np.zeros(n, dtype=int)
        mask[list(chosen)] = 1
        masks.append(mask)
    return masks


def _brute_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return EMPTY_JACCARD if union == 0 else np.count_nonzero(a & b) / union


@pytest.mark.parametrize("n", range(8))
def test_chance_jaccard_is_the_mean_over_every_pair_of_masks(n):
    for kept_a in range(n + 1):
        for kept_b in range(n + 1):
            pairs = [_brute_jaccard(a, b) for a in _all_masks(n, kept_a) for b in _all_masks(n, kept_b)]
            assert chance_jaccard(kept_a, kept_b, n) == pytest.approx(np.mean(pairs), abs=1e-12), (kept_a, kept_b, n)


def test_chance_jaccard_is_about_p_over_2_minus_p_and_checks_its_input():
    assert chance_jaccard(72, 72, 144) == pytest.approx(0.5 / 1.5, abs=0.01)
    assert chance_jaccard(0, 0, 5) == EMPTY_JACCARD  # two empty masks: as `jaccard` says
    assert chance_jaccard(5, 5, 5) == 1.0 and chance_jaccard(0, 3, 5) == 0.0
    with pytest.raises(ValueError, match="0 to n"):
        chance_jaccard(6, 1, 5)
    with pytest.raises(ValueError, match="whole number"):
        chance_jaccard(1.5, 1, 5)


def test_chance_levels_equal_brute_force_over_every_combination_of_masks():
    # 3 masks of sizes (3, 4, 2) over 6 units: every combination, equally likely under the null.
    sizes, n = (3, 4, 2), 6
    combos = [np.stack(trio) for trio in
              ((a, b, c) for a in _all_masks(n, 3) for b in _all_masks(n, 4) for c in _all_masks(n, 2))]
    observed = np.stack([np.array([1, 1, 1, 0, 0, 0]), np.array([1, 1, 0, 1, 0, 1]), np.array([1, 0, 0, 0, 0, 1])])
    result = agreement_vs_chance(list(observed), permutations=200)
    assert result["mean_jaccard"]["chance"] == pytest.approx(np.mean([mean_pairwise_jaccard(c) for c in combos]))
    assert result["kept_in_all"]["chance"] == pytest.approx(np.mean([c.all(axis=0).sum() for c in combos]))
    assert result["kept_in_all"]["chance"] == pytest.approx(n * np.prod(np.array(sizes) / n))
    assert result["krippendorff_alpha"]["chance"] == pytest.approx(
        np.mean([krippendorff_alpha_nominal(c) for c in combos]))
    # the exact permutation p-value: the share of combinations agreeing at least as much (+1 correction aside)
    exact = np.mean([mean_pairwise_jaccard(c) >= mean_pairwise_jaccard(observed) - 1e-12 for c in combos])
    assert stability_vs_chance(list(observed), permutations=20000)["p"] == pytest.approx(exact, abs=0.015)


def test_observed_statistics_are_the_module_s_own():
    rng = np.random.default_rng(5)
    masks = (rng.random((4, 40)) < 0.6).astype(int)
    result = agreement_vs_chance(list(masks), permutations=100)
    assert result["mean_jaccard"]["observed"] == pytest.approx(mean_pairwise_jaccard(masks))
    assert result["iou"]["observed"] == pytest.approx(intersection_over_union(masks))
    assert result["krippendorff_alpha"]["observed"] == pytest.approx(krippendorff_alpha_nominal(masks))
    assert result["kept_in_all"]["observed"] == masks.all(axis=0).sum()
    for values in result.values():
        assert values["excess"] == pytest.approx(values["observed"] - values["chance"])
        assert 1 / 101 <= values["p"] <= 1


def test_identical_masks_get_the_smallest_p_the_permutations_allow():
    mask = np.zeros((12, 12), dtype=int)
    mask[:, :6] = 1  # 72 of 144 heads
    result = stability_vs_chance([mask] * 5, permutations=999)
    assert result == pytest.approx({"observed": 1.0, "chance": result["chance"], "excess": 1.0 - result["chance"],
                                    "p": 1 / 1000})
    assert result["chance"] == pytest.approx(chance_jaccard(72, 72, 144))
    assert paired_jaccard_vs_chance([(mask, mask)] * 3, permutations=499)["p"] == 1 / 500


def test_masks_that_keep_everything_agree_no_more_than_chance():
    full = np.ones(10, dtype=int)
    result = stability_vs_chance([full, full, full], permutations=50)
    assert result["observed"] == result["chance"] == 1.0 and result["excess"] == 0.0 and result["p"] == 1.0


def test_p_is_uniform_for_masks_drawn_at_random():
    rng = np.random.default_rng(20)
    ps = []
    for draw in range(200):
        sizes = rng.integers(5, 26, size=5)
        masks = [rng.permutation(np.arange(30) < size).astype(int) for size in sizes]
        ps.append(stability_vs_chance(masks, permutations=199, seed=draw)["p"])
    ps = np.array(ps)
    assert kstest(ps, "uniform").pvalue > 0.001
    for level in (0.1, 0.25, 0.5, 0.75):
        assert abs(np.mean(ps <= level) - level) < 3 * np.sqrt(level * (1 - level) / len(ps)) + 0.01, level


def test_p_is_small_for_masks_that_agree_beyond_chance():
    rng = np.random.default_rng(3)
    core = rng.random(144) < 0.5
    masks = [(core | (rng.random(144) < 0.2)).astype(int) for _ in range(5)]  # a shared core plus noise
    result = stability_vs_chance(masks, permutations=999)
    assert result["excess"] > 0.1 and result["p"] == 1 / 1000


def test_paired_jaccard_p_matches_the_hypergeometric_tail():
    # Two masks of 10 and 12 of 30 units sharing 7: p = P(K >= 7), K hypergeometric(30, 10, 12).
    a, b = np.zeros(30, dtype=int), np.zeros(30, dtype=int)
    a[:10], b[3:15] = 1, 1
    result = paired_jaccard_vs_chance([(a, b)], permutations=20000)
    assert result["observed"] == pytest.approx(7 / 15)
    assert result["chance"] == pytest.approx(chance_jaccard(10, 12, 30))
    assert result["p"] == pytest.approx(hypergeom.sf(6, 30, 10, 12), abs=0.01)
    assert stability_vs_chance([a, b], permutations=20000)["p"] == pytest.approx(hypergeom.sf(6, 30, 10, 12), abs=0.01)


def test_task_overlap_against_chance_by_monte_carlo():
    rng = np.random.default_rng(8)
    masks = {task: {seed: (rng.random((3, 4)) < rate).astype(int) for seed in (1, 2, 3)}
             for task, rate in (("cola", 0.8), ("rte", 0.5), ("sst2", 0.3))}
    masks["sst2"] = {seed: masks["rte"][seed].copy() for seed in masks["sst2"]}  # the same survivors as rte
    names, vs = task_overlap_vs_chance(masks, permutations=2000)
    _, mean, _ = task_overlap_counts(masks)
    np.testing.assert_allclose(vs["observed"], mean)
    sizes = {t: np.array([masks[t][s].sum() for s in (1, 2, 3)]) for t in names}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:  # expected shared units per seed = kept_a * kept_b / n
                assert vs["chance"][i, j] == pytest.approx(np.mean(sizes[a] * sizes[b] / 12))
    assert np.isnan(np.diag(vs["p"])).all() and np.allclose(np.diag(vs["chance"]), np.diag(mean))
    # Monte Carlo: random masks of the same sizes share that many on average
    draws = []
    for _ in range(3000):
        draws.append(np.mean([np.count_nonzero(rng.permutation(np.arange(12) < sizes["cola"][k])
                                               & rng.permutation(np.arange(12) < sizes["rte"][k])) for k in range(3)]))
    assert vs["chance"][0, 1] == pytest.approx(np.mean(draws), abs=0.05)
    assert vs["p"][names.index("rte"), names.index("sst2")] < 0.01  # the same survivors: above chance


def test_super_survivors_against_chance_by_monte_carlo():
    rng = np.random.default_rng(11)
    masks = [(rng.random(72) < rate).astype(int) for rate in (0.6, 0.7, 0.8, 0.65, 0.75)]
    result = super_survivors_vs_chance(masks, permutations=500)
    sizes = np.array([m.sum() for m in masks])
    assert result["chance"] == pytest.approx(72 * np.prod(sizes / 72))
    simulated = [np.logical_and.reduce([rng.permutation(np.arange(72) < k) for k in sizes]).sum() for _ in range(4000)]
    assert result["chance"] == pytest.approx(np.mean(simulated), abs=0.15)
    assert result["observed"] == np.logical_and.reduce([m > 0 for m in masks]).sum()


def test_survival_counts_tail_by_enumeration():
    masks = [np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), np.array([1, 1, 1, 0])]  # rates 1/2, 1/4, 3/4
    result = survival_counts_vs_chance(masks)
    assert result["counts"].tolist() == [3, 2, 1, 0]
    assert result["expected"] == pytest.approx(1.5)
    rates = [0.5, 0.25, 0.75]
    tail = {k: 0.0 for k in range(4)}
    for outcome in np.ndindex(2, 2, 2):  # every survived/pruned pattern over the 3 seeds
        probability = np.prod([r if o else 1 - r for r, o in zip(rates, outcome)])
        for k in range(sum(outcome) + 1):
            tail[k] += probability
    np.testing.assert_allclose(result["p"], [tail[3], tail[2], tail[1], tail[0]])
