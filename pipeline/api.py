"""`lottery.retrain`: re-fine-tune a ticket from the pre-trained weights with the command line's own
Lightning module (`lightning_modules.glue_module.GlueModule`: AdamW, linear schedule, the model's
loss), on any iterable of training batches. It lives here, not in `lottery/` (which never imports
Lightning), and `lottery` re-exports it lazily."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from lottery.api import Ticket
from lottery.models import load_classifier


def retrain(ticket: Ticket, model_or_name: nn.Module | str | Path, train_data: Iterable[Mapping[str, torch.Tensor]],
            *, num_labels: int | None = None, lr: float = 2e-5, epochs: int = 3, weight_decay: float = 0.0,
            warmup_ratio: float = 0.0, adam_eps: float = 1e-8, grad_clip: float | None = 1.0, seed: int = 0,
            accelerator: str = "auto") -> nn.Module:
    """The ticket trained again: `model_or_name` (the pre-trained model, or its hub id / folder with
    `num_labels`) pruned to the ticket (structured: physically; weights: zeroed and kept at zero),
    then fine-tuned on `train_data` with the paper's recipe by default. Returns the trained model."""
    from callbacks.weight_masks import WeightMaskEnforcer
    from lightning_modules.glue_module import GlueModule

    if isinstance(model_or_name, nn.Module):
        model = model_or_name
    else:
        if num_labels is None:
            raise ValueError("retrain from a name needs num_labels (1 = regression)")
        model = load_classifier(model_or_name, num_labels)
    callbacks = []
    ticket.prune(model)
    if not ticket.structured:
        callbacks.append(WeightMaskEnforcer(ticket.masks))
    # The task only names the validation metrics, and retrain validates nothing.
    task = "stsb" if model.config.num_labels == 1 else "sst2"
    module = GlueModule(model, task, lr=lr, adam_eps=adam_eps, weight_decay=weight_decay, warmup_ratio=warmup_ratio)
    pl.seed_everything(seed, workers=True, verbose=False)
    trainer = pl.Trainer(max_epochs=epochs, accelerator=accelerator, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=grad_clip, deterministic=True, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=callbacks)
    if not isinstance(train_data, DataLoader):  # Lightning would take a list for several loaders
        train_data = DataLoader(list(train_data), batch_size=None)  # each item is a batch already
    trainer.fit(module, train_dataloaders=train_data)
    return model.eval()
