"""What the callbacks need from the LightningModule they act on, as structural types: any module
with these attributes works (lightning_modules.GlueModule and ImportanceModule have them), and
the callbacks never import a concrete module class."""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn


class HasModel(Protocol):
    """A module that trains or scores a Hugging Face model (`.model`)."""

    model: nn.Module


class Searchable(HasModel, Protocol):
    """A module a structured search runs on: its model's gates (`.masks`, lottery.masks.StructuredMasks),
    the importance criterion it scores batches with (`.criterion`), and the task metrics of the pass."""

    masks: Any
    criterion: Any
    task_metrics: Any
