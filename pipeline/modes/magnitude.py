"""`experiment=magnitude`: the paper's magnitude experiment. Global L1 pruning of the fine-tuned
weights, 10% of the remaining eligible weights per step with no retraining in between, until the
score drops below threshold x full; good / random / bad weight tickets pruned and retrained.

Folders under the experiment folder: `search/` (one JSON and one packed mask per step,
`good.npz`, `summary.json`), `tickets/<kind>.npz`, `pruned/<kind>/metrics.json`,
`retrained/<kind>/` and `results.json`, with the sparsity and the % of weights surviving per
head and per MLP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from lottery.errors import ConfigError
from lottery.io import read_json, write_json
from lottery.magnitude import (
    ELIGIBLE_ROLES,
    MagnitudeSearch,
    WeightMasks,
    bad_weight_ticket,
    eligible_parameters,
    magnitude_search,
    random_weight_ticket,
    snapshot_cpu,
    sparsity_report,
)
from lottery.schema import SearchSummary
from pipeline.experiment import ticket_experiment
from pipeline.modes import Mode, register
from pipeline.run import Run
from pipeline.settings import ALWAYS, Concern, TicketRunSettings, setting
from pipeline.settings.concerns import check_positive_integer
from pipeline.tickets import WeightTickets
from pipeline.training import evaluate, load_finetuned, recipe_module


@dataclass(frozen=True)
class WeightPruningSettings(Concern):
    """Which weights a magnitude pruning removes, and how many per step (magnitude and IMP)."""

    node: ClassVar[str] = "magnitude"
    fraction: float = setting(0.1, "weights pruned per step", identity=ALWAYS)
    include_biases: bool = setting(True, "the eligible biases too (never output.dense.bias, as the authors)",
                                   identity=ALWAYS)
    modules: tuple[str, ...] = setting(ELIGIBLE_ROLES, "the roles (the paper's BERT module names) whose weights "
                                       "are eligible; every model family maps them to its own linears",
                                       identity=ALWAYS)

    def __post_init__(self) -> None:
        modules = tuple(self.modules)
        object.__setattr__(self, "modules", modules)
        unknown = [name for name in modules if name not in ELIGIBLE_ROLES]
        if unknown or not modules:
            raise ConfigError(f"{self.node}.modules must be a non-empty list of {list(ELIGIBLE_ROLES)}; "
                              f"got {list(modules)}")
        fraction = self.fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ConfigError(f"{self.node}.fraction must be a number in (0, 1), got {fraction!r}")

    def eligibility(self) -> dict[str, Any]:
        """`lottery.magnitude.eligible_parameters`' options."""
        return {"include_biases": bool(self.include_biases), "roles": tuple(self.modules)}

    def recorded(self) -> dict[str, Any]:
        """What the magnitude and IMP folders record of it (the roles as "suffixes")."""
        return {"include_biases": bool(self.include_biases), "suffixes": tuple(self.modules)}


