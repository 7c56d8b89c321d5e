"""Statistics over seeds: the t-interval against scipy, the sign-flip test against hand counts."""

import math

import numpy as np
import pytest
from scipy import stats

from lottery.seed_stats import paired_test, sign_flip_test, smallest_p, t_interval


def test_t_interval_matches_scipy():
    values = [0.70, 0.76, 0.82, 0.74, 0.79]
    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert t_interval(values) == pytest.approx(expected)
    # By hand for three seeds: mean 0.76, std 0.06, t(0.975, 2) = 4.302653
    low, high = t_interval([0.70, 0.76, 0.82])
    assert (low, high) == pytest.approx((0.76 - 4.302653 * 0.06 / math.sqrt(3), 0.76 + 4.302653 * 0.06 / math.sqrt(3)))
    assert all(math.isnan(v) for v in t_interval([0.5]))
    assert t_interval([0.5, None, float("nan"), 0.7]) == pytest.approx(stats.t.interval(0.95, 1, loc=0.6, scale=0.1))


def test_sign_flip_test_by_hand():
    # |d| = 1..5 (total 15), observed sum 1 - 2 + 3 + 4 + 5 = 11. Sign patterns with sum >= 11 flip a
    # subset of total <= 2: {}, {1}, {2} -> 3 of 32; two-sided |sum| >= 11: 6 of 32; sum <= 11: 30 of 32.
    d = [1, -2, 3, 4, 5]
    assert sign_flip_test(d, "greater") == 3 / 32
    assert sign_flip_test(d, "two-sided") == 6 / 32
    assert sign_flip_test(d, "less") == 30 / 32


def test_five_seeds_cannot_reach_005_two_sided():
    all_higher = [0.1, 0.2, 0.05, 0.3, 0.15]
    assert smallest_p(5) == 2 / 32 == 0.0625 and smallest_p(5, "greater") == 1 / 32
    assert sign_flip_test(all_higher) == 0.0625  # > 0.05
    assert sign_flip_test(all_higher, "greater") == 1 / 32 < 0.05
    assert sign_flip_test([0, 0, 0]) == 1.0  # no difference at all
    assert math.isnan(sign_flip_test([]))
    with pytest.raises(ValueError, match="alternative"):
        sign_flip_test(all_higher, "bigger")


def test_many_seeds_draw_sign_patterns():
    d = np.arange(1, 19, dtype=float)  # 18 seeds, all positive: exact p would be 1 / 2^18
    assert sign_flip_test(d, "greater") == pytest.approx(1 / 100_001)


def test_paired_test_pairs_by_seed_and_drops_missing_values():
    good = [0.80, 0.70, None, 0.90, 0.85]
    random = [0.50, 0.72, 0.40, 0.55, float("nan")]
    result = paired_test(good, random)
    d = [0.30, -0.02, 0.35]
    assert result["n"] == 3
    assert result["mean_diff"] == pytest.approx(np.mean(d)) and result["std_diff"] == pytest.approx(np.std(d, ddof=1))
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(t_interval(d))
    # sums of +-0.30 +-0.02 +-0.35 >= 0.63: (+, -, +) and (+, +, +) -> 2 of 8
    assert result["p_greater"] == 2 / 8 and result["p_two_sided"] == 4 / 8
    assert result["smallest_p_two_sided"] == 2 / 8 and result["smallest_p_one_sided"] == 1 / 8
    with pytest.raises(ValueError, match="one per seed"):
        paired_test([1.0], [1.0, 2.0])
