"""Tasks: what a run trains and scores on. The GLUE registry, and the shared `Task` interface that
custom tasks (`lottery.custom_tasks`: your own CSV / TSV / JSONL files or a Hugging Face dataset)
implement too; `task_from_settings` builds the run's task from its `task` settings.

Metric keys follow docs/METHOD.md ("Setup of the paper"): `accuracy`, `f1`, `mcc`, `pearson`, `spearman`,
`accuracy_mm`.
Two derived keys drive pruning where the paper combines or picks: STS-B prunes on the mean of
Pearson and Spearman (`pearson_spearman`), MNLI on matched accuracy (`accuracy`). The paper's
tables report one metric per task (`table_metric`, from the authors'
eval_performance_analysis.ipynb): the pruning metric, except STS-B, which is reported as Pearson.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lottery.errors import LotteryError

# The metrics a task can be scored with (torchmetrics behind them: lightning_modules/metrics.py).
# f1 is the binary F1 of label 1 (GLUE's); f1_macro averages the classes' F1; pearson_spearman is
# the mean of the two correlations (how STS-B drives pruning).
CLASSIFICATION_METRICS = ("accuracy", "f1", "f1_macro", "mcc")
REGRESSION_METRICS = ("pearson", "spearman", "pearson_spearman")
METRIC_ALIASES = {"acc": "accuracy", "matthews_corrcoef": "mcc", "f1_score": "f1", "macro_f1": "f1_macro",
                  "pearson_corrcoef": "pearson", "pearsonr": "pearson", "spearman_corrcoef": "spearman",
                  "spearmanr": "spearman"}


class Task:
    """What every part of the pipeline needs to know about a task, GLUE or custom.

    A subclass has `name` (its folder name), `labels` (class names in label-id order; () for a
    regression), `metrics`, `pruning_metric`, `table_metric` and `eval_splits`; custom tasks also
    read their own data (`read(split)`, `fingerprint(split)`, see `lottery.glue_data.read_split`).
    """

    name: str
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    pruning_metric: str
    table_metric: str

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Dev splits, the first being the one that drives pruning (MNLI: matched)."""
        return ("dev",)

    @property
    def headline_metric(self) -> str:
        """The metric the paper's tables and figures show for this task."""
        return self.table_metric or self.pruning_metric

    @property
    def all_metrics(self) -> tuple[str, ...]:
        extra = () if self.pruning_metric in self.metrics else (self.pruning_metric,)
        return self.metrics + extra

    @property
    def id2label(self) -> dict[int, str]:
        """Label id -> name, as a model's config records it ({} for a regression)."""
        return dict(enumerate(self.labels))

    @property
    def definition(self) -> dict[str, Any] | None:
        """What identifies the task beyond its name (hashed into the run's folders); None for GLUE,
        whose name says it all."""
        return None


@dataclass(frozen=True)
class TsvLayout:
    """Where a task's fields sit in the classic GLUE TSV files.

    Columns are named by header where the file has one, or by 0-based index where it has none
    (CoLA). `num_columns` is the exact column count of a well-formed row; None accepts rows with
    at least as many columns as the largest index used (MNLI's rows carry parse trees).
    """

    text_columns: tuple[str | int, ...]
    label_column: str | int
    has_header: bool = True
    num_columns: int | None = None


