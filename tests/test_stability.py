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
