"""The paper's magnitude experiment (and iterative magnitude pruning with rewinding).

Folders under `<identity>/magnitude_<schedule>[_holdout]/`: `search/` (one JSON and one packed
mask per step or round, `good.npz`, `summary.json`), `tickets/<kind>.npz`,
`pruned/<kind>/metrics.json`, `retrained/<kind>/` and `results.json` in the structured
experiment's schema, with the sparsity and per-head / per-MLP survival in place of heads/MLPs kept.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

import torch

from callbacks.magnitude_pruning import IterativeMagnitudePruning
from callbacks.weight_masks import WeightMaskEnforcer
from lottery.accounting import encoder_parameter_count
from lottery.io import read_json, write_json
from lottery.magnitude import (
    MagnitudeSearch,
    WeightMasks,
    bad_weight_ticket,
    eligible_parameters,
    global_magnitude_step,
    load_weight_masks,
    random_weight_ticket,
    snapshot_cpu,
    sparsity_report,
)
from lottery.pipeline.common import (
    Run,
    datamodule,
    evaluate,
    fit,
    load_finetuned,
    pretrained_model,
    recipe_module,
    resumable_fit,
    run_stage,
    save_plain,
)
from lottery.pipeline.results import finish, majority_and_warning, results_header

log = logging.getLogger("lottery")


def parameter_options(run: Run) -> dict:
    pruning = run.cfg.pruning
    return {"include_biases": bool(pruning.include_biases), "suffixes": tuple(pruning.modules)}


def restore_and_mask_(model: torch.nn.Module, original: dict[str, torch.Tensor], masks: WeightMasks) -> None:
    """Put the fine-tuned values back into the eligible weights, then zero the pruned ones."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in original.items():
            parameters[name].copy_(value)
    masks.apply_(model)


def oneshot_search(run: Run, run_dir: Path) -> dict:
    """The paper's schedule: prune 10% of the remaining weights of the fine-tuned model per step,
    no retraining, until the score drops below threshold x full (at most max_steps).

    Every step's score and mask are saved as they are made; a rerun replays finished steps."""
    pruning = run.cfg.pruning
    model = load_finetuned(run)
    params = eligible_parameters(model, **parameter_options(run))
    original = snapshot_cpu(model, params)
    module = recipe_module(run, model)
    search = MagnitudeSearch(fraction=pruning.fraction, threshold=pruning.threshold, max_steps=pruning.max_steps)
    masks = WeightMasks.ones_like(params)
    metric = run.task.pruning_metric
    while not search.done:
        step = len(search.history)
        if step:
            masks = global_magnitude_step(original, masks, search.next_fraction, of="remaining")
        record = run_dir / f"step_{step:02d}.json"
        if record.is_file():
            scores = read_json(record)["metrics"]
        else:
            restore_and_mask_(model, original, masks)
            scores = evaluate(run, module, run_dir, f"search-step{step}", split="selection")
            masks.save(run_dir / f"step_{step:02d}.npz")
        search.report(scores[metric], masks)
        write_json(record, {**search.history[-1], "metrics": scores, **sparsity_report(masks, model)})
    search.good.save(run_dir / "good.npz")
    return {"full_score": search.full_score, "threshold_score": search.threshold * search.full_score,
            "good_iteration": search.good_step, "sparsity": search.good.sparsity(), "history": search.history}


def pretrained_state(run: Run) -> dict[str, torch.Tensor]:
    """Every parameter of the pre-trained model (with the run's seeded head), on the CPU."""
    return {name: p.detach().cpu().clone() for name, p in pretrained_model(run).named_parameters()}


def imp_search(run: Run, run_dir: Path) -> dict:
    """Iterative magnitude pruning with rewinding (Chen et al. 2020), resumable mid-round."""
    pruning = run.cfg.pruning
    metric = run.task.pruning_metric
    model = load_finetuned(run)
    full = evaluate(run, recipe_module(run, model), run_dir, "imp-full", split="selection")[metric]

    epochs = int(pruning.imp_epochs_per_round)
    callback = IterativeMagnitudePruning(
        out_dir=str(run_dir), metric=metric, pretrained=functools.partial(pretrained_state, run), full_score=full,
        rounds=int(pruning.imp_rounds), epochs_per_round=epochs, fraction=pruning.fraction,
        threshold=pruning.threshold, **parameter_options(run))
    module = recipe_module(run, model, schedule_epochs=epochs)
    data = datamodule(run, eval_split="holdout" if run.holdout else "dev")
    resumable_fit(run, run_dir, module, "imp", [callback], data=data, max_epochs=epochs * int(pruning.imp_rounds),
                  limit_val_batches=None, check_val_every_n_epoch=epochs)
    good = callback.good or WeightMasks.ones_like(eligible_parameters(module.model, **parameter_options(run)))
    good.save(run_dir / "good.npz")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    passed = [h for h in callback.history if h["passed"]]
    return {"full_score": full, "threshold_score": pruning.threshold * full,
            "good_iteration": passed[-1]["round"] if passed else 0, "sparsity": good.sparsity(),
            "history": callback.history}