@dataclass(frozen=True)
class GlueTask(Task):
    name: str
    folder: str  # folder in the classic GLUE layout
    hub_config: str  # config name of nyu-mll/glue
    hub_text_fields: tuple[str, ...]
    tsv: TsvLayout
    labels: tuple[str, ...]  # TSV label strings in the hub's label-id order; () = regression
    metrics: tuple[str, ...]
    pruning_metric: str
    table_metric: str = ""  # the paper's table column; "" = the pruning metric
    dev_files: dict[str, str] = field(default_factory=lambda: {"dev": "dev.tsv"})
    hub_dev_splits: dict[str, str] = field(default_factory=lambda: {"dev": "validation"})

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Dev splits, the first being the one that drives pruning (MNLI: matched)."""
        return tuple(self.dev_files)


def _pair(a: str, b: str, label: str, n: int | None = None) -> TsvLayout:
    return TsvLayout(text_columns=(a, b), label_column=label, num_columns=n)


TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            name="cola", folder="CoLA", hub_config="cola", hub_text_fields=("sentence",),
            tsv=TsvLayout(text_columns=(3,), label_column=1, has_header=False, num_columns=4),
            labels=("0", "1"), metrics=("mcc",), pruning_metric="mcc",
        ),
        GlueTask(
            name="sst2", folder="SST-2", hub_config="sst2", hub_text_fields=("sentence",),
            tsv=TsvLayout(text_columns=("sentence",), label_column="label", num_columns=2),
            labels=("0", "1"), metrics=("accuracy",), pruning_metric="accuracy",
        ),
        GlueTask(
            name="mrpc", folder="MRPC", hub_config="mrpc", hub_text_fields=("sentence1", "sentence2"),
            tsv=_pair("#1 String", "#2 String", "Quality", 5),
            labels=("0", "1"), metrics=("accuracy", "f1"), pruning_metric="accuracy",
        ),
        GlueTask(
            name="stsb", folder="STS-B", hub_config="stsb", hub_text_fields=("sentence1", "sentence2"),
            tsv=_pair("sentence1", "sentence2", "score", 10),
            labels=(), metrics=("pearson", "spearman"), pruning_metric="pearson_spearman", table_metric="pearson",
        ),
        GlueTask(
            name="qqp", folder="QQP", hub_config="qqp", hub_text_fields=("question1", "question2"),
            tsv=_pair("question1", "question2", "is_duplicate", 6),
            labels=("0", "1"), metrics=("accuracy", "f1"), pruning_metric="accuracy",
        ),
        GlueTask(
            name="mnli", folder="MNLI", hub_config="mnli", hub_text_fields=("premise", "hypothesis"),
            tsv=_pair("sentence1", "sentence2", "gold_label"),
            labels=("entailment", "neutral", "contradiction"),
            metrics=("accuracy", "accuracy_mm"), pruning_metric="accuracy",
            dev_files={"dev": "dev_matched.tsv", "dev_mm": "dev_mismatched.tsv"},
            hub_dev_splits={"dev": "validation_matched", "dev_mm": "validation_mismatched"},
        ),
        GlueTask(
            name="qnli", folder="QNLI", hub_config="qnli", hub_text_fields=("question", "sentence"),
            tsv=_pair("question", "sentence", "label", 4),
            labels=("entailment", "not_entailment"), metrics=("accuracy",), pruning_metric="accuracy",
        ),
        GlueTask(
            name="rte", folder="RTE", hub_config="rte", hub_text_fields=("sentence1", "sentence2"),
            tsv=_pair("sentence1", "sentence2", "label", 4),
            labels=("entailment", "not_entailment"), metrics=("accuracy",), pruning_metric="accuracy",
        ),
        GlueTask(
            name="wnli", folder="WNLI", hub_config="wnli", hub_text_fields=("sentence1", "sentence2"),
            tsv=_pair("sentence1", "sentence2", "label", 4),
            labels=("0", "1"), metrics=("accuracy",), pruning_metric="accuracy",
        ),
    )
}


def split_suffix(split: str) -> str:
    """Metric-name suffix of a dev split: '' for `dev`, '_mm' for MNLI's `dev_mm`."""
    return "" if split == "dev" else "_" + split.removeprefix("dev_")


class UnknownTaskError(LotteryError, ValueError):
    pass


def glue_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get_task(name: str) -> GlueTask:
    key = glue_key(name)
    if key not in TASKS:
        raise UnknownTaskError(f"unknown GLUE task {name!r}; valid tasks: {', '.join(TASKS)} "
                               "(or task=custom for your own data)")
    return TASKS[key]


def task_from_settings(settings: Mapping[str, Any]) -> Task:
    """The run's task from its `task` settings (conf/task/*.yaml, as a plain dict): a GLUE task by
    `name`, or a custom task (conf/task/custom.yaml: files or a Hugging Face dataset) when the
    settings name a data source (they have the keys `train` or `hf_dataset`)."""
    if "train" in settings or "hf_dataset" in settings:
        from lottery.custom_tasks import custom_task  # reads the files: only for custom tasks

        return custom_task(settings)
    return get_task(str(settings.get("name")))
