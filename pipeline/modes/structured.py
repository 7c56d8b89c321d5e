"""`experiment=structured`: the paper's structured experiment. Search heads and whole MLPs on the
fine-tuned model (one importance pass per iteration), then good / random / bad tickets pruned
and retrained.

Folders under the experiment folder: `search/` (iter_NNN.json, good.json, summary.json),
`tickets/<kind>.json`, `pruned/<kind>/metrics.json`, `retrained/<kind>/` (the ticket cut out of
the pre-trained model, physically smaller; its model folder reloads with
`lottery.pruning.load_pruned`), and `results.json`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callbacks.structured_pruning import StructuredPruning
from lightning_modules.importance_module import ImportanceModule, search_warnings_expected
from lottery.errors import ConfigError
from lottery.importance import get_criterion
from lottery.masks import StructuredMasks
from lottery.schema import SearchSummary
from lottery.search import PHASE_CHANGES, TARGETS, SearchConfig
from lottery.tickets import PRUNED_RANDOM_SEED, RANDOM_PAIRINGS, SAMPLINGS, bad_ticket, random_ticket
from pipeline.checkpoints import resume_from
from pipeline.experiment import ticket_experiment
from pipeline.modes import Mode, register
from pipeline.run import Run
from pipeline.settings import (
    ALWAYS,
    Concern,
    HeadTicketSettings,
    ImportanceSettings,
    SearchSettings,
    TicketRunSettings,
    setting,
)
from pipeline.tickets import StructuredTickets
from pipeline.training import datamodule, load_finetuned, make_trainer

log = logging.getLogger("lottery")
SEARCH_EPOCH_LIMIT = 100_000  # the callback stops the fit when the search is done


@dataclass(frozen=True)
class StructuredSearchSettings(SearchSettings):
    phase_change: str = setting("failed", "which importance ranks the first step of a new phase: the mask that just "
                                "failed's (the authors' code) | the last passing mask's", identity=ALWAYS,
                                protocol="phase_change")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.phase_change not in PHASE_CHANGES:
            raise ConfigError(f"phase_change must be one of {PHASE_CHANGES}, got {self.phase_change!r}")


@dataclass(frozen=True)
class StructuredSettings(Concern):
    """What the structured search masks, and how fast (conf/experiment/structured.yaml)."""

    target: str = setting("heads_mlps", "heads_mlps (the paper's s-pruning) | heads | mlps", identity=ALWAYS, tag=1)
    head_fraction: float = setting(0.1, "heads masked per step: int(head_fraction x all heads)", identity=ALWAYS)
    mlps_per_step: int = setting(1, "MLPs masked per step", identity=ALWAYS)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"structured.target must be one of {TARGETS}, got {self.target!r}")
        SearchConfig(target=self.target, head_fraction=self.head_fraction, mlps_per_step=self.mlps_per_step)


@dataclass(frozen=True)
class StructuredTicketSettings(HeadTicketSettings):
    sampling: str = setting("bernoulli", "random tickets: bernoulli (the paper: each element kept with good's "
                            "survival rate) | exact (exactly good's size)", identity=ALWAYS, protocol="sampling")
    random_pairing: str = setting("separate", "the random ticket's pruned and retrained rows: separate (the authors: "
                                  "pruned drawn with seed 42 for every model, franken_bert.py; retrained with the "
                                  "model's seed, run_glue.py) | same (one mask, the model's seed)",
                                  protocol="random_pairing", unchanged="same")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"tickets.sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.random_pairing not in RANDOM_PAIRINGS:
            raise ConfigError(f"tickets.random_pairing must be one of {RANDOM_PAIRINGS}, got {self.random_pairing!r}")


@dataclass(frozen=True, kw_only=True)
class StructuredRunSettings(TicketRunSettings):
    search: StructuredSearchSettings = setting(factory=StructuredSearchSettings)
    structured: StructuredSettings = setting(factory=StructuredSettings)
    importance: ImportanceSettings = setting(factory=ImportanceSettings)
    tickets: StructuredTicketSettings = setting(factory=StructuredTicketSettings)

    def search_config(self) -> SearchConfig:
        structured = self.structured
        return SearchConfig(target=structured.target, threshold=self.search.threshold,
                            head_fraction=structured.head_fraction, mlps_per_step=structured.mlps_per_step,
                            phase_change=self.search.phase_change)

    def recorded(self) -> dict[str, Any]:
        return {"search": self.search_config().to_dict(), "split": self.search.split,
                "importance": self.importance.recorded(), "sampling": self.tickets.sampling}


def search(run: Run, run_dir: Path, callbacks: list | None = None) -> SearchSummary:
    """The iterative mask search as a Lightning fit (one epoch per iteration), resumable; saves the
    good mask as `run_dir/good.json`."""
    settings = run.settings
    model = load_finetuned(run)
    criterion = get_criterion(settings.importance.name)
    module = ImportanceModule(model, run.task, StructuredMasks.for_model(model), criterion)
    data = datamodule(run, train_on="selection")
    pruning = StructuredPruning(out_dir=str(run_dir), metric=run.task.pruning_metric, config=settings.search_config(),
                                accumulate=settings.importance.accumulate, num_batches=data.num_selection_batches())
    trainer = make_trainer(run, run_dir, "search", [pruning, *(callbacks or [])], max_epochs=SEARCH_EPOCH_LIMIT,
                           limit_val_batches=0, gradient_clip_val=None, enable_checkpointing=False)
    last = resume_from(pruning.checkpoint_path)  # an unloadable one is set aside: start from scratch
    if last is not None:
        log.info("resuming the mask search from %s", last)
    with search_warnings_expected():
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if last is not None else None)
    found = pruning.finished()
    StructuredMasks(*found.good_mask()).save_json(run_dir / "good.json")
    shutil.rmtree(pruning.checkpoint_path.parent, ignore_errors=True)
    return SearchSummary(full_score=found.full_score, threshold_score=found.threshold_score,
                         good_iteration=found.last_passing_iteration, iterations=found.iteration,
                         config=found.config.to_dict())


def draw(run: Run, good: StructuredMasks, reference) -> dict:
    """Random: good's size (exactly, or in expectation: tickets.sampling), drawn with the model's seed,
    or with PRUNED_RANDOM_SEED under tickets.random_pairing=separate (then `draw_retrained` draws the
    mask it is retrained with); bad: from what good pruned."""
    seed = run.seed
    random_seed = PRUNED_RANDOM_SEED if run.settings.tickets.random_pairing == "separate" else seed
    return {
        "good": lambda: good,
        "random": lambda: _random(run, good, random_seed),
        "bad": lambda: StructuredMasks(*bad_ticket(good.head, good.mlp, seed=seed, target=run.settings.structured.target)),
    }


def draw_retrained(run: Run, good: StructuredMasks, reference) -> dict:
    """The masks retrained in place of the pruned ones: under tickets.random_pairing=separate the random
    ticket's, drawn with the model's seed (the authors' src/run_glue.py:758-763/797-801, numpy seeded with
    --seed at 711), while its pruned row scores the seed-42 draw (src/franken_bert.py:860-865/894-898,
    numpy seeded 42 at 372 and again after each model at 918)."""
    if run.settings.tickets.random_pairing == "same":
        return {}
    return {"random": lambda: _random(run, good, run.seed)}


def _random(run: Run, good: StructuredMasks, seed: int) -> StructuredMasks:
    return StructuredMasks(*random_ticket(good.head, good.mlp, seed=seed, sampling=run.settings.tickets.sampling,
                                          target=run.settings.structured.target))


def run_structured(run: Run) -> dict:
    return ticket_experiment(run, StructuredTickets, draw, search=search, draw_retrained=draw_retrained)


register(Mode(
    name="structured", run=run_structured, description="the paper's structured (heads + MLPs) tickets",
    settings=StructuredRunSettings, label_prefix="s", pruning="structured",
    figures=("bars", "structured_heatmap", "stability", "super_tickets", "task_overlap", "importance_evolution"),
))
