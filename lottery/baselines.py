"""The majority (constant-predictor) baseline of a task, in the task's own metrics.

It is the floor a pruned model must clear to mean anything: when 0.9 x the full model's score is
at or below it, the mask search accepts masks that predict a constant (RTE, MRPC, WNLI with a
weak model).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from lottery.tasks import Task, split_suffix


def _binary_f1(prediction: int, labels: Sequence[int]) -> float:
    positives = sum(1 for y in labels if y == 1)
    if prediction != 1 or positives == 0:
        return 0.0
    precision = positives / len(labels)
    return 2 * precision / (precision + 1.0)


def _macro_f1(prediction: int, labels: Sequence[int]) -> float:
    """Macro F1 of always predicting `prediction`, averaged as torchmetrics' MulticlassF1Score
    does: over the classes that occur in `labels` or are predicted (the others have no score)."""
    present = set(labels) | {prediction}
    share = sum(1 for y in labels if y == prediction) / len(labels)
    predicted = 2 * share / (share + 1.0) if share else 0.0
    return predicted / len(present)


def majority_baseline(task: Task, train_labels: Sequence, dev_labels: dict[str, Sequence]) -> dict[str, float]:
    """Dev metrics of always predicting the most frequent training label (regression: any
    constant, whose correlations are undefined and reported as 0)."""
    metrics: dict[str, float] = {}
    if task.is_regression:
        metrics.update({"pearson": 0.0, "spearman": 0.0, "pearson_spearman": 0.0})
        return metrics
    majority = Counter(train_labels).most_common(1)[0][0]
    for split, labels in dev_labels.items():
        suffix = split_suffix(split)
        metrics["accuracy" + suffix] = sum(1 for y in labels if y == majority) / len(labels)
        metrics["f1" + suffix] = _binary_f1(majority, labels)
        metrics["f1_macro" + suffix] = _macro_f1(majority, labels)
        metrics["mcc" + suffix] = 0.0
    return {name: value for name, value in metrics.items() if name in task.all_metrics}
