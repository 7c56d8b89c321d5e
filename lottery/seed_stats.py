"""What a handful of seeds can say about a table's numbers, in plain numpy/scipy.

- `t_interval`: the 95% interval of a mean over seeds (Student's t, n - 1 degrees of freedom);
- `sign_flip_test`: an exact paired permutation test over seeds. Under the null that the two
  conditions (say good and random tickets) are exchangeable within a seed, each seed's difference
  is as likely positive as negative, so the observed sum of differences is compared with the sums
  under all 2^n sign patterns. Exact, no normality assumed; its price is a floor on p:
  `smallest_p(n)` = 2 / 2^n two-sided (0.0625 with 5 seeds, so no two-sided test of 5 seeds can
  reach 0.05) and 1 / 2^n one-sided (0.031 with 5 seeds);
- `paired_test`: both, for the per-seed values of two rows of the table.

Seeds with a missing or nan value are left out (of both rows, for a paired test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import t as student_t

__all__ = ["ALTERNATIVES", "EXACT_SEEDS", "paired_test", "sign_flip_test", "smallest_p", "t_interval"]

ALTERNATIVES = ("two-sided", "greater", "less")
EXACT_SEEDS = 16  # up to 2^16 sign patterns are enumerated; more seeds draw 100000 patterns (seeded)
_DRAWN_PATTERNS = 100_000


def _finite(values: Sequence[float | None]) -> np.ndarray:
    array = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return array[~np.isnan(array)]


def t_interval(values: Sequence[float | None], confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of the `confidence` t-interval of the mean: mean -+ t_{(1+c)/2, n-1} * s / sqrt(n),
    s the Bessel-corrected std. (nan, nan) with fewer than two values."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    x = _finite(values)
    if x.size < 2:
        return float("nan"), float("nan")
    half = float(student_t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return float(x.mean() - half), float(x.mean() + half)


def smallest_p(n: int, alternative: str = "two-sided") -> float:
    """The smallest p-value the sign-flip test of `n` seeds can give (all differences of one sign)."""
    _check_alternative(alternative)
    if n < 1:
        return float("nan")
    return (2.0 if alternative == "two-sided" else 1.0) / 2.0**n


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")


def sign_flip_test(differences: Sequence[float | None], alternative: str = "two-sided") -> float:
    """p-value of the paired sign-flip permutation test of per-seed differences (a - b).

    ``greater``: that a > b (the sum of differences is at least as large under a sign pattern);
    ``less``: a < b; ``two-sided``: |sum| at least as large. Exact over all 2^n patterns (the
    observed one included) up to `EXACT_SEEDS` seeds; beyond, from 100000 seeded random patterns
    with the +1 correction. nan without a difference.
    """
    _check_alternative(alternative)
    d = _finite(differences)
    n = d.size
    if n == 0:
        return float("nan")
    if n <= EXACT_SEEDS:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
        extra = 0
    else:
        signs = np.random.default_rng(0).choice([-1, 1], size=(_DRAWN_PATTERNS, n))
        extra = 1
    sums, observed = signs @ d, d.sum()
    tolerance = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if alternative == "greater":
        hits = np.count_nonzero(sums >= observed - tolerance)
    elif alternative == "less":
        hits = np.count_nonzero(sums <= observed + tolerance)
    else:
        hits = np.count_nonzero(np.abs(sums) >= abs(observed) - tolerance)
    return float((hits + extra) / (len(sums) + extra))


def paired_test(a: Sequence[float | None], b: Sequence[float | None], confidence: float = 0.95) -> dict[str, float]:
    """Per-seed values of two conditions (same seeds, same order) compared pairwise.

    Returns n (seeds with both values), mean_diff and std_diff (Bessel) of a - b, ci_low/ci_high
    (t-interval of the mean difference), p_two_sided, p_greater (one-sided, that a > b), and the
    smallest p each could reach with n seeds.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need one per seed on both sides, got {len(a)} and {len(b)}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True)
             if x is not None and y is not None and not (math.isnan(float(x)) or math.isnan(float(y)))]
    d = np.array([x - y for x, y in pairs], dtype=float)
    low, high = t_interval(d, confidence)
    return {
        "n": int(d.size),
        "mean_diff": float(d.mean()) if d.size else float("nan"),
        "std_diff": float(d.std(ddof=1)) if d.size > 1 else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "p_two_sided": sign_flip_test(d, "two-sided"),
        "p_greater": sign_flip_test(d, "greater"),
        "smallest_p_two_sided": smallest_p(d.size, "two-sided"),
        "smallest_p_one_sided": smallest_p(d.size, "greater"),
    }
