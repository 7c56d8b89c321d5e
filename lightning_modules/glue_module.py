"""The LightningModule that fine-tunes and evaluates one GLUE classifier (with optional structured
masks attached). Callbacks see it through the protocols of callbacks/protocols.py."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from lightning_modules.metrics import TaskMetrics
from lottery.errors import ConfigError, NonFiniteError
from lottery.masks import StructuredMasks
from lottery.models import forward_inputs
from lottery.tasks import Task, get_task

ADAMW_IMPLEMENTATIONS = ("for_loop", "foreach", "fused")


class GlueModule(pl.LightningModule):
    def __init__(self, model: nn.Module, task: str | Task, lr: float = 2e-5, adam_eps: float = 1e-8,
                 weight_decay: float = 0.0, warmup_ratio: float = 0.0, masks: StructuredMasks | None = None,
                 schedule_epochs: int | None = None, adamw: str = "foreach", finite_check_every_n_steps: int = 50,
                 log_every_step: bool = False, empty_layer_bias: str = "keep"):
        """`schedule_epochs`: length of one learning-rate schedule in epochs when a fit holds several
        (iterative magnitude pruning resets the schedule every round); default: the whole fit.

        `adamw`: torch's AdamW implementation. "for_loop" updates one tensor at a time (torch's
        default on a CPU), "foreach" all of a group at once (torch's default on a GPU; on a CPU the
        same numbers as for_loop, 1.4-2.8x faster), "fused" in one kernel per group (fastest; rounds
        differently, so weights differ from the others in the last bits).

        `finite_check_every_n_steps`: the training loss is checked for NaN and infinity every N steps,
        at every checkpoint and at the end of every epoch, and the error names the first bad step.
        On a GPU each check waits for the GPU (a host synchronisation), so checking every step
        (N = 1) keeps the CPU from queueing the next step's work ahead; the numbers do not change.

        `log_every_step`: hand the training loss to Lightning's `self.log` at every step, not only
        at the steps the loggers write (every trainer.log_every_n_steps); the log files are the
        same, but each call costs Lightning a few milliseconds of CPU.

        `empty_layer_bias`: with `masks`, whether a layer with every head masked keeps its attention
        output bias (`lottery.masks.attach_masks`)."""
        super().__init__()
        if adamw not in ADAMW_IMPLEMENTATIONS:
            raise ConfigError(f"speed.adamw must be one of {ADAMW_IMPLEMENTATIONS}, got {adamw!r}")
        if isinstance(finite_check_every_n_steps, bool) or not isinstance(finite_check_every_n_steps, int) \
                or finite_check_every_n_steps < 1:
            raise ConfigError(f"speed.finite_check_every_n_steps must be a positive integer, "
                              f"got {finite_check_every_n_steps!r}")
        self.save_hyperparameters(ignore=["model", "masks", "task"])
        self.model = model
        self.task = get_task(task) if isinstance(task, str) else task
        self.task_metrics = TaskMetrics(self.task)
        self.masks = masks
        self._mask_handle = masks.attach(model, empty_layer_bias) if masks is not None else None
        self._unchecked: list[tuple[int, float, torch.Tensor]] = []  # (step, learning rate, loss) since the last check

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(**forward_inputs(self.model, batch))  # e.g. no token_type_ids for a decoder

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        loss = self(batch).loss
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
        self._unchecked.append((self.global_step, lr, loss.detach()))
        if len(self._unchecked) >= self.hparams.finite_check_every_n_steps:
            self.check_finite_losses()
        if self.hparams.log_every_step or self._loggers_write_this_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def _loggers_write_this_step(self) -> bool:
        """Whether Lightning writes this step's logged values (its rule: every log_every_n_steps
        optimizer steps, and when the fit is stopping)."""
        every = self.trainer.log_every_n_steps
        return bool(every) and ((self.global_step + 1) % every == 0 or self.trainer.should_stop)

    def check_finite_losses(self) -> None:
        """Raise NonFiniteError naming the first step since the last check whose loss was NaN or
        infinite (one host synchronisation for all of them)."""
        unchecked, self._unchecked = self._unchecked, []
        if not unchecked:
            return
        finite = torch.isfinite(torch.stack([loss for _, _, loss in unchecked])).tolist()
        if all(finite):
            return
        step, lr, loss = unchecked[finite.index(False)]
        raise NonFiniteError(f"the training loss is {loss.item()} at step {step} (learning rate {lr:.3g}): the "
                             f"fine-tune diverged; lower recipe.lr or keep recipe.grad_clip on")

    def on_train_epoch_end(self) -> None:
        self.check_finite_losses()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite_losses()  # never checkpoint a diverged model

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
            foreach=self.hparams.adamw == "foreach", fused=self.hparams.adamw == "fused",
        )
        total = int(self.trainer.estimated_stepping_batches)
        if self.hparams.schedule_epochs:
            total = total * self.hparams.schedule_epochs // max(1, self.trainer.max_epochs)
        total = max(1, total)
        # The authors' run_glue.py schedule: linear warm-up (none in the paper), then linear decay to 0.
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.hparams.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
