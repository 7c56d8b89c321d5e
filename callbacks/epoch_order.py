"""Tells the training data which epoch starts, so every epoch draws its own seeded order.

Lightning sets the epoch on a DataLoader's `sampler` (and on a batch sampler's inner `sampler`),
never on a custom batch sampler: left to Lightning, `lottery.samplers.EpochBatchSampler` would
yield epoch 1's order in every epoch. This callback calls the data module's `set_epoch` at every
epoch start. A fit resumed mid-epoch does not start that epoch again; `ExactResume` tells the data
module where it was instead.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class EpochOrder(Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        set_epoch = getattr(trainer.datamodule, "set_epoch", None)
        if set_epoch is None:
            raise TypeError(f"EpochOrder needs a data module with set_epoch(epoch); "
                            f"{type(trainer.datamodule).__name__} has none")
        set_epoch(trainer.current_epoch)
