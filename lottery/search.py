"""The paper's iterative structured mask search, as a model-free state machine.

The caller evaluates the current mask (dev score and head / MLP importance) and reports it;
the search decides the next mask. Keeping the model out makes the loop easy to drive from a
Lightning callback epoch by epoch, to run under DDP (report on rank 0 and broadcast the next
mask) and to resume from a checkpoint through `state_dict` / `load_state_dict`.

Loop (Prasanna et al. 2020, after Michel et al. 2019; read from the authors'
src/find_head_mlp_masks.py, `mask_heads_mlps`), no re-fine-tuning between steps:

* iteration 0 evaluates the unmasked model: its score is `full_score`, the bar
  `threshold * full_score` (`lottery.pass_rule`). The full model always passes.
* phases: heads and MLPs together (H = int(head_fraction x all heads) heads and m MLPs per
  step), then heads only (H // 2 per step), then MLPs only (m per step). A phase whose step
  masks nothing (H // 2 == 0 on a tiny model) does not exist, as in the authors' loop.
* a passing mask is followed by the next step of the same phase: the least important remaining
  elements by the importance just reported for it. A step needs every kind of element its phase
  prunes: when no MLP (or no head) is left to mask, the phase ends without a failure and the next
  phase continues from the same mask. Within a step, fewer than the step's count may be masked
  when fewer remain. Every head may be masked.
* a mask that fails is dropped: the search reverts to the last passing mask and the next phase
  masks from it. Which importance ranks that first step is the protocol's `phase_change`:
  "failed" (the authors' code: the importance measured under the mask that just failed, since
  that is the last one computed) or "passing" (the importance recorded for the last passing mask).
* after the last phase the search is done; `good_mask()` is the last passing mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lottery.errors import ConfigError, NonFiniteError
from lottery.pass_rule import bar, check_threshold, passes

TARGETS = ("heads_mlps", "heads", "mlps")  # what a structured search masks
PHASE_CHANGES = ("failed", "passing")
FULL_PHASE = "full"  # phase name recorded for iteration 0, the unmasked model
STATE_VERSION = 2


@dataclass(frozen=True)
class Phase:
    """One stage of the search: how many heads and MLPs each step masks."""

    head_step: int
    mlp_step: int

    @property
    def name(self) -> str:
        if self.head_step and self.mlp_step:
            return "heads_mlps"
        return "heads" if self.head_step else "mlps"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class SearchConfig:
    """What the search prunes, how fast, and when it stops.

    `schedule` lists the phases as (head_step, mlp_step) pairs of absolute counts. Left as None it
    is derived from `target` and the model size by `phases`: for "heads_mlps" the paper's
    [(H, m), (H // 2, 0), (0, m)] without phases that mask nothing, for "heads" [(H, 0)], for
    "mlps" [(0, m)], where H = max(1, int(head_fraction * total heads)) and m = mlps_per_step.
    `phase_change` says which importance ranks the first step after a failure (module docstring).
    """

    target: str = "heads_mlps"
    threshold: float = 0.9
    head_fraction: float = 0.1
    mlps_per_step: int = 1
    phase_change: str = "failed"
    schedule: list[tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"unknown search target {self.target!r}; expected one of {TARGETS}")
        self.threshold = check_threshold(self.threshold)
        if isinstance(self.head_fraction, bool) or not isinstance(self.head_fraction, (int, float)) \
                or not 0.0 < self.head_fraction <= 1.0:
            raise ConfigError(f"head_fraction must be in (0, 1], got {self.head_fraction!r}")
        if not _is_int(self.mlps_per_step) or self.mlps_per_step < 1:
            raise ConfigError(f"mlps_per_step must be an integer >= 1, got {self.mlps_per_step!r}")
        if self.phase_change not in PHASE_CHANGES:
            raise ConfigError(f"phase_change must be one of {PHASE_CHANGES}, got {self.phase_change!r}")
        self.head_fraction = float(self.head_fraction)
        if self.schedule is not None:
            self.schedule = self._validated_schedule(self.schedule)

    def _validated_schedule(self, schedule: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
        pairs = [tuple(step) for step in schedule]
        if not pairs:
            raise ConfigError("schedule must list at least one (head_step, mlp_step) phase")
        for pair in pairs:
            if len(pair) != 2 or not all(_is_int(n) and n >= 0 for n in pair) or pair == (0, 0):
                raise ConfigError(
                    f"schedule phase {pair!r} must be a (head_step, mlp_step) pair of "
                    "non-negative integers, not both zero"
                )
            if self.target == "heads" and pair[1] > 0:
                raise ConfigError(f"target 'heads' does not prune MLPs, but schedule phase {pair} does")
            if self.target == "mlps" and pair[0] > 0:
                raise ConfigError(f"target 'mlps' does not prune heads, but schedule phase {pair} does")
        return [(int(h), int(m)) for h, m in pairs]

    def head_step(self, num_layers: int, num_heads: int) -> int:
        """Heads masked per step of the first phase: int(head_fraction * total), at least 1."""
        return max(1, int(self.head_fraction * num_layers * num_heads))

    def phases(self, num_layers: int, num_heads: int) -> list[Phase]:
        """The phase list for a model of this size (the explicit `schedule` if given)."""
        if self.schedule is not None:
            return [Phase(h, m) for h, m in self.schedule]
        heads, mlps = self.head_step(num_layers, num_heads), self.mlps_per_step
        if self.target == "heads":
            return [Phase(heads, 0)]
        if self.target == "mlps":
            return [Phase(0, mlps)]
        steps = [(heads, mlps), (heads // 2, 0), (0, mlps)]
        return [Phase(h, m) for h, m in steps if h or m]

    def to_dict(self) -> dict[str, Any]:
        """As records and checkpoints hold it: the target under its first name, "mode" (folder hashes
        and saved search states depend on these keys)."""
        schedule = None if self.schedule is None else [list(pair) for pair in self.schedule]
        return {
            "mode": self.target,
            "threshold": self.threshold,
            "head_fraction": self.head_fraction,
            "mlps_per_step": self.mlps_per_step,
            "phase_change": self.phase_change,
            "schedule": schedule,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        values = dict(data)
        values["target"] = values.pop("mode")
        return cls(**values)


@dataclass(frozen=True)
class SearchRecord:
    """One evaluated mask: what iter_NNN.json files hold.

    Masks are float32 0/1; importance is kept as reported, converted to float64 on the CPU (lossless
    for float32 input, and exact through `to_dict` / `from_dict`, so a resumed search ranks alike).
    """

    iteration: int
    phase: str  # the phase whose step produced this mask; FULL_PHASE for iteration 0
    head_mask: Tensor
    mlp_mask: Tensor
    score: float
    passed: bool
    head_importance: Tensor
    mlp_importance: Tensor

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only (JSON and checkpoint safe)."""
        return {
            "iteration": self.iteration,
            "phase": self.phase,
            "head_mask": self.head_mask.tolist(),
            "mlp_mask": self.mlp_mask.tolist(),
            "score": self.score,
            "passed": self.passed,
            "head_importance": self.head_importance.tolist(),
            "mlp_importance": self.mlp_importance.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchRecord:
        return cls(
            iteration=int(data["iteration"]),
            phase=str(data["phase"]),
            head_mask=torch.tensor(data["head_mask"], dtype=torch.float32),
            mlp_mask=torch.tensor(data["mlp_mask"], dtype=torch.float32),
            score=float(data["score"]),
            passed=bool(data["passed"]),
            head_importance=torch.tensor(data["head_importance"], dtype=torch.float64),
            mlp_importance=torch.tensor(data["mlp_importance"], dtype=torch.float64),
        )


def mask_least_important(mask: Tensor, importance: Tensor, count: int) -> Tensor:
    """Zero the `count` least important elements still at 1 in `mask` (a new tensor).

    Masked elements are never chosen whatever their importance. Ties go to the lower flat index
    (stable sort). Fewer are masked when fewer remain.
    """
    flat_mask = mask.reshape(-1)
    remaining = torch.nonzero(flat_mask > 0.5).reshape(-1)  # ascending flat index
    count = min(count, remaining.numel())
    out = flat_mask.clone()
    if count > 0:
        order = torch.sort(importance.reshape(-1)[remaining], stable=True).indices
        out[remaining[order[:count]]] = 0.0
    return out.view_as(mask)


class StructuredSearch:
    """Iterative head / MLP mask search; see the module docstring for the rules."""

    def __init__(self, num_layers: int, num_heads: int, config: SearchConfig | None = None) -> None:
        if not (_is_int(num_layers) and _is_int(num_heads)) or num_layers < 1 or num_heads < 1:
            raise ValueError(f"num_layers and num_heads must be positive integers, got {num_layers}, {num_heads}")
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.config = config if config is not None else SearchConfig()
        self.phases = self.config.phases(num_layers, num_heads)
        self.history: list[SearchRecord] = []
        self._phase_index = 0
        self._head = torch.ones(num_layers, num_heads)
        self._mlp = torch.ones(num_layers)
        self._mask_phase = FULL_PHASE
        self._full_score: float | None = None
        self._threshold_score: float | None = None
        self._last_pass: int | None = None  # index into history
        self._done = False

    # ----------------------------------------------------------------- state queries
    @property
    def done(self) -> bool:
        return self._done

    @property
    def iteration(self) -> int:
        """Index of the next iteration to report (= number of iterations reported)."""
        return len(self.history)

    @property
    def phase(self) -> str | None:
        """Name of the phase that produced the current mask; None once done."""
        return None if self._done else self._mask_phase

    @property
    def full_score(self) -> float | None:
        return self._full_score

    @property
    def threshold_score(self) -> float | None:
        """threshold * full_score, once iteration 0 is reported."""
        return self._threshold_score

    @property
    def last_passing_iteration(self) -> int | None:
        return self._last_pass

    def current_mask(self) -> tuple[Tensor, Tensor]:
        """(head [L, H], mlp [L]) float 0/1 masks to evaluate next; the good mask once done."""
        return self._head.clone(), self._mlp.clone()

    def good_mask(self) -> tuple[Tensor, Tensor]:
        """The last mask that passed (the saved "good" mask)."""
        if self._last_pass is None:
            raise RuntimeError("no iteration reported yet: report the full model's score first")
        record = self.history[self._last_pass]
        return record.head_mask.clone(), record.mlp_mask.clone()

    # ----------------------------------------------------------------- the step
    def report(self, head_importance: Any, mlp_importance: Any, score: float) -> bool:
        """Record the current mask's evaluation and choose the next mask.

        Importance arrays (tensor / numpy / nested lists) have the mask shapes, higher = more
        important. Returns True while more iterations are needed.
        """
        if self._done:
            raise RuntimeError("the search is done; nothing more to report")
        head_imp = self._importance(head_importance, (self.num_layers, self.num_heads), "head_importance")
        mlp_imp = self._importance(mlp_importance, (self.num_layers,), "mlp_importance")
        self._check_finite(head_imp, self._head, "head_importance", any(p.head_step for p in self.phases))
        self._check_finite(mlp_imp, self._mlp, "mlp_importance", any(p.mlp_step for p in self.phases))
        score = float(score)
        first = not self.history
        if first:
            if not math.isfinite(score):
                raise NonFiniteError(f"the full model's score must be finite, got {score}: the fine-tuned "
                                     "model is broken (diverged?); redo the fine-tune with a lower recipe.lr")
            self._full_score = score
            self._threshold_score = bar(score, self.config.threshold)
        passed = first or passes(score, self._full_score, self.config.threshold)
        self.history.append(
            SearchRecord(
                iteration=len(self.history),
                phase=self._mask_phase,
                head_mask=self._head.clone(),
                mlp_mask=self._mlp.clone(),
                score=score,
                passed=passed,
                head_importance=head_imp,
                mlp_importance=mlp_imp,
            )
        )
        if passed:
            self._last_pass = len(self.history) - 1
        else:
            self._phase_index += 1
        self._advance()
        return not self._done

    def _advance(self) -> None:
        """From the last passing mask, take the first phase (from the current one) that can step.

        The step is ranked by the importance of the last evaluated mask: within a phase that is
        the passing mask itself; after a failure it is the failed mask ("failed") unless the
        protocol says to use the last passing one ("passing").
        """
        assert self._last_pass is not None
        start = self.history[self._last_pass]
        ranking = self.history[-1] if self.config.phase_change == "failed" else start
        while self._phase_index < len(self.phases):
            phase = self.phases[self._phase_index]
            if self._can_step(start, phase):
                self._head = mask_least_important(start.head_mask, ranking.head_importance, phase.head_step)
                self._mlp = mask_least_important(start.mlp_mask, ranking.mlp_importance, phase.mlp_step)
                self._mask_phase = phase.name
                return
            self._phase_index += 1
        self._head, self._mlp = start.head_mask.clone(), start.mlp_mask.clone()
        self._done = True

    @staticmethod
    def _can_step(start: SearchRecord, phase: Phase) -> bool:
        """A step needs something left of every kind its phase masks (the authors' loop breaks
        out of a heads+MLPs phase when no MLP is left, even if heads are)."""
        heads_left = bool((start.head_mask > 0.5).any())
        mlps_left = bool((start.mlp_mask > 0.5).any())
        return (not phase.head_step or heads_left) and (not phase.mlp_step or mlps_left)

    def _importance(self, values: Any, shape: tuple[int, ...], name: str) -> Tensor:
        tensor = torch.as_tensor(values).detach().to(device="cpu", dtype=torch.float64).clone()
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(tensor.shape)}")
        return tensor

    @staticmethod
    def _check_finite(importance: Tensor, mask: Tensor, name: str, used: bool) -> None:
        if used and not torch.isfinite(importance[mask > 0.5]).all():
            raise NonFiniteError(f"{name} has NaN or infinite values for unmasked elements; cannot rank them")

    # ----------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as plain Python types (JSON and checkpoint safe)."""
        return {
            "version": STATE_VERSION,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "config": self.config.to_dict(),
            "phases": [[p.head_step, p.mlp_step] for p in self.phases],
            "phase_index": self._phase_index,
            "mask_phase": self._mask_phase,
            "current_head": self._head.tolist(),
            "current_mlp": self._mlp.tolist(),
            "full_score": self._full_score,
            "threshold_score": self._threshold_score,
            "last_pass": self._last_pass,
            "done": self._done,
            "history": [record.to_dict() for record in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; the model size and the decision rules must match this search."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported search state version {state.get('version')!r}")
        if (state["num_layers"], state["num_heads"]) != (self.num_layers, self.num_heads):
            raise ValueError(
                f"search state is for {state['num_layers']}x{state['num_heads']} heads, "
                f"this search for {self.num_layers}x{self.num_heads}"
            )
        phases = [[p.head_step, p.mlp_step] for p in self.phases]
        rules = (phases, self.config.threshold, self.config.phase_change)
        saved = ([list(p) for p in state["phases"]], state["config"]["threshold"], state["config"].get("phase_change"))
        if saved != rules:
            raise ValueError(
                f"search state was made with (phases, threshold, phase_change) = {saved}, this search has {rules}"
            )
        self._phase_index = int(state["phase_index"])
        self._mask_phase = str(state["mask_phase"])
        self._head = torch.tensor(state["current_head"], dtype=torch.float32)
        self._mlp = torch.tensor(state["current_mlp"], dtype=torch.float32)
        self._full_score = None if state["full_score"] is None else float(state["full_score"])
        self._threshold_score = None if state["threshold_score"] is None else float(state["threshold_score"])
        self._last_pass = None if state["last_pass"] is None else int(state["last_pass"])
        self._done = bool(state["done"])
        self.history = [SearchRecord.from_dict(record) for record in state["history"]]

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> StructuredSearch:
        """A search rebuilt from a `state_dict` alone (config included)."""
        config = SearchConfig.from_dict(state["config"])
        search = cls(int(state["num_layers"]), int(state["num_heads"]), config)
        search.load_state_dict(state)
        return search
