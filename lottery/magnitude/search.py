"""The magnitude searches: one global pruning step (`global_magnitude_step`), and the paper's search
loop as a state machine (`MagnitudeSearch`).

The paper's search prunes 10% of the *remaining* weights per step from the fine-tuned weights, with
no retraining in between; iterative magnitude pruning with rewinding (Chen et al. 2020) prunes 10%
of the *original* count per round: `global_magnitude_step(of=...)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from lottery.errors import ConfigError, NonFiniteError
from lottery.magnitude.masks import WeightMasks
from lottery.magnitude.selection import check_same_names, magnitudes, smallest, unflatten
from lottery.pass_rule import check_threshold, passes

Base = Literal["remaining", "original"]


def global_magnitude_step(
    params: Mapping[str, Tensor], masks: WeightMasks, fraction: float, *, of: Base = "remaining"
) -> WeightMasks:
    """Prune the `fraction` of weights with the smallest |w| among those `masks` still keeps.

    Exactly k = round(fraction * base) weights are pruned, base being the number still kept
    (`of="remaining"`, the paper) or all masked weights (`of="original"`, IMP), capped at what is
    left. The ranking is global across all tensors, so a tensor of larger weights keeps more.
    Ties at the threshold are pruned in parameter order, then flat index order.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    if of not in ("remaining", "original"):
        raise ValueError(f"of must be 'remaining' or 'original', got {of!r}")
    check_same_names(params, masks)
    kept = masks.num_kept()
    k = min(round(fraction * (kept if of == "remaining" else masks.num_total())), kept)
    scores = magnitudes(params, masks, pruned_as_inf=True)  # already pruned: never chosen again
    pruned_now = smallest(scores, k)
    del scores
    keep = torch.cat([masks.on(n, pruned_now.device).reshape(-1) for n in masks])
    return unflatten(keep & ~pruned_now, masks)


# ---------------------------------------------------------------------------------------------
# The paper's one-shot search loop


EXIT_MASKS = ("previous", "last_passing")


class MagnitudeSearch:
    """State machine of the paper's m-pruning search; the caller prunes and evaluates.

    Report the full model's score first (step 0), then after each `global_magnitude_step` by
    `next_fraction` (applied to the *fine-tuned* weights: evaluate on a masked copy so a failed
    step can be undone). A step passes by `lottery.pass_rule.passes`. The search ends at the first
    failing step or after `max_steps` pruning steps. Which mask is the ticket (`good`) is the
    protocol's `exit_mask`:

    - "previous" (the authors' src/find_global_weight_mask.py, `mask_global`): their loop saves
      the mask from before the last evaluated step on exit. After a failure that is the last
      passing mask; when all `max_steps` steps pass it is step max_steps - 1, so at most 9 of
      their 10 steps (38.7% of the eligible weights kept) can reach a ticket;
    - "last_passing": the last step that passed, up to step `max_steps`.

        search = MagnitudeSearch()
        masks = WeightMasks.ones_like(params)
        search.report(evaluate(masks), masks)
        while not search.done:
            masks = global_magnitude_step(params, masks, search.next_fraction, of=search.of)
            search.report(evaluate(masks), masks)
    """

    def __init__(self, fraction: float = 0.1, threshold: float = 0.9, max_steps: int = 10, of: Base = "remaining",
                 exit_mask: str = "previous"):
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"magnitude fraction must lie in (0, 1], got {fraction}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
            raise ConfigError(f"max_steps must be an integer >= 0, got {max_steps!r}")
        if of not in ("remaining", "original"):
            raise ConfigError(f"of must be 'remaining' or 'original', got {of!r}")
        if exit_mask not in EXIT_MASKS:
            raise ConfigError(f"exit_mask must be one of {EXIT_MASKS}, got {exit_mask!r}")
        self.fraction, self.threshold, self.max_steps, self.of = fraction, check_threshold(threshold), max_steps, of
        self.exit_mask = exit_mask
        self.full_score: float | None = None
        self.history: list[dict] = []
        self._masks: list[WeightMasks] = []  # the last two reported masks, for exit_mask="previous"
        self._last_passing: tuple[int, WeightMasks] | None = None

    def report(self, score: float, masks: WeightMasks) -> bool:
        """Record the score of `masks`; True if it passes (step 0, the full model, always does)."""
        if self.done:
            raise RuntimeError("the search has ended; nothing more to report")
        step = len(self.history)
        score = float(score)
        if step == 0:
            if not math.isfinite(score):
                raise NonFiniteError(f"the full model's score must be finite, got {score}: the fine-tuned model "
                                     "is broken (diverged?); redo the fine-tune with a lower recipe.lr")
            self.full_score = score
        passed = step == 0 or passes(score, self.full_score, self.threshold)
        self.history.append({"step": step, "sparsity": masks.sparsity(), "score": score, "passed": passed})
        self._masks = [*self._masks[-1:], masks]
        if passed:
            self._last_passing = (step, masks)
        return passed

    @property
    def done(self) -> bool:
        if not self.history:
            return False
        return not self.history[-1]["passed"] or len(self.history) - 1 >= self.max_steps

    @property
    def good_step(self) -> int | None:
        if self._last_passing is None:
            return None
        if self.exit_mask == "previous" and self.done and len(self.history) > 1:
            return len(self.history) - 2
        return self._last_passing[0]

    @property
    def good(self) -> WeightMasks | None:
        step = self.good_step
        if step is None:
            return None
        return self._last_passing[1] if step == self._last_passing[0] else self._masks[0]

    @property
    def next_fraction(self) -> float | None:
        """Fraction to prune next, or None once the search has ended."""
        return None if self.done else self.fraction

    def state_dict(self) -> dict:
        """Everything needed to resume (masks as dicts of bool tensors: for a torch checkpoint)."""
        return {"fraction": self.fraction, "threshold": self.threshold, "max_steps": self.max_steps, "of": self.of,
                "exit_mask": self.exit_mask, "full_score": self.full_score, "history": [dict(h) for h in self.history],
                "masks": [dict(m) for m in self._masks],
                "last_passing": None if self._last_passing is None else
                (self._last_passing[0], dict(self._last_passing[1]))}

    def load_state_dict(self, state: Mapping) -> None:
        rules = (self.fraction, self.threshold, self.max_steps, self.of, self.exit_mask)
        saved = (state["fraction"], state["threshold"], state["max_steps"], state["of"], state["exit_mask"])
        if saved != rules:
            raise ValueError(f"magnitude search state was made with (fraction, threshold, max_steps, of, exit_mask) = "
                             f"{saved}, this search has {rules}")
        self.full_score = state["full_score"]
        self.history = [dict(h) for h in state["history"]]
        self._masks = [WeightMasks(m) for m in state["masks"]]
        last = state["last_passing"]
        self._last_passing = None if last is None else (int(last[0]), WeightMasks(last[1]))

