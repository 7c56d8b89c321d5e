"""Each task's dev metrics (torchmetrics, as the LightningModule computes them) against sklearn/scipy."""

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from lightning_modules.metrics import TaskMetrics
from lottery.baselines import majority_baseline
from lottery.tasks import get_task

rng = np.random.default_rng(0)
LABELS = rng.integers(0, 2, 200)
LOGITS = rng.normal(size=(200, 2)) + np.eye(2)[LABELS] * 0.8  # better than chance, not perfect
PREDS = LOGITS.argmax(1)


def computed(task_name, batches):
    metrics = TaskMetrics(get_task(task_name))
    for split, logits, labels in batches:
        for start in range(0, len(labels), 64):  # in batches, as over a dev set
            metrics.update(split, torch.tensor(logits[start:start + 64]), torch.tensor(labels[start:start + 64]))
    return metrics.compute()


def test_accuracy_and_f1_match_sklearn():
    values = computed("mrpc", [(0, LOGITS, LABELS)])
    assert values["accuracy"] == pytest.approx(accuracy_score(LABELS, PREDS))
    assert values["f1"] == pytest.approx(f1_score(LABELS, PREDS))


def test_matthews_matches_sklearn():
    assert computed("cola", [(0, LOGITS, LABELS)])["mcc"] == pytest.approx(matthews_corrcoef(LABELS, PREDS))


def test_pearson_spearman_and_their_mean_match_scipy():
    target = rng.uniform(0, 5, 300)
    prediction = target + rng.normal(0, 1.2, 300)
    values = computed("stsb", [(0, prediction[:, None].astype(np.float32), target.astype(np.float32))])
    assert values["pearson"] == pytest.approx(pearsonr(prediction, target)[0], abs=1e-5)
    assert values["spearman"] == pytest.approx(spearmanr(prediction, target)[0], abs=1e-5)
    assert values["pearson_spearman"] == pytest.approx((values["pearson"] + values["spearman"]) / 2)


def test_mnli_matched_and_mismatched_accuracy():
    labels = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3)) + np.eye(3)[labels]
    values = computed("mnli", [(0, logits[:80], labels[:80]), (1, logits[80:], labels[80:])])
    assert values["accuracy"] == pytest.approx(accuracy_score(labels[:80], logits[:80].argmax(1)))
    assert values["accuracy_mm"] == pytest.approx(accuracy_score(labels[80:], logits[80:].argmax(1)))


def test_majority_baseline_matches_sklearn_on_a_constant_prediction():
    train, dev = [1, 1, 0, 1], [0, 1, 1, 0, 1]
    values = majority_baseline(get_task("mrpc"), train, {"dev": dev})
    assert values["accuracy"] == pytest.approx(accuracy_score(dev, [1] * 5))
    assert values["f1"] == pytest.approx(f1_score(dev, [1] * 5))
    assert majority_baseline(get_task("stsb"), [1.0, 2.0], {"dev": [1.0]})["pearson_spearman"] == 0.0


def test_constant_regression_predictions_have_zero_correlation_and_nan_outputs_stay_nan():
    metrics = TaskMetrics(get_task("stsb"))
    metrics.update(0, torch.full((4, 1), 2.5), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert metrics.compute() == {"pearson": 0.0, "spearman": 0.0, "pearson_spearman": 0.0}  # as the majority baseline
    metrics.reset()
    metrics.update(0, torch.tensor([[1.0], [float("nan")], [3.0], [2.0]]), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert np.isnan(metrics.compute()["pearson"])  # a broken model is not a constant predictor
