"""`experiment=imp`: iterative magnitude pruning with rewinding (Chen et al. 2020). Train, prune 10%
of the original eligible weights globally, rewind the survivors to their pre-trained values,
reset optimizer and schedule, repeat while the dev score stays >= threshold x full; the last
passing round's mask is the good ticket, scored with random and bad tickets as in `magnitude`.

Its search folder holds round_NN.json / round_NN.npz per round, good.npz and summary.json.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from callbacks.magnitude_pruning import IterativeMagnitudePruning
from lottery.schema import SearchSummary
from pipeline.experiment import ticket_experiment
from pipeline.modes import Mode, register
from pipeline.modes.magnitude import WeightPruningSettings, draw, weight_search_summary
from pipeline.run import Run
from pipeline.settings import ALWAYS, TicketRunSettings, setting
from pipeline.settings.concerns import check_positive_integer
from pipeline.tickets import WeightTickets
from pipeline.training import datamodule, evaluate, load_finetuned, pretrained_model, recipe_module, resumable_fit


@dataclass(frozen=True)
class ImpSettings(WeightPruningSettings):
    """Iterative magnitude pruning with rewinding (conf/experiment/imp.yaml): `fraction` of the ORIGINAL
    eligible weights per round."""

    node = "imp"
    rounds: int = setting(10, "pruning rounds at most", identity=ALWAYS)
    epochs_per_round: int | None = setting(None, "training epochs per round (None: recipe.max_epochs)",
                                           identity=ALWAYS)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_integer(self.rounds, "imp.rounds")
        if self.epochs_per_round is not None:
            check_positive_integer(self.epochs_per_round, "imp.epochs_per_round")


@dataclass(frozen=True, kw_only=True)
class ImpRunSettings(TicketRunSettings):
    imp: ImpSettings = setting(factory=ImpSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.imp.epochs_per_round is None:
            object.__setattr__(self, "imp", replace(self.imp, epochs_per_round=self.recipe.max_epochs))

    @property
    def weight_pruning(self) -> WeightPruningSettings:
        return self.imp

    def recorded(self) -> dict[str, Any]:
        imp = self.imp
        return {"fraction": float(imp.fraction), "rounds": int(imp.rounds), "epochs_per_round": int(imp.epochs_per_round),
                **imp.recorded(), "threshold": self.search.threshold, "split": self.search.split}


def pretrained_state(run: Run) -> dict[str, torch.Tensor]:
    """Every parameter of the pre-trained model (with the run's seeded head), on the CPU."""
    return {name: p.detach().cpu().clone() for name, p in pretrained_model(run).named_parameters()}


def imp_search(run: Run, run_dir: Path) -> SearchSummary:
    """The rounds as one fit with the pruning callback between them; resumable mid-round."""
    settings = run.settings.imp
    metric = run.task.pruning_metric
    model = load_finetuned(run)
    full = evaluate(run, recipe_module(run, model), run_dir, "imp-full", split="selection")[metric]
    epochs = settings.epochs_per_round
    callback = IterativeMagnitudePruning(
        out_dir=str(run_dir), metric=metric, pretrained=functools.partial(pretrained_state, run), full_score=full,
        rounds=settings.rounds, epochs_per_round=epochs, fraction=float(settings.fraction),
        threshold=run.settings.search.threshold, **settings.eligibility())
    module = recipe_module(run, model, schedule_epochs=epochs)
    data = datamodule(run, evaluate_on="dev" if run.split == "dev" else "selection")
    resumable_fit(run, run_dir, module, "imp", [callback], data=data, max_epochs=epochs * settings.rounds,
                  limit_val_batches=None, check_val_every_n_epoch=epochs)
    search = callback.finished()
    search.good.save(run_dir / "good.npz")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return weight_search_summary(search)


def run_imp(run: Run) -> dict:
    return ticket_experiment(run, WeightTickets, draw, search=imp_search)


register(Mode(
    name="imp", run=run_imp, description="iterative magnitude pruning with rewinding (Chen et al. 2020)",
    settings=ImpRunSettings, label_prefix="imp", pruning="weights",
    figures=("bars", "magnitude_heatmap"),
))
