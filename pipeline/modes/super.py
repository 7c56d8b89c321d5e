"""`experiment=super`: super-good / super-random / super-bad structured tickets (survivors across all
seeds of a task, written by `python -m lottery.report`) scored pruned and retrained on this seed,
like any structured ticket. The masks' content is part of the experiment's identity, so new
super masks (another sweep, another report) get their own folder.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lottery.errors import ConfigError
from lottery.masks import StructuredMasks
from lottery.models import model_shape
from pipeline.identity import record_settings
from pipeline.modes import Mode, register
from pipeline.results import finish, new_results
from pipeline.run import Run
from pipeline.tickets import StructuredUnit, draw_tickets, score_tickets
from pipeline.training import finetune, load_finetuned

KINDS = ("good", "random", "bad")


def mask_files(cfg: DictConfig) -> dict[str, Path]:
    folder = Path(str(cfg["super"].dir))
    return {kind: folder / f"super_{kind}.json" for kind in cfg.tickets.kinds}


def check(cfg: DictConfig) -> None:
    unknown = [kind for kind in cfg.tickets.kinds if kind not in KINDS]
    if unknown:
        raise ConfigError(f"tickets.kinds {unknown} have no super tickets; choose among {list(KINDS)}")
    missing = [str(path) for path in mask_files(cfg).values() if not path.is_file()]
    if missing:
        raise ConfigError(
            f"super-ticket masks not found: {', '.join(missing)}. Run the structured sweep over several seeds, "
            f"then `python -m lottery.report {cfg.paths.root}` (it writes report/super/...), or point super.dir "
            "at such a folder.")


def settings(cfg: DictConfig) -> dict:
    return {kind: StructuredMasks.load_json(path).content_sha256() for kind, path in mask_files(cfg).items()}


def run_super(run: Run) -> dict:
    full = finetune(run)
    exp_dir = run.experiment_dir
    record_settings(exp_dir, {**run.settings, "super_dir": str(run.cfg["super"].dir)})
    reference = load_finetuned(run)
    shape = model_shape(reference)
    files = mask_files(run.cfg)
    draw = {kind: (lambda path=path: StructuredMasks.load_json(path, expected_shape=shape)) for kind, path in files.items()}
    tickets = draw_tickets(run, StructuredUnit, exp_dir / "tickets", draw, reference)
    results = new_results(run, full, *shape, search={"full_score": full[run.task.pruning_metric],
                                                     "super_dir": str(run.cfg["super"].dir)})
    results.tickets = score_tickets(run, exp_dir, StructuredUnit, tickets, reference)
    return finish(run, results)


register(Mode(
    name="super", run=run_super, description="super-survivor tickets across the seeds of a task",
    settings=settings, check=check, label_prefix="super", unit="structured", figures=("bars", "structured_heatmap"),
))
