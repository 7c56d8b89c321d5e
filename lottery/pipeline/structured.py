"""The paper's structured experiment: search heads/MLPs, then good/random/bad tickets pruned and retrained.

Folders under `<identity>/structured_<mode>[_holdout]/`:
`search/` (iter_NNN.json, good.json, summary.json), `tickets/<kind>.json`,
`pruned/<kind>/metrics.json` (mask on the fine-tuned model), `retrained/<kind>/` (the ticket cut
out of the pre-trained model, physically smaller, fine-tuned with the same recipe and seed; its
model folder reloads with `lottery.pruning.load_pruned`), and `results.json`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from torch import nn

from callbacks.structured_pruning import StructuredPruning
from lightning_modules.glue_module import GlueModule
from lottery.accounting import structured_size
from lottery.io import read_json
from lottery.masks import StructuredMasks
from lottery.pipeline.common import (
    Run,
    datamodule,
    evaluate,
    fit,
    load_finetuned,
    make_trainer,
    pretrained_model,
    run_stage,
)
from lottery.pipeline.results import finish, majority_and_warning, results_header
from lottery.pruning import prune_structure, save_pruned
from lottery.tickets import bad_ticket, random_ticket

log = logging.getLogger("lottery")
SEARCH_EPOCH_LIMIT = 100_000  # the callback stops the fit when the search is done


def search(run: Run, run_dir: Path, callbacks: list | None = None) -> dict:
    """The iterative mask search as a Lightning fit (one epoch per iteration), resumable."""
    cfg = run.cfg
    model = load_finetuned(run)
    module = GlueModule(model, run.task, masks=StructuredMasks.for_model(model), search=True)
    selection = "dev" if cfg.search.split == "dev" else "holdout"
    data = datamodule(run, train_split=selection, train_order="sequential")
    pruning = StructuredPruning(out_dir=str(run_dir), metric=run.task.pruning_metric, mode=cfg.pruning.mode,
                                threshold=cfg.search.threshold, head_fraction=cfg.search.head_fraction,
                                mlps_per_step=cfg.search.mlps_per_step)
    trainer = make_trainer(run, run_dir, "search", [pruning, *(callbacks or [])], max_epochs=SEARCH_EPOCH_LIMIT,
                           limit_val_batches=0, gradient_clip_val=None, enable_checkpointing=False)
    last = pruning.checkpoint_path
    if last.is_file():
        log.info("resuming the mask search from %s", last)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None)
    summary = read_json(run_dir / "summary.json")
    shutil.rmtree(last.parent, ignore_errors=True)
    return summary


def make_tickets(run: Run, good: StructuredMasks, folder: Path) -> dict[str, StructuredMasks]:
    """good / random / bad masks, seeded from the run's seed, saved as JSON (reused if present)."""
    mode = run.cfg.pruning.mode
    drawn = {
        "good": (good.head, good.mlp),
        "random": random_ticket(good.head, good.mlp, seed=run.seed, sampling=run.cfg.tickets.sampling, mode=mode),
        "bad": bad_ticket(good.head, good.mlp, seed=run.seed, mode=mode),
    }
    tickets = {}
    for kind in run.cfg.tickets.kinds:
        path = folder / f"{kind}.json"
        if path.is_file() and not run.cfg.force:
            tickets[kind] = StructuredMasks.load_json(path, expected_shape=good.shape)
        else:
            tickets[kind] = StructuredMasks(*drawn[kind])
            tickets[kind].save_json(path)
    return tickets


def score_tickets(run: Run, exp_dir: Path, tickets: dict[str, StructuredMasks],
                  reference: nn.Module | None = None) -> dict[str, dict]:
    """Each ticket's size, its score pruned (mask on the fine-tuned model) and retrained (cut out
    of the pre-trained model, fine-tuned with the same recipe and seed); every piece resumable.
    `reference`: the fine-tuned model, if the caller has it loaded already (sizes are counted on it)."""
    force = bool(run.cfg.force)
    reference = reference if reference is not None else load_finetuned(run)
    entries = {}
    for kind, masks in tickets.items():
        size = structured_size(reference, masks)
        entry = {key: size[key] for key in ("size_pct", "heads_kept", "heads_total", "mlps_kept", "mlps_total",
                                            "params_kept")}
        entry.update(head_mask=masks.head.int().tolist(), mlp_mask=masks.mlp.int().tolist(),
                     mask_file=f"tickets/{kind}.json")

        def pruned_work(run_dir: Path, masks: StructuredMasks = masks, kind: str = kind) -> dict:
            return evaluate(run, GlueModule(load_finetuned(run), run.task, masks=masks), run_dir, f"pruned-{kind}")

        def retrained_work(run_dir: Path, masks: StructuredMasks = masks, kind: str = kind) -> dict:
            model = prune_structure(pretrained_model(run), masks)
            return fit(run, run_dir, model, save_pruned, f"retrained-{kind}")

        entry["pruned"] = run_stage(exp_dir / "pruned" / kind, pruned_work, force=force)
        entry["retrained"] = (run_stage(exp_dir / "retrained" / kind, retrained_work, force=force)
                              if run.cfg.tickets.retrain else None)
        entries[kind] = entry
    return entries


def run_structured(run: Run, full_metrics: dict) -> dict:
    cfg = run.cfg
    exp_dir = run.experiment_dir("structured")
    summary = run_stage(exp_dir / "search", lambda d: search(run, d), force=bool(cfg.force))
    good = StructuredMasks.load_json(exp_dir / "search" / "good.json")
    tickets = make_tickets(run, good, exp_dir / "tickets")
    majority, warning = majority_and_warning(run, summary["full_score"], cfg.search.threshold)
    results = results_header(run, "structured", full_metrics, majority)
    results.update(num_layers=good.shape[0], num_heads=good.shape[1], search=summary, warning=warning)
    results["tickets"] = score_tickets(run, exp_dir, tickets)
    return finish(run, exp_dir, results)


def run_super(run: Run, full_metrics: dict) -> dict:
    """Super-good / super-random / super-bad tickets (written by `python -m lottery.report` from a
    sweep's good masks across seeds) scored pruned and retrained on this seed, like any ticket."""
    from lottery.report import mode_name

    cfg = run.cfg
    variant = mode_name({"mode": "structured", "pruning": str(cfg.pruning.mode), "search_split": cfg.search.split})
    source = Path(cfg.super_tickets.dir) / str(cfg.model.id) / run.task.name / variant
    files = {kind: source / f"super_{kind}.json" for kind in cfg.tickets.kinds}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"super-ticket masks not found: {', '.join(missing)}. Run the structured sweep over several seeds, "
            f"then `python -m lottery.report {cfg.paths.root}` (it writes report/super/...), or point "
            f"super_tickets.dir at such a folder.")
    exp_dir = run.experiment_dir("super")
    reference = load_finetuned(run)
    tickets = {}
    for kind, path in files.items():
        tickets[kind] = StructuredMasks.load_json(path, expected_shape=StructuredMasks.for_model(reference).shape)
        tickets[kind].save_json(exp_dir / "tickets" / f"{kind}.json")
    majority, warning = majority_and_warning(run, full_metrics[run.task.pruning_metric], cfg.search.threshold)
    results = results_header(run, "structured", full_metrics, majority)
    results.update(pruning=f"super_{cfg.pruning.mode}", num_layers=reference.config.num_hidden_layers,
                   num_heads=reference.config.num_attention_heads, super_source=str(source), warning=warning)
    results["tickets"] = score_tickets(run, exp_dir, tickets, reference)
    return finish(run, exp_dir, results)
