"""The progress a fit shows: Rich's bar in a terminal; where stderr is not a terminal (a log file,
`make run > log`, SLURM), one line per epoch and per evaluation through the project's logger, not a
bar redrawn into the file."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar

log = logging.getLogger("lottery")


class ThrottledRichProgressBar(RichProgressBar):
    """Lightning's RichProgressBar, redrawn at most every `min_interval_s` seconds (and at each
    epoch's last batch).

    Lightning's Rich bar reads the logged metrics after every batch whatever its refresh rate;
    on a GPU each read waits for the GPU (the loss is copied to the host), so the CPU cannot queue
    the next steps ahead. The plain bar reads them every `refresh_rate` batches already.
    """

    def __init__(self, refresh_rate: int = 1, min_interval_s: float = 0.5, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.min_interval_s = min_interval_s
        self._last_draw = float("-inf")

    def _due(self, batch_idx: int, total: float) -> bool:
        now = time.monotonic()
        if batch_idx + 1 >= total or now - self._last_draw >= self.min_interval_s:
            self._last_draw = now
            return True
        return False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._due(batch_idx, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


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


def progress_bar(refresh_rate: int = 1, min_interval_s: float = 0.5, rich: bool | None = None) -> ProgressBar:
    """`rich`: the Rich bar (None: when stderr is a terminal), redrawn at most every `min_interval_s`
    seconds; else one log line per epoch and evaluation (ProgressLines)."""
    if sys.stderr.isatty() if rich is None else rich:
        return ThrottledRichProgressBar(refresh_rate=refresh_rate, min_interval_s=min_interval_s)
    return ProgressLines()
