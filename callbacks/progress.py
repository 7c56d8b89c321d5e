"""The progress a fit shows: Rich's bar in a terminal; where stderr is not a terminal (a log file,
`make run > log`, SLURM), one line per epoch and per evaluation through the project's logger, not a
bar redrawn into the file."""

from __future__ import annotations

import logging
import sys

from pytorch_lightning.callbacks import ProgressBar, RichProgressBar

log = logging.getLogger("lottery")


class ProgressLines(ProgressBar):
    """One log line when a training epoch or an evaluation ends (Lightning's ProgressBar interface,
    so the Trainer adds no bar of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._step = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # A search's epochs take no step (it is a fit that only evaluates): it logs its own line per
        # iteration (lottery.search).
        stepped, self._step = trainer.global_step > self._step, trainer.global_step
        if self._enabled and trainer.is_global_zero and stepped:
            log.info("epoch %d/%d done (step %d)", trainer.current_epoch + 1, trainer.max_epochs,
                     trainer.global_step)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._enabled and trainer.is_global_zero and not trainer.sanity_checking:
            log.info("evaluated %d batch(es)", self._batches(trainer))

    @staticmethod
    def _batches(trainer) -> int:
        batches = trainer.num_val_batches
        return int(sum(batches) if isinstance(batches, list) else batches)


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    if sys.stderr.isatty():
        return RichProgressBar(refresh_rate=refresh_rate)
    return ProgressLines()
