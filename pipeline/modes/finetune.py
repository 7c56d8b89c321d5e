"""`experiment=finetune`: fine-tune (model, task, seed) with the recipe and score it on dev."""

from __future__ import annotations

import logging

from pipeline.modes import Mode, register
from pipeline.run import Run
from pipeline.training import finetune

log = logging.getLogger("lottery")


def run_finetune(run: Run) -> dict:
    metrics = finetune(run, force=run.settings.force)
    log.info("dev metrics of %s on %s (seed %s): %s", run.settings.model.id, run.task.name, run.seed, metrics)
    return metrics


register(Mode(name="finetune", run=run_finetune, description="fine-tune and score on dev"))
