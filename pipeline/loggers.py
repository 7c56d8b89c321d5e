"""The Lightning loggers a stage gets, built from conf/logger/*.yaml (`_target_`s point here).

Each factory takes the stage's folder, its job type and the run, plus the settings of its config
file, so the same config serves every stage.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

if TYPE_CHECKING:
    from pipeline.run import Run


class _ResumableWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; this one keeps the rows a killed run
    wrote and drops, at the first new row, those from its step on (the resumed run logs them
    again, identically)."""

    def _check_log_dir_exists(self) -> None:
        self._kept: list[dict[str, str]] | None = None
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self._kept = list(csv.DictReader(handle))
            self._fs.rm_file(self.metrics_file_path)

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if getattr(self, "_kept", None) is not None:
            first = step if step is not None else 0
            rows = [row for row in self._kept if row.get("step") not in (None, "") and int(row["step"]) < first]
            self._kept = None
            for row in rows:
                self.metrics.append({key: value for key, value in row.items() if value != ""})
        super().log_metrics(metrics_dict, step)


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv survives a kill and a resume (see `_ResumableWriter`)."""

    @property
    @rank_zero_experiment  # as CSVLogger's: other DDP ranks must not read or remove metrics.csv
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumableWriter(log_dir=self.log_dir)
        return self._experiment


def csv_logger(run_dir: Path, job_type: str, run: Run) -> ResumableCSVLogger:
    # Every row straight to disk (a few bytes every log_every_n_steps steps): a row logged just
    # after a checkpoint is not re-logged by the resumed run, so it must not wait in a buffer.
    return ResumableCSVLogger(save_dir=str(run_dir), name="logs", version=job_type, flush_logs_every_n_steps=1)


def wandb_logger(run_dir: Path, job_type: str, run: Run, project: str, entity: str | None, mode: str,
                 tags: list[str]) -> Any:
    from pytorch_lightning.loggers import WandbLogger

    return WandbLogger(
        project=project, entity=entity, mode=mode, group=wandb_group(run), name=f"seed{run.seed}-{job_type}",
        job_type=job_type, tags=list(tags), save_dir=str(run.settings.paths.root), config=asdict(run.settings),
    )


def wandb_group(run: Run) -> str:
    """All stages of all seeds of one variant of (model, task) share a W&B group."""
    return f"{run.settings.model.id}-{run.task.name}-{run.variant}-{run.group}"
