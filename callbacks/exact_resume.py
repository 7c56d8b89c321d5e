"""Makes a fit resumed from a mid-epoch checkpoint continue exactly as the uninterrupted fit would.

Lightning restores weights, optimizer, schedule and loop counters, but not where in the epoch's
batch order the run was, nor the random number generators that draw dropout masks. This callback
saves both with every checkpoint (the RNG states of every rank, gathered under DDP) and on resume
tells the data module how many of the epoch's batches are done (it skips them) and puts the RNG
states back just before the first batch. It also flushes the loggers at each checkpoint, so the
log rows of everything the checkpoint covers are on disk.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

CHECKPOINT_KEY = "bert_lottery_resume"


def rng_states() -> dict[str, Any]:
    """Every RNG's state as tensors and plain Python values (what a weights-only checkpoint holds)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    states = {"torch": torch.get_rng_state(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
              "python": [version, list(python_state), python_gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, python_state, python_gauss = states["python"]
    random.setstate((version, tuple(python_state), python_gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(Callback):
    def __init__(self) -> None:
        self._epoch = 0
        self._batches_done = 0
        self._pending_rng: dict[str, Any] | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch = trainer.current_epoch
        self._batches_done = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._batches_done += 1

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        states = rng_states()
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, states)
        else:
            gathered = [states]
        checkpoint[CHECKPOINT_KEY] = {"epoch": self._epoch, "batches_done": self._batches_done, "rng": gathered}
        for logger in trainer.loggers:
            logger.save()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            return
        self._epoch, self._batches_done = int(saved["epoch"]), int(saved["batches_done"])
        rank_states = saved["rng"]
        self._pending_rng = rank_states[trainer.global_rank] if trainer.global_rank < len(rank_states) else None
        resume_at = getattr(trainer.datamodule, "resume_at", None)
        if resume_at is None:
            raise TypeError(f"ExactResume needs a data module with resume_at(epoch, batches_done); "
                            f"{type(trainer.datamodule).__name__} has none")
        resume_at(self._epoch, self._batches_done)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the epoch's data iterator was made (it draws a seed from the global RNG), before
        # the first batch: exactly where the uninterrupted run was when it saved the checkpoint.
        if self._pending_rng is not None:
            set_rng_states(self._pending_rng)
            self._pending_rng = None
