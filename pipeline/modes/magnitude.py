"""`experiment=magnitude`: the paper's magnitude experiment. Global L1 pruning of the fine-tuned
weights, 10% of the remaining eligible weights per step with no retraining in between, until the
score drops below threshold x full; good / random / bad weight tickets pruned and retrained.

Folders under the experiment folder: `search/` (one JSON and one packed mask per step,
`good.npz`, `summary.json`), `tickets/<kind>.npz`, `pruned/<kind>/metrics.json`,
`retrained/<kind>/` and `results.json`, with the sparsity and the % of weights surviving per
head and per MLP.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from lottery.errors import ConfigError
from lottery.io import read_json, write_json
from lottery.magnitude import (
    ELIGIBLE_SUFFIXES,
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
from lottery.models import model_shape
from pipeline.identity import record_settings
from pipeline.modes import Mode, register
from pipeline.results import finish, new_results
from pipeline.run import Run
from pipeline.stages import unfinished_unless_readable
from pipeline.tickets import WeightUnit, check_kinds, draw_tickets, score_tickets
from pipeline.training import evaluate, finetune, load_finetuned, recipe_module, stage


def parameter_options(node: DictConfig) -> dict:
    return {"include_biases": bool(node.include_biases), "suffixes": tuple(node.modules)}


def check_parameters(node: DictConfig, where: str) -> None:
    unknown = [name for name in node.modules if name not in ELIGIBLE_SUFFIXES]
    if unknown or not node.modules:
        raise ConfigError(f"{where}.modules must be a non-empty list of {list(ELIGIBLE_SUFFIXES)}; got {list(node.modules)}")
    fraction = node.fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"{where}.fraction must be a number in (0, 1), got {fraction!r}")


def check(cfg: DictConfig) -> None:
    node = cfg.magnitude
    check_parameters(node, "magnitude")
    MagnitudeSearch(fraction=float(node.fraction), threshold=float(cfg.search.threshold), max_steps=node.max_steps,
                    exit_mask=str(node.exit_mask))
    check_kinds(cfg.tickets.kinds)


def settings(cfg: DictConfig) -> dict:
    node = cfg.magnitude
    return {"fraction": float(node.fraction), "max_steps": int(node.max_steps), "exit_mask": str(node.exit_mask),
            **parameter_options(node), "threshold": float(cfg.search.threshold), "split": str(cfg.search.split)}


def tags(cfg: DictConfig) -> list[str]:
    return [] if cfg.search.split == "dev" else [str(cfg.search.split)]


def restore_and_mask_(model: torch.nn.Module, original: dict[str, torch.Tensor], masks: WeightMasks) -> None:
    """Put the fine-tuned values back into the eligible weights, then zero the pruned ones."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in original.items():
            parameters[name].copy_(value)
    masks.apply_(model)


def oneshot_search(run: Run, run_dir: Path) -> dict:
    """The paper's schedule, step by step; every step's score and mask are saved as they are
    made, and a rerun replays the finished steps instead of scoring them again."""
    node = run.cfg.magnitude
    model = load_finetuned(run)
    params = eligible_parameters(model, **parameter_options(node))
    original = snapshot_cpu(model, params)
    module = recipe_module(run, model)
    search = MagnitudeSearch(fraction=float(node.fraction), threshold=float(run.cfg.search.threshold),
                             max_steps=int(node.max_steps), exit_mask=str(node.exit_mask))
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


def score_weight_tickets(run: Run, search_work, node: DictConfig) -> dict:
    """The stages every weight-pruning mode shares after its search: tickets drawn from the good
    mask (random: the same number of weights; bad: the smallest-magnitude ones), scored, reported."""
    full = finetune(run)
    exp_dir = run.experiment_dir
    record_settings(exp_dir, run.settings)
    unfinished_unless_readable(exp_dir / "search", lambda: load_weight_masks(exp_dir / "search" / "good.npz"))
    summary = stage(exp_dir / "search", lambda d: search_work(run, d), force=bool(run.cfg.force))
    good = load_weight_masks(exp_dir / "search" / "good.npz")
    reference = load_finetuned(run)
    finetuned_weights = snapshot_cpu(reference, eligible_parameters(reference, **parameter_options(node)))
    draw = {
        "good": lambda: good,
        "random": lambda: random_weight_ticket(good, seed=run.seed),
        "bad": lambda: bad_weight_ticket(finetuned_weights, good, seed=run.seed),
    }
    tickets = draw_tickets(run, WeightUnit, exp_dir / "tickets", draw, reference)
    results = new_results(run, full, *model_shape(reference), search=summary)
    results.tickets = score_tickets(run, exp_dir, WeightUnit, tickets, reference)
    return finish(run, results)


def run_magnitude(run: Run) -> dict:
    return score_weight_tickets(run, oneshot_search, run.cfg.magnitude)


register(Mode(
    name="magnitude", run=run_magnitude, description="the paper's global magnitude (m-pruning) tickets",
    settings=settings, protocol_keys=("magnitude_exit",), tags=tags, check=check, label_prefix="m", unit="weights",
    figures=("bars", "magnitude_heatmap"),
))