@dataclass(frozen=True)
class MagnitudeSettings(WeightPruningSettings):
    """The paper's magnitude search (conf/experiment/magnitude.yaml): 10% of the remaining weights per step."""

    max_steps: int = setting(10, "pruning steps evaluated at most (the authors' loop: 10)", identity=ALWAYS)
    exit_mask: str = setting("previous", "previous (the authors': at most max_steps - 1 steps in a ticket) | "
                             "last_passing", identity=ALWAYS, protocol="magnitude_exit")
    random_accumulation: int = setting(2, "gradient accumulation of the random ticket's retraining, at the same "
                                       "effective batch (microbatches of recipe.batch_size / this): 2 (the authors' "
                                       "src/train_with_masks.sh: batch 16 x 2 for random, 32 x 1 for good and bad) | 1",
                                       protocol="random_accumulation", unchanged=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_integer(self.random_accumulation, "magnitude.random_accumulation")
        MagnitudeSearch(fraction=float(self.fraction), max_steps=self.max_steps, exit_mask=self.exit_mask)


@dataclass(frozen=True, kw_only=True)
class MagnitudeRunSettings(TicketRunSettings):
    magnitude: MagnitudeSettings = setting(factory=MagnitudeSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        batch, accumulation = self.data.batch_size, self.magnitude.random_accumulation
        if "random" in self.tickets.kinds and self.tickets.retrain and batch % accumulation:
            raise ConfigError(f"magnitude.random_accumulation={accumulation} cannot cut a batch of {batch} into equal "
                              "microbatches: choose a recipe.batch_size divisible by it, or random_accumulation=1")

    @property
    def weight_pruning(self) -> WeightPruningSettings:
        return self.magnitude

    def recorded(self) -> dict[str, Any]:
        magnitude = self.magnitude
        return {"fraction": float(magnitude.fraction), "max_steps": int(magnitude.max_steps),
                "exit_mask": magnitude.exit_mask, **magnitude.recorded(), "threshold": self.search.threshold,
                "split": self.search.split}


def restore_and_mask_(model: torch.nn.Module, original: dict[str, torch.Tensor], masks: WeightMasks) -> None:
    """Put the fine-tuned values back into the eligible weights, then zero the pruned ones."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in original.items():
            parameters[name].copy_(value)
    masks.apply_(model)


def oneshot_search(run: Run, run_dir: Path) -> SearchSummary:
    """The paper's schedule, step by step; every step's score and mask are saved as they are
    made, and a rerun replays the finished steps instead of scoring them again."""
    settings = run.settings.magnitude
    model = load_finetuned(run)
    params = eligible_parameters(model, **settings.eligibility())
    original = snapshot_cpu(model, params)
    module = recipe_module(run, model)
    search = MagnitudeSearch(fraction=float(settings.fraction), threshold=run.settings.search.threshold,
                             max_steps=settings.max_steps, exit_mask=settings.exit_mask)
    metric = run.task.pruning_metric

    metrics: dict[int, dict] = {}

    def score(step: int, masks: WeightMasks) -> float:
        record = run_dir / f"step_{step:02d}.json"
        if record.is_file():
            metrics[step] = read_json(record)["metrics"]
        else:
            restore_and_mask_(model, original, masks)
            metrics[step] = evaluate(run, module, run_dir, f"search-step{step}", split="selection")
            masks.save(run_dir / f"step_{step:02d}.npz")
        return metrics[step][metric]

    def reported(step: int, masks: WeightMasks) -> None:
        write_json(run_dir / f"step_{step:02d}.json",
                   {**search.history[-1], "metrics": metrics[step], **sparsity_report(masks, model)})

    magnitude_search(search, original, score, reported)
    search.good.save(run_dir / "good.npz")
    return weight_search_summary(search)


def weight_search_summary(search: MagnitudeSearch) -> SearchSummary:
    """A finished magnitude search (one-shot or IMP) as the experiment records it."""
    return SearchSummary(full_score=search.full_score, threshold_score=search.threshold * search.full_score,
                         good_iteration=search.good_step, sparsity=search.good.sparsity(), history=search.history)


def draw(run: Run, good: WeightMasks, reference: torch.nn.Module) -> dict:
    """Random: the same number of weights, anywhere; bad: the smallest-magnitude fine-tuned weights."""
    eligible = eligible_parameters(reference, **run.settings.weight_pruning.eligibility())
    finetuned_weights = snapshot_cpu(reference, eligible)
    return {
        "good": lambda: good,
        "random": lambda: random_weight_ticket(good, seed=run.seed),
        "bad": lambda: bad_weight_ticket(finetuned_weights, good, seed=run.seed),
    }


def run_magnitude(run: Run) -> dict:
    return ticket_experiment(run, WeightTickets, draw, search=oneshot_search)


register(Mode(
    name="magnitude", run=run_magnitude, description="the paper's global magnitude (m-pruning) tickets",
    settings=MagnitudeRunSettings, label_prefix="m", pruning="weights",
    figures=("bars", "magnitude_heatmap"),
))
