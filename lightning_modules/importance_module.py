"""The LightningModule of a structured mask search: one training epoch is one importance pass.

Each batch of the selection split runs through the model with the current masks, in eval mode,
and returns the importance criterion's per-batch scores (for Michel et al. the gradient of the
loss with respect to the gates only: no weight gradients, no optimizer), while the task metrics
collect the predictions for the pass's score. Driving the pass as a Lightning fit gives the
search its progress bar, logging, DDP and checkpoint/resume.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from torch import nn

from lightning_modules.metrics import TaskMetrics
from lottery.importance import Criterion
from lottery.masks import StructuredMasks
from lottery.tasks import Task, get_task

# What Lightning warns about in a search, where each is by design: no optimizer (only the gates'
# gradients are read), no validation step (the pass scores itself), the model in eval mode.
SEARCH_BY_DESIGN = (
    r"`LightningModule.configure_optimizers` returned `None`",
    r"You passed in a `val_dataloader` but have no `validation_step`",
    r"Found \d+ module\(s\) in eval mode at the start of training",
)


@contextlib.contextmanager
def search_warnings_expected() -> Iterator[None]:
    """Around a search's `trainer.fit`: silences Lightning's warnings about what a search does on
    purpose (`SEARCH_BY_DESIGN`), and only those."""
    with warnings.catch_warnings():
        for message in SEARCH_BY_DESIGN:
            warnings.filterwarnings("ignore", message=message)
        yield


class ImportanceModule(pl.LightningModule):
    def __init__(self, model: nn.Module, task: str | Task, masks: StructuredMasks, criterion: Criterion):
        super().__init__()
        self.model = model
        self.task = get_task(task) if isinstance(task, str) else task
        self.task_metrics = TaskMetrics(self.task)
        self.masks = masks
        self.criterion = criterion
        self._mask_handle = masks.attach(model)
        self.automatic_optimization = False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict | None:
        if len(batch["labels"]) == 0:  # a placeholder step that keeps DDP ranks in lockstep
            return None
        scores = self.criterion.batch(self.model, self.masks, batch)
        self.task_metrics.update(0, scores.logits, batch["labels"])
        self.log("search/loss", scores.loss, prog_bar=True, batch_size=len(batch["labels"]))
        return {"head": scores.head, "mlp": scores.mlp, "tokens": scores.tokens}

    def on_fit_start(self) -> None:
        self.model.eval()  # importance is measured without dropout, as in the paper

    def on_train_epoch_start(self) -> None:
        self.model.eval()

    def configure_optimizers(self):
        return None