def make_tickets(run: Run, good: WeightMasks, finetuned_weights: dict, folder: Path) -> dict[str, WeightMasks]:
    drawn = {
        "good": lambda: good,
        "random": lambda: random_weight_ticket(good, seed=run.seed),
        "bad": lambda: bad_weight_ticket(finetuned_weights, good, seed=run.seed),
    }
    tickets = {}
    for kind in run.cfg.tickets.kinds:
        path = folder / f"{kind}.npz"
        if path.is_file() and not run.cfg.force:
            tickets[kind] = load_weight_masks(path)
        else:
            tickets[kind] = drawn[kind]()
            tickets[kind].save(path)
    return tickets


def retrain(run: Run, run_dir: Path, masks: WeightMasks, kind: str) -> dict:
    """The ticket's mask on the pre-trained weights, fine-tuned with pruned weights held at zero."""
    model = pretrained_model(run)
    masks.check_compatible(model)
    masks.apply_(model)
    metrics = fit(run, run_dir, model, save_plain, f"retrained-{kind}",
                  callbacks=[WeightMaskEnforcer(masks)])
    parameters = dict(model.named_parameters())
    leaked = sum(int(torch.count_nonzero(parameters[name].detach().cpu()[~mask])) for name, mask in masks.items())
    if leaked:
        raise RuntimeError(f"{leaked} pruned weights are non-zero after retraining the {kind} ticket")
    return metrics


def run_magnitude(run: Run, full_metrics: dict) -> dict:
    cfg = run.cfg
    exp_dir = run.experiment_dir("magnitude")
    force = bool(cfg.force)
    if cfg.pruning.schedule not in ("paper", "imp"):
        raise ValueError(f"pruning.schedule must be 'paper' or 'imp', got {cfg.pruning.schedule!r}")
    work = imp_search if cfg.pruning.schedule == "imp" else oneshot_search
    summary = run_stage(exp_dir / "search", lambda d: work(run, d), force=force)
    good = load_weight_masks(exp_dir / "search" / "good.npz")

    finetuned = load_finetuned(run)
    finetuned_weights = snapshot_cpu(finetuned, eligible_parameters(finetuned, **parameter_options(run)))
    tickets = make_tickets(run, good, finetuned_weights, exp_dir / "tickets")
    majority, warning = majority_and_warning(run, summary["full_score"], cfg.pruning.threshold)

    encoder_total = encoder_parameter_count(finetuned)
    results = results_header(run, "magnitude", full_metrics, majority)
    results.update(num_layers=finetuned.config.num_hidden_layers,
                   num_heads=finetuned.config.num_attention_heads, search=summary, warning=warning)
    for kind, masks in tickets.items():
        report = sparsity_report(masks, finetuned)
        pruned_count = masks.num_total() - masks.num_kept()
        entry = {"sparsity": masks.sparsity(), "size_pct": 100.0 * (encoder_total - pruned_count) / encoder_total,
                 "head_survival": report["head_survival"], "mlp_survival": report["mlp_survival"],
                 "per_layer_sparsity": report["per_layer"], "mask_file": f"tickets/{kind}.npz"}

        def pruned_work(run_dir: Path, masks: WeightMasks = masks, kind: str = kind) -> dict:
            model = load_finetuned(run)
            masks.apply_(model)
            return evaluate(run, recipe_module(run, model), run_dir, f"pruned-{kind}")

        entry["pruned"] = run_stage(exp_dir / "pruned" / kind, pruned_work, force=force)
        entry["retrained"] = (run_stage(exp_dir / "retrained" / kind, lambda d, m=masks, k=kind: retrain(run, d, m, k),
                                        force=force) if cfg.tickets.retrain else None)
        results["tickets"][kind] = entry
    return finish(run, exp_dir, results)
