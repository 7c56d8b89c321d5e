"""The dev metrics of each GLUE task as torchmetrics, so they are exact over the whole dev set and
synchronised across DDP ranks."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics import MaxMetric, MetricCollection, MinMetric
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from lottery.tasks import Task, split_suffix


def metric_collection(task: Task, split: str) -> MetricCollection:
    suffix = split_suffix(split)
    others = {split_suffix(name) for name in task.eval_splits} - {"", suffix}
    if suffix:
        wanted = {name.removesuffix(suffix) for name in task.metrics if name.endswith(suffix)}
    else:
        wanted = {name for name in task.metrics if not any(name.endswith(other) for other in others)}
    def spearman() -> SpearmanCorrCoef:
        # It keeps every prediction to rank them, as an exact Spearman over dev must: its warning
        # about that memory is by design here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Metric `SpearmanCorrcoef` will save all targets")
            return SpearmanCorrCoef()

    factories = {
        "accuracy": lambda: MulticlassAccuracy(num_classes=max(task.num_labels, 2), average="micro"),
        "f1": BinaryF1Score,  # of label 1, as GLUE's
        "f1_macro": lambda: MulticlassF1Score(num_classes=task.num_labels, average="macro"),
        "mcc": lambda: MulticlassMatthewsCorrCoef(num_classes=task.num_labels),
        "pearson": PearsonCorrCoef,
        "spearman": spearman,
    }
    return MetricCollection({name + suffix: factories[name]() for name in sorted(wanted)})


class TaskMetrics(nn.Module):
    """One MetricCollection per dev split; `compute()` adds the derived pruning metric."""

    def __init__(self, task: Task):
        super().__init__()
        self.task = task
        self.splits = list(task.eval_splits)
        self.collections = nn.ModuleList(metric_collection(task, split) for split in self.splits)
        # Regression: the range of the predictions, to tell a constant predictor (correlation
        # undefined: reported as 0, as for the majority baseline) from NaN outputs (left NaN).
        self.ranges = nn.ModuleList(
            MetricCollection({"low": MinMetric(nan_strategy="disable"), "high": MaxMetric(nan_strategy="disable")})
            for _ in (self.splits if task.is_regression else ())
        )

    def update(self, split_index: int, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if self.task.is_regression:
            preds = logits.squeeze(-1).float()
            self.ranges[split_index].update(preds)
        else:
            preds = logits.argmax(dim=-1)
        self.collections[split_index].update(preds, labels)

    def compute(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for index, collection in enumerate(self.collections):
            computed = {k: float(v) for k, v in collection.compute().items()}
            if self.task.is_regression:
                span = self.ranges[index].compute()
                if bool(torch.isfinite(span["low"])) and bool(span["low"] == span["high"]):
                    computed = {k: 0.0 for k in computed}  # constant predictions: no correlation
            values.update(computed)
        if self.task.pruning_metric == "pearson_spearman":
            values["pearson_spearman"] = (values["pearson"] + values["spearman"]) / 2
        return values

    def reset(self) -> None:
        for collection in (*self.collections, *self.ranges):
            collection.reset()
