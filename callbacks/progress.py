"""The progress bar a fit shows: Rich in a terminal, Lightning's plain bar when output goes to a
log file (a Rich live display would fill SLURM logs with redraws)."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar


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


def progress_bar(refresh_rate: int = 1, min_interval_s: float = 0.5, rich: bool | None = None) -> ProgressBar:
    """`rich`: the Rich bar (None: when stdout is a terminal), redrawn at most every `min_interval_s`
    seconds; else the plain bar, every max(refresh_rate, 50) batches."""
    if sys.stdout.isatty() if rich is None else rich:
        return ThrottledRichProgressBar(refresh_rate=refresh_rate, min_interval_s=min_interval_s)
    return TQDMProgressBar(refresh_rate=max(refresh_rate, 50))
