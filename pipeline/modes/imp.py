"""`experiment=imp`: iterative magnitude pruning with rewinding (Chen et al. 2020). Train, prune 10%
of the original eligible weights globally, rewind the survivors to their pre-trained values,
reset optimizer and schedule, repeat while the dev score stays >= threshold x full; the last
passing round's mask is the good ticket, scored with random and bad tickets as in `magnitude`.

Its search folder holds round_NN.json / round_NN.npz per round, good.npz and summary.json.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig

from callbacks.magnitude_pruning import IterativeMagnitudePruning
from lottery.errors import ConfigError
from lottery.magnitude import WeightMasks, eligible_parameters
from pipeline.modes import Mode, register
from pipeline.modes.magnitude import check_parameters, parameter_options, score_weight_tickets
from pipeline.run import Run
from pipeline.tickets import check_kinds
from pipeline.training import datamodule, evaluate, load_finetuned, pretrained_model, recipe_module, resumable_fit


def check(cfg: DictConfig) -> None:
    node = cfg.imp
    check_parameters(node, "imp")
    check_kinds(cfg.tickets.kinds)
    for key in ("rounds", "epochs_per_round"):
        if isinstance(node[key], bool) or not isinstance(node[key], int) or node[key] < 1:
            raise ConfigError(f"imp.{key} must be a positive integer, got {node[key]!r}")


def settings(cfg: DictConfig) -> dict:
    node = cfg.imp
    return {"fraction": float(node.fraction), "rounds": int(node.rounds), "epochs_per_round": int(node.epochs_per_round),
            **parameter_options(node), "threshold": float(cfg.search.threshold), "split": str(cfg.search.split)}


def tags(cfg: DictConfig) -> list[str]:
    return [] if cfg.search.split == "dev" else [str(cfg.search.split)]


def pretrained_state(run: Run) -> dict[str, torch.Tensor]:
    """Every parameter of the pre-trained model (with the run's seeded head), on the CPU."""
    return {name: p.detach().cpu().clone() for name, p in pretrained_model(run).named_parameters()}


def imp_search(run: Run, run_dir: Path) -> dict:
    """The rounds as one fit with the pruning callback between them; resumable mid-round."""
    node = run.cfg.imp
    metric = run.task.pruning_metric
    model = load_finetuned(run)
    full = evaluate(run, recipe_module(run, model), run_dir, "imp-full", split="selection")[metric]
    epochs = int(node.epochs_per_round)
    callback = IterativeMagnitudePruning(
        out_dir=str(run_dir), metric=metric, pretrained=functools.partial(pretrained_state, run), full_score=full,
        rounds=int(node.rounds), epochs_per_round=epochs, fraction=float(node.fraction),
        threshold=float(run.cfg.search.threshold), **parameter_options(node))
    module = recipe_module(run, model, schedule_epochs=epochs)
    data = datamodule(run, evaluate_on="dev" if run.split == "dev" else "selection")
    resumable_fit(run, run_dir, module, "imp", [callback], data=data, max_epochs=epochs * int(node.rounds),
                  limit_val_batches=None, check_val_every_n_epoch=epochs)
    search = callback.search
    good = search.good or WeightMasks.ones_like(eligible_parameters(module.model, **parameter_options(node)))
    good.save(run_dir / "good.npz")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {"full_score": full, "threshold_score": search.threshold * full, "good_iteration": search.good_step,
            "sparsity": good.sparsity(), "history": search.history}


def run_imp(run: Run) -> dict:
    return score_weight_tickets(run, imp_search, run.cfg.imp)


register(Mode(
    name="imp", run=run_imp, description="iterative magnitude pruning with rewinding (Chen et al. 2020)",
    settings=settings, tags=tags, check=check, label_prefix="imp", unit="weights",
    figures=("bars", "magnitude_heatmap"),
))
