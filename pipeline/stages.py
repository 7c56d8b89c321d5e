"""Running a stage once: reuse a finished result, never half-write one, never mark a broken one done.

A stage (a fine-tune, a search, a ticket's evaluation) writes into its own folder, and its
`metrics.json` (written last, atomically) marks it finished. That record also names the inputs
the result was computed from (e.g. the sha256 of the ticket's mask): a rerun reuses it only when
they are still the same, and redoes a stage whose record is unreadable. Reusing needs no write
access. The launching process (rank 0) decides under a lock, so two jobs that need the same
stage (the fine-tune shared by several experiments) never both run it; a stage whose score is
NaN or infinite is refused, not recorded.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lottery.errors import CorruptFileError, NonFiniteError, ReadOnlyError
from lottery.io import file_lock, read_json, remove_stale_temporaries, write_json

log = logging.getLogger("lottery")

STAGE_FILE = "metrics.json"
STAGE_FORMAT = "bert-lottery/stage/v1"


def is_launching_process() -> bool:
    """False in processes that a DDP launcher or srun started as ranks > 0."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("LOCAL_RANK", "RANK", "SLURM_PROCID"))


def read_stage(path: Path, inputs: dict[str, Any]) -> dict[str, float] | None:
    """The metrics of a finished stage computed from `inputs`, or None (and why, in the log)."""
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except CorruptFileError as error:
        log.warning("%s; redoing the stage", error)
        return None
    if not isinstance(record, dict) or record.get("format") != STAGE_FORMAT or "metrics" not in record:
        log.warning("%s is not a stage record of this bert-lottery; redoing the stage", path)
        return None
    if record.get("inputs", {}) != inputs:
        log.warning("%s was computed from %s, not from %s (an input changed); redoing the stage",
                    path, record.get("inputs"), inputs)
        return None
    return record["metrics"]


def check_finite(metrics: dict[str, float], stage: Path) -> None:
    bad = {name: value for name, value in metrics.items()
           if value is None or (isinstance(value, float) and not math.isfinite(value))}
    if bad:
        raise NonFiniteError(f"stage {stage} ended with non-finite metrics {bad}: the model's outputs are NaN or "
                             "infinite (a diverged fine-tune?); the stage is not marked done")


def check_writable(folder: Path) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise ReadOnlyError(f"cannot write {folder}: {existing} is read-only; reading finished results works "
                            "there, but this stage has not finished: set paths.root to a writable folder")


def _job_marker(run_dir: Path) -> Path:
    """Marks, for the ranks of one job, that its rank 0 took the stage and is running it."""
    job = "_".join(os.environ.get(name, "") for name in ("SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID")).strip("_")
    return run_dir / f".running-{job or 'local'}"


def _follow_rank_zero(run_dir: Path, done: Path, inputs: dict[str, Any]) -> dict | None:
    """Ranks > 0 (started by srun or torchrun beside rank 0): wait for rank 0's decision.

    Returns None to run the stage (rank 0 is running it), else the finished result. Deciding
    alone could send this rank into a fit that its rank 0 never joins.
    """
    marker = _job_marker(run_dir)
    while True:
        if marker.exists():
            return None
        finished = read_stage(done, inputs) if done.is_file() else None
        if finished is not None:
            return finished
        time.sleep(1.0)


def run_stage(run_dir: Path, work: Callable[[Path], dict[str, float]], *, force: bool = False,
              inputs: dict[str, Any] | None = None, on_finish: Callable[[], None] | None = None) -> dict[str, float]:
    """Run `work(run_dir)` unless `run_dir/metrics.json` holds its result for the same `inputs`.

    `force`: redo it (and drop its checkpoints). `on_finish` runs after the work, whatever
    happened (closing a W&B run).
    """
    inputs = inputs or {}
    done = run_dir / STAGE_FILE
    if not force:
        finished = read_stage(done, inputs)
        if finished is not None:
            log.info("reusing finished result %s (force=true redoes it)", done)
            return finished
    if not is_launching_process():
        finished = _follow_rank_zero(run_dir, done, inputs)
        return finished if finished is not None else work(run_dir)
    check_writable(run_dir)
    with file_lock(run_dir / ".lock"):
        finished = None if force else read_stage(done, inputs)  # another job may have finished it meanwhile
        if finished is not None:
            log.info("reusing finished result %s (force=true redoes it)", done)
            return finished
        done.unlink(missing_ok=True)
        remove_stale_temporaries(run_dir, recursive=True)  # what writers killed mid-write left
        if force:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        marker = _job_marker(run_dir)
        marker.touch()
        log.info("running stage %s", run_dir)
        try:
            metrics = work(run_dir)
        finally:
            marker.unlink(missing_ok=True)
            if on_finish is not None:
                on_finish()
        check_finite(metrics, run_dir)
        write_json(done, {"format": STAGE_FORMAT, "metrics": metrics, "inputs": inputs})
    return metrics


def unfinished_unless_readable(run_dir: Path, load: Callable[[], Any]) -> None:
    """A finished stage whose output `load` cannot read (deleted, truncated) is not finished: its
    record is removed, with a warning, so the stage runs again (a search redoes its good mask)."""
    done = run_dir / STAGE_FILE
    if not done.is_file():
        return
    try:
        load()
    except (FileNotFoundError, CorruptFileError) as error:
        check_writable(run_dir)
        log.warning("stage %s is not finished (%s); redoing it", run_dir, error)
        done.unlink(missing_ok=True)
