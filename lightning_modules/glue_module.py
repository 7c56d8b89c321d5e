"""The LightningModule that fine-tunes and evaluates one GLUE classifier (with optional structured
masks attached). Callbacks see it through the protocols of callbacks/protocols.py."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from lightning_modules.metrics import TaskMetrics
from lottery.errors import NonFiniteError
from lottery.masks import StructuredMasks
from lottery.models import forward_inputs
from lottery.tasks import Task, get_task


class GlueModule(pl.LightningModule):
    def __init__(self, model: nn.Module, task: str | Task, lr: float = 2e-5, adam_eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_ratio: float = 0.0, masks: StructuredMasks | None = None,
                 schedule_epochs: int | None = None, empty_layer_bias: str = "keep"):
        """`schedule_epochs`: length of one learning-rate schedule in epochs when a fit holds several
        (iterative magnitude pruning resets the schedule every round); default: the whole fit.
        `empty_layer_bias`: with `masks`, whether a layer with every head masked keeps its attention
        output bias (`lottery.masks.attach_masks`)."""
        super().__init__()
        self.save_hyperparameters(ignore=["model", "masks", "task"])
        self.model = model
        self.task = get_task(task) if isinstance(task, str) else task
        self.task_metrics = TaskMetrics(self.task)
        self.masks = masks
        self._mask_handle = masks.attach(model, empty_layer_bias) if masks is not None else None

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(**forward_inputs(self.model, batch))  # e.g. no token_type_ids for a decoder

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        loss = self(batch).loss
        if not torch.isfinite(loss.detach()):
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
            raise NonFiniteError(f"the training loss is {loss.item()} at step {self.global_step} (learning rate "
                                 f"{lr:.3g}): the fine-tune diverged; lower recipe.lr or keep recipe.grad_clip on")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def on_fit_start(self) -> None:
        # HF models load in eval mode and Lightning keeps a module's mode: set it explicitly
        # (here too, so Lightning's "modules in eval mode" check sees the real mode).
        self.model.train()

    def on_train_epoch_start(self) -> None:
        self.model.train()  # validation switched it to eval

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        output = self(batch)
        self.task_metrics.update(dataloader_idx, output.logits, batch["labels"])

    def on_validation_epoch_end(self) -> None:
        values = self.task_metrics.compute()
        self.task_metrics.reset()
        self.log_dict({f"val/{name}": value for name, value in values.items()}, prog_bar=True)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 else decay).append(parameter)  # biases and LayerNorm
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr, eps=self.hparams.adam_eps,
        )
        total = int(self.trainer.estimated_stepping_batches)
        if self.hparams.schedule_epochs:
            total = total * self.hparams.schedule_epochs // max(1, self.trainer.max_epochs)
        total = max(1, total)
        # The authors' run_glue.py schedule: linear warm-up (none in the paper), then linear decay to 0.
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.hparams.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
