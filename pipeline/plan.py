"""`plan=true`: what a run would do, said before doing it, with nothing written.

The plan names the run's folders, says of each stage whether a finished result would be reused or
the stage would run, and how many examples it would process; it only reads (the data files, to
count them; the stages' records, to see what is finished). Hydra's bookkeeping of a planned run
goes to the system's temporary folder (`pipeline.config.writable_or_temporary`), so the output root
is left as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

from lottery.glue_data import read_split
from pipeline.run import Run
from pipeline.settings import TicketRunSettings
from pipeline.stages import STAGE_FILE, STAGE_FORMAT


def is_finished(folder: Path) -> bool:
    """Whether `folder` holds a finished stage's record (reused unless an input changed: run_stage)."""
    try:
        record = json.loads((folder / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("format") == STAGE_FORMAT and "metrics" in record


def count(run: Run, split: str) -> int:
    """Examples of `split` the run would use (after data.train_limit / data.eval_limit)."""
    data = run.settings.data
    limit = data.train_limit if split == "train" else data.eval_limit
    found = len(read_split(run.task, split, data.glue_dir))
    return found if limit is None else min(found, limit)


def plan_lines(run: Run) -> list[str]:
    """The plan of one run, one line per stage."""
    settings = run.settings
    epochs = settings.recipe.max_epochs
    train = count(run, "train")
    dev = sum(count(run, split) for split in run.task.eval_splits)
    fitting = f"{train} training examples x {epochs} epochs, then {dev} dev examples"
    if settings.search.split == "train_holdout":
        fitting = f"the training examples less a seeded held-out slice x {epochs} epochs, then {dev} dev examples"
    selection = (f"{dev} dev examples per evaluation" if settings.search.split == "dev"
                 else f"a seeded slice of the training examples ({settings.search.split}) per evaluation")

    def line(name: str, folder: Path, work: str) -> str:
        stages = run.mode.stages
        redone = settings.force and (folder != run.finetune_dir or stages == "fine-tune")  # its own stages
        state = "reuse" if is_finished(folder) and not redone else "run  "
        return f"  {state} {name:<18} {folder}" + ("" if state == "reuse" else f"  ({work})")

    lines = [(f"plan of {run.mode.name} on {settings.model.id} / {run.task.name} / seed {run.seed} "
              "(nothing is written; without plan=true it runs):"),
             line("fine-tune", run.finetune_dir, fitting)]
    if run.mode.stages == "fine-tune":
        return lines
    lines.insert(1, f"  folder {run.experiment_dir}")
    if isinstance(settings, TicketRunSettings):
        if "search" in run.mode.stages:
            lines.append(line("search", run.experiment_dir / "search", selection))
        for kind in settings.tickets.kinds:
            lines.append(line(f"{kind} pruned", run.experiment_dir / "pruned" / kind, f"{dev} dev examples"))
            if settings.tickets.retrain:
                lines.append(line(f"{kind} retrained", run.experiment_dir / "retrained" / kind, fitting))
            if settings.tickets.cost:
                lines.append(line(f"{kind} cost", run.experiment_dir / "cost" / kind,
                                  f"timed batches of {list(settings.cost.batch_sizes)} x {settings.cost.seq_len} "
                                  "tokens"))
    results = run.experiment_dir / "results.json"
    lines.append(f"  results {results}" + (" (exists)" if results.is_file() else ""))
    return lines
