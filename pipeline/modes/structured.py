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
from pathlib import Path

from omegaconf import DictConfig

from callbacks.structured_pruning import StructuredPruning
from lightning_modules.importance_module import ImportanceModule
from lottery.errors import ConfigError
from lottery.importance import check_accumulation, get_criterion
from lottery.io import read_json
from lottery.masks import StructuredMasks
from lottery.search import MODES as TARGETS
from lottery.search import SearchConfig
from lottery.tickets import SAMPLINGS, bad_ticket, random_ticket
from pipeline.checkpoints import resume_from
from pipeline.identity import record_settings
from pipeline.modes import Mode, register
from pipeline.results import finish, new_results
from pipeline.run import Run
from pipeline.stages import unfinished_unless_readable
from pipeline.tickets import StructuredUnit, check_kinds, draw_tickets, score_tickets
from pipeline.training import datamodule, finetune, load_finetuned, make_trainer, stage

log = logging.getLogger("lottery")
SEARCH_EPOCH_LIMIT = 100_000  # the callback stops the fit when the search is done


def search_config(cfg: DictConfig) -> SearchConfig:
    node = cfg.structured
    return SearchConfig(mode=str(node.target), threshold=float(cfg.search.threshold),
                        head_fraction=float(node.head_fraction), mlps_per_step=node.mlps_per_step,
                        phase_change=str(cfg.search.phase_change))


def importance_settings(cfg: DictConfig) -> dict:
    criterion = get_criterion(str(cfg.importance.name))
    return {"name": criterion.name, **({"accumulate": str(cfg.importance.accumulate)} if criterion.uses_data else {})}


def settings(cfg: DictConfig) -> dict:
    return {"search": search_config(cfg).to_dict(), "split": str(cfg.search.split),
            "importance": importance_settings(cfg), "sampling": str(cfg.tickets.sampling)}


def tags(cfg: DictConfig) -> list[str]:
    node = cfg.structured
    found = [] if node.target == "heads_mlps" else [str(node.target)]
    found += [] if cfg.importance.name == "michel" else [str(cfg.importance.name)]
    found += [] if cfg.search.split == "dev" else [str(cfg.search.split)]
    return found


def check(cfg: DictConfig) -> None:
    if cfg.structured.target not in TARGETS:
        raise ConfigError(f"structured.target must be one of {TARGETS}, got {cfg.structured.target!r}")
    search_config(cfg)
    if get_criterion(str(cfg.importance.name)).uses_data:
        check_accumulation(str(cfg.importance.accumulate))
    if cfg.tickets.sampling not in SAMPLINGS:
        raise ConfigError(f"tickets.sampling must be one of {SAMPLINGS}, got {cfg.tickets.sampling!r}")
    check_kinds(cfg.tickets.kinds)


def search(run: Run, run_dir: Path, callbacks: list | None = None) -> dict:
    """The iterative mask search as a Lightning fit (one epoch per iteration), resumable."""
    cfg = run.cfg
    model = load_finetuned(run)
    criterion = get_criterion(str(cfg.importance.name))
    module = ImportanceModule(model, run.task, StructuredMasks.for_model(model), criterion)
    data = datamodule(run, train_on="selection")
    pruning = StructuredPruning(out_dir=str(run_dir), metric=run.task.pruning_metric, config=search_config(cfg),
                                accumulate=str(cfg.importance.get("accumulate", "per_batch")),
                                num_batches=data.num_selection_batches())
    trainer = make_trainer(run, run_dir, "search", [pruning, *(callbacks or [])], max_epochs=SEARCH_EPOCH_LIMIT,
                           limit_val_batches=0, gradient_clip_val=None, enable_checkpointing=False)
    last = resume_from(pruning.checkpoint_path)  # an unloadable one is set aside: start from scratch
    if last is not None:
        log.info("resuming the mask search from %s", last)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last is not None else None)
    summary = read_json(run_dir / "summary.json")
    shutil.rmtree(pruning.checkpoint_path.parent, ignore_errors=True)
    return summary


def run_structured(run: Run) -> dict:
    cfg = run.cfg
    full = finetune(run)
    exp_dir = run.experiment_dir
    record_settings(exp_dir, run.settings)
    unfinished_unless_readable(exp_dir / "search", lambda: StructuredMasks.load_json(exp_dir / "search" / "good.json"))
    summary = stage(exp_dir / "search", lambda d: search(run, d), force=bool(cfg.force))
    good = StructuredMasks.load_json(exp_dir / "search" / "good.json")
    target, seed = str(cfg.structured.target), run.seed
    draw = {
        "good": lambda: good,
        "random": lambda: StructuredMasks(*random_ticket(good.head, good.mlp, seed=seed,
                                                         sampling=str(cfg.tickets.sampling), mode=target)),
        "bad": lambda: StructuredMasks(*bad_ticket(good.head, good.mlp, seed=seed, mode=target)),
    }
    reference = load_finetuned(run)
    tickets = draw_tickets(run, StructuredUnit, exp_dir / "tickets", draw, reference)
    results = new_results(run, full, *good.shape, search=summary)
    results.tickets = score_tickets(run, exp_dir, StructuredUnit, tickets, reference)
    return finish(run, results)


register(Mode(
    name="structured", run=run_structured, description="the paper's structured (heads + MLPs) tickets",
    settings=settings, protocol_keys=("accumulate", "phase_change", "sampling"), tags=tags, check=check,
    label_prefix="s", unit="structured",
    figures=("bars", "structured_heatmap", "stability", "super_tickets", "task_overlap", "importance_evolution"),
))
