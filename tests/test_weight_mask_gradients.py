"""Magnitude retraining clips the gradient of the surviving weights only, as the authors' pruning
re-parametrisation does (pruned weights get zero gradient before `clip_grad_norm_`)."""

import copy

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from callbacks.weight_masks import WeightMaskEnforcer
from lightning_modules.glue_module import GlueModule
from lottery.magnitude import WeightMasks, eligible_parameters
from lottery.models import tiny_bert

CLIP = 1e-3  # far below the gradient's norm: clipping is active


class _OneBatch(pl.LightningDataModule):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def train_dataloader(self):
        return DataLoader([self.batch], batch_size=None)


class _RecordsClippedGradients(GlueModule):
    """Keeps the gradients the optimizer steps with (Lightning clips in this hook)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.grads: dict = {}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.grads = {name: p.grad.clone() for name, p in self.model.named_parameters() if p.grad is not None}


def _without_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def test_the_clipped_gradient_leaves_the_pruned_weights_out_of_the_norm(tiny_batch):
    model = _without_dropout(tiny_bert(num_labels=2, seed=0))
    generator = torch.Generator().manual_seed(0)
    masks = WeightMasks({name: torch.rand(p.shape, generator=generator) > 0.5
                         for name, p in eligible_parameters(model).items()})
    masks.apply_(model)
    reference = copy.deepcopy(model)

    module = _RecordsClippedGradients(model, "rte", lr=1e-3)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=CLIP,
                         callbacks=[WeightMaskEnforcer(masks)])
    trainer.fit(module, datamodule=_OneBatch(tiny_batch))

    reference.train()
    reference(**tiny_batch).loss.backward()
    params = dict(reference.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].grad.mul_(mask)
    norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), CLIP)
    assert norm > 10 * CLIP
    for name, parameter in params.items():
        torch.testing.assert_close(module.grads[name], parameter.grad, rtol=1e-5, atol=1e-9, msg=name)
    assert all(not module.grads[name][~mask].any() for name, mask in masks.items())
