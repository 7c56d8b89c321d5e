"""The one rule every search uses to accept a mask: its score must reach `threshold x full score`.

The structured search, the paper's magnitude search and iterative magnitude pruning all call
`passes`, so a score exactly at the bar passes in every mode. The bar is kept as the paper writes
it, also for negative full scores (MCC and correlations can be <= 0): then it lies at or above the
full model's score and only masks that lose nothing pass. A NaN score never passes.
"""

from __future__ import annotations

import math

from lottery.errors import ConfigError

# Relative slack, so that float rounding of `threshold * full_score` does not fail a score that
# equals the bar on paper (0.9 * 0.8 == 0.7200000000000001 > 0.72).
PASS_REL_TOL = 1e-9


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold must be a number in (0, 1] (a mask passes while its score >= threshold x "
                          f"full score), got {threshold!r}")
    return float(threshold)


def bar(full_score: float, threshold: float) -> float:
    """The score a mask must reach."""
    return threshold * full_score


def passes(score: float, full_score: float, threshold: float) -> bool:
    score = float(score)
    if not math.isfinite(score):
        return False
    target = bar(full_score, threshold)
    return score >= target or math.isclose(score, target, rel_tol=PASS_REL_TOL, abs_tol=0.0)


def degenerate_warning(full_score: float, majority_score: float, threshold: float = 0.9) -> str | None:
    """A warning when the bar `threshold * full_score` is within reach of a constant predictor.

    If the majority-class baseline already scores at least the bar, the search can accept masks
    that destroy the model (seen on RTE, MRPC and WNLI). Returns None when the bar is above it.
    """
    target = bar(full_score, threshold)
    if target > majority_score:
        return None
    return (
        f"pruning threshold {threshold:g} x full score {full_score:.4f} = {target:.4f} is <= the "
        f"majority-class baseline {majority_score:.4f}: the search may accept a mask that predicts "
        "a constant class, so its 'good' ticket is not evidence of a working subnetwork"
    )
