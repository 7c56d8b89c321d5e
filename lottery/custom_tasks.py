"""Custom tasks: your own labelled text, from CSV / TSV / JSONL files or a Hugging Face dataset.

    python -m lottery task=custom task.train=data/train.csv task.dev=data/dev.csv \\
        task.text=[premise,hypothesis] task.label=label task.num_labels=3 task.metric=accuracy

One or two text columns (two are encoded as the tokenizer's sentence pair, like GLUE's pairs) and
a label column. `num_labels=1` is a regression on float labels; otherwise labels are class ids
0..N-1 when every label is an integer, else strings numbered in sorted order over train and dev
together (`CustomTask.labels` holds the names in id order; results.json and each saved model's
config record them). Files are read by extension: `.csv` (a header row, standard CSV quoting),
`.tsv` (a header row, tab-separated, quoting off as in GLUE's files), `.jsonl` (one JSON object
per line). `hf_dataset` names a dataset on the Hugging Face hub (with `hf_config`) or a folder
that `datasets.DatasetDict.save_to_disk` wrote; `train_split` and `dev_split` name its splits.

The task is built once per run (`custom_task`, which reads the label columns to fix the label
names), and its data content is fingerprinted like GLUE's files, so an edited file gets new run
folders.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lottery.errors import LotteryError
from lottery.glue_data import Examples, sha1_of_file
from lottery.tasks import (
    CLASSIFICATION_METRICS,
    METRIC_ALIASES,
    REGRESSION_METRICS,
    TASKS,
    Task,
    glue_key,
)

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
SPLITS = ("train", "dev")
FOLDER_SAFE = re.compile(r"[\w.-]+")
INTEGER = re.compile(r"[+-]?\d+")

csv.field_size_limit(2**31 - 1)


class CustomTaskError(LotteryError, ValueError):
    """A custom task's settings or data that cannot be used, with what to change."""


@dataclass(frozen=True)
class Source:
    """Where a custom task's examples come from and which columns hold them."""

    text_columns: tuple[str, ...]
    label_column: str
    train: str | None = None  # absolute file paths
    dev: str | None = None
    hf_dataset: str | None = None  # a hub name, or a save_to_disk folder (absolute)
    hf_config: str | None = None
    hf_splits: tuple[str, str] = ("train", "validation")  # (train, dev)

    @property
    def from_disk(self) -> bool:
        return self.hf_dataset is not None and Path(self.hf_dataset).is_dir()

    def describe(self, split: str) -> str:
        """The file or dataset split that `split` (train | dev) reads, for messages."""
        if self.hf_dataset is None:
            return str(self.train if split == "train" else self.dev)
        config = f"/{self.hf_config}" if self.hf_config else ""
        return f"{self.hf_dataset}{config} [{self.hf_splits[SPLITS.index(split)]}]"


@dataclass(frozen=True)
class CustomTask(Task):
    name: str
    source: Source
    labels: tuple[str, ...]  # names in label-id order; () = regression
    metrics: tuple[str, ...]
    pruning_metric: str
    table_metric: str = ""
    integer_labels: bool = True  # labels are class ids as given (else names numbered in sorted order)

    def read(self, split: str) -> Examples:
        """The examples of `train` or `dev`: text tuples and label ids (floats for a regression)."""
        if split not in SPLITS:
            raise CustomTaskError(f"task {self.name} has no split {split!r}; splits: {', '.join(SPLITS)}")
        table = _read_table(self.source, split)
        texts = list(zip(*(table.column(name) for name in self.source.text_columns)))
        for index, row in enumerate(texts):
            if any(not isinstance(value, str) for value in row):
                raise CustomTaskError(f"{table.where(index)}: a text column holds {row!r}, not text; fix or remove "
                                      "that row")
        raw = table.column(self.source.label_column)
        return Examples(texts, [self._label(value, table, index) for index, value in enumerate(raw)])

    def fingerprint(self, split: str) -> str:
        """What identifies `split`'s examples: its data's content (`source_fingerprint`) and how they
        are read from it (columns, label names), so that the tokenisation cache never hands one
        reading of a file to another."""
        how = hashlib.sha1(json.dumps(self.definition, sort_keys=True).encode()).hexdigest()[:12]
        return f"{source_fingerprint(self.source, split)}|{how}"

    @property
    def definition(self) -> dict[str, Any]:
        """Everything that identifies the task but its data's content (in the run's data fingerprints)
        and where the files are mounted."""
        source = self.source
        where = ("files" if source.hf_dataset is None else "disk" if source.from_disk
                 else f"hub:{source.hf_dataset}/{source.hf_config}")
        return {"source": where, "text": list(source.text_columns), "label": source.label_column,
                "labels": list(self.labels), "integer_labels": self.integer_labels,
                "metrics": list(self.metrics), "pruning_metric": self.pruning_metric,
                **({"splits": list(source.hf_splits)} if source.hf_dataset is not None else {})}

    def _label(self, value: Any, table: _Table, index: int) -> int | float:
        if self.is_regression:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise CustomTaskError(f"{table.where(index)}: label {value!r} is not a number (task.num_labels=1 "
                                      "is a regression)") from None
            if not math.isfinite(number):
                raise CustomTaskError(f"{table.where(index)}: label {value!r} is not a finite number; fix or remove "
                                      "that row")
            return number
        if table.names is not None:  # a dataset's ClassLabel: ids already
            label = int(value)
        else:
            text = _label_text(value, table, index)
            if not self.integer_labels:
                return self.labels.index(text)
            label = int(text)
        if not 0 <= label < self.num_labels:
            raise CustomTaskError(f"{table.where(index)}: label {label} is not a class id 0..{self.num_labels - 1} "
                                  f"(task.num_labels={self.num_labels}); integer labels are used as class ids")
        return label


# ----- building a task from its settings -----
def default_task_name(train: str | None, hf_dataset: str | None, hf_config: str | None = None) -> str | None:
    """A folder-safe name for a custom task: the train file's stem without a train suffix (or its
    folder's name for `train.csv`), or the dataset's name and config."""
    if train:
        path = Path(str(train))
        stem = re.sub(r"[-_.]train$", "", path.stem, flags=re.IGNORECASE)
        base = path.resolve().parent.name if stem.lower() == "train" else stem
    elif hf_dataset:
        base = Path(str(hf_dataset).rstrip("/")).name + (f"_{hf_config}" if hf_config else "")
    else:
        return None
    return re.sub(r"[^\w.-]+", "_", base).strip("._") or "custom"


def custom_task(settings: Mapping[str, Any]) -> CustomTask:
    """A custom task from conf/task/custom.yaml's settings (a plain dict); reads the label columns
    of train and dev to fix the label names. Raises CustomTaskError naming what to change."""
    source = _source(settings)
    num_labels = settings.get("num_labels")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise CustomTaskError(f"task.num_labels must be 1 (a regression) or the number of classes, got {num_labels!r}")
    metrics, pruning_metric = _metrics(settings.get("metric"), num_labels)
    name = settings.get("name") or default_task_name(source.train, source.hf_dataset, source.hf_config)
    if not isinstance(name, str) or not FOLDER_SAFE.fullmatch(name):
        raise CustomTaskError(f"task.name must be a folder-safe name (letters, digits, _ . -), got {name!r}")
    if glue_key(name) in TASKS:
        raise CustomTaskError(f"task.name={name!r} is a GLUE task's name; give the custom task another "
                              "(task.name=...) so that its runs never mix with GLUE's")
    tables = {split: _read_table(source, split) for split in SPLITS}
    for table in tables.values():
        table.check_columns((*source.text_columns, source.label_column))
    labels, integer = (), True
    if num_labels > 1:
        labels, integer = _label_names(tables, num_labels, source.label_column)
    return CustomTask(name=name, source=source, labels=labels, metrics=metrics, pruning_metric=pruning_metric,
                      integer_labels=integer)


def _source(settings: Mapping[str, Any]) -> Source:
    text = settings.get("text")
    columns = (text,) if isinstance(text, str) else tuple(text or ())
    if not 1 <= len(columns) <= 2 or not all(isinstance(c, str) and c for c in columns):
        raise CustomTaskError(f"task.text must name one or two text columns (e.g. task.text=[sentence] or "
                              f"task.text=[premise,hypothesis]), got {text!r}")
    label = settings.get("label")
    if not isinstance(label, str) or not label:
        raise CustomTaskError(f"task.label must name the label column, got {label!r}")
    dataset = settings.get("hf_dataset")
    if dataset:
        if settings.get("train") or settings.get("dev"):
            raise CustomTaskError("give either task.train and task.dev (files) or task.hf_dataset, not both")
        folder = Path(str(dataset)).expanduser()
        name = str(folder.resolve()) if folder.is_dir() else str(dataset)
        splits = (str(settings.get("train_split") or "train"), str(settings.get("dev_split") or "validation"))
        config = settings.get("hf_config")
        return Source(columns, label, hf_dataset=name, hf_config=None if config is None else str(config),
                      hf_splits=splits)
    paths = {}
    for split in SPLITS:
        value = settings.get(split)
        if not value:
            raise CustomTaskError("task=custom needs task.train and task.dev (CSV, TSV or JSONL files with a header) "
                                  f"or task.hf_dataset=NAME; task.{split} is not set")
        path = Path(str(value)).expanduser().resolve()
        if not path.is_file():
            raise CustomTaskError(f"task.{split}={value}: no such file ({path})")
        if path.suffix.lower() not in FORMATS:
            raise CustomTaskError(f"task.{split}={value}: unknown format {path.suffix!r}; use a .csv, .tsv or .jsonl "
                                  "file (or task.hf_dataset=...)")
        paths[split] = str(path)
    return Source(columns, label, train=paths["train"], dev=paths["dev"])


def _metrics(value: Any, num_labels: int) -> tuple[tuple[str, ...], str]:
    """(the metrics computed, the one that drives pruning) from task.metric: a name or a list of
    names, the first driving pruning; default accuracy, or pearson for a regression."""
    names = [value] if isinstance(value, str) else list(value or [])
    if not names:
        names = ["pearson" if num_labels == 1 else "accuracy"]
    known = REGRESSION_METRICS if num_labels == 1 else CLASSIFICATION_METRICS
    chosen: list[str] = []
    for raw in names:
        name = METRIC_ALIASES.get(str(raw).lower(), str(raw).lower())
        if name not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
            raise CustomTaskError(
                f"task.metric={raw!r} is not a known metric; known: {', '.join(CLASSIFICATION_METRICS + REGRESSION_METRICS)} "
                f"(aliases: {', '.join(f'{a}={b}' for a, b in METRIC_ALIASES.items())})")
        if name not in known:
            kind = "a regression (task.num_labels=1)" if num_labels == 1 else f"a {num_labels}-class task"
            raise CustomTaskError(f"task.metric={raw!r} does not score {kind}; use one of {', '.join(known)}")
        if name == "f1" and num_labels != 2:
            raise CustomTaskError(f"task.metric=f1 is the binary F1 of label 1; a {num_labels}-class task needs f1_macro")
        chosen.append(name)
    metrics: list[str] = []
    for name in chosen:
        for part in (("pearson", "spearman") if name == "pearson_spearman" else (name,)):
            if part not in metrics:
                metrics.append(part)
    return tuple(metrics), chosen[0]


def _label_names(tables: dict[str, _Table], num_labels: int, column: str) -> tuple[tuple[str, ...], bool]:
    """(label names in id order, whether the labels are integer ids) over train and dev."""
    names = tables["train"].names
    if names is not None:  # a ClassLabel feature: its names, in its order
        if len(names) > num_labels:
            raise CustomTaskError(f"{tables['train'].origin} has {len(names)} classes {names} but "
                                  f"task.num_labels={num_labels}: set task.num_labels={len(names)}")
        return tuple(names) + tuple(str(i) for i in range(len(names), num_labels)), True
    distinct: set[str] = set()
    for table in tables.values():
        distinct.update(_label_text(value, table, index) for index, value in enumerate(table.column(column)))
    if all(INTEGER.fullmatch(value) for value in distinct):
        return tuple(str(i) for i in range(num_labels)), True
    ordered = sorted(distinct)
    if len(ordered) != num_labels:
        shown = ordered if len(ordered) <= 20 else ordered[:20] + ["..."]
        raise CustomTaskError(
            f"the label column {column!r} of {tables['train'].origin} and {tables['dev'].origin} holds {len(ordered)} "
            f"distinct labels {shown} but task.num_labels={num_labels}; string labels are numbered in sorted order, "
            f"so set task.num_labels={len(ordered)} (or 1 for a regression on numbers)")
    return tuple(ordered), False


def _label_text(value: Any, table: _Table, index: int) -> str:
    if value is None or isinstance(value, (list, dict)):
        raise CustomTaskError(f"{table.where(index)}: label {value!r} is not a class label; fix or remove that row")
    return str(value).strip()


# ----- reading the data -----
def source_fingerprint(source: Source, split: str) -> str:
    """What identifies a split's data: the SHA-1 of its file, of a save_to_disk folder's files, or
    the hub dataset's name."""
    if source.hf_dataset is None:
        path = Path(source.train if split == "train" else source.dev)
        return sha1_of_file(path) if path.is_file() else f"missing:{path}"
    if source.from_disk:
        folder = Path(source.hf_dataset)
        digest = hashlib.sha1()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(folder)}:{sha1_of_file(path)}\n".encode())
        return f"disk:{digest.hexdigest()}:{source.hf_splits[SPLITS.index(split)]}"
    return f"hub:{source.describe(split)}"


@dataclass
class _Table:
    """One split's columns, and where each row came from (for messages)."""

    origin: str  # the file, or "dataset/config [split]"
    columns: dict[str, list]
    lines: list[int] | None = None  # each row's line in the file
    names: list[str] | None = None  # the label column's class names (a dataset's ClassLabel)

    def check_columns(self, wanted: tuple[str, ...]) -> None:
        missing = [name for name in wanted if name not in self.columns]
        if missing:
            roles = ", ".join(repr(name) for name in missing)
            raise CustomTaskError(f"{self.origin} has no column {roles} (task.text / task.label); its columns are: "
                                  f"{', '.join(self.columns) or 'none'}")

    def column(self, name: str) -> list:
        self.check_columns((name,))
        return self.columns[name]

    def where(self, index: int) -> str:
        return f"{self.origin}:{self.lines[index]}" if self.lines is not None else f"{self.origin} row {index}"


_TABLES: dict[tuple, _Table] = {}  # per process: a run reads each split several times


def _read_table(source: Source, split: str) -> _Table:
    if source.hf_dataset is None:
        path = Path(source.train if split == "train" else source.dev)
        if not path.is_file():
            raise CustomTaskError(f"task.{split}: no such file {path}")
    key = (source, split, source_fingerprint(source, split))
    if key not in _TABLES:
        table = _read_dataset(source, split) if source.hf_dataset is not None else _read_file(path)
        if not table.columns or not next(iter(table.columns.values()), []):
            raise CustomTaskError(f"{table.origin}: no examples found")
        _TABLES[key] = table
    return _TABLES[key]


def _read_file(path: Path) -> _Table:
    kind = FORMATS.get(path.suffix.lower())
    if kind == "jsonl":
        return _read_jsonl(path)
    with open(path, encoding="utf-8-sig", newline="") as handle:  # utf-8-sig drops a BOM
        if kind == "tsv":
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise CustomTaskError(f"{path}: empty file; CSV and TSV files need a header row naming the columns")
        header = [name.strip() for name in header]
        columns: dict[str, list] = {name: [] for name in header}
        lines: list[int] = []
        for row in reader:
            if not row or row == [""]:
                continue
            if len(row) != len(header):
                raise CustomTaskError(f"{path}:{reader.line_num}: {len(row)} columns where the header has "
                                      f"{len(header)}; fix that row")
            lines.append(reader.line_num)
            for name, value in zip(header, row):
                columns[name].append(value)
    return _Table(str(path), columns, lines)


def _read_jsonl(path: Path) -> _Table:
    rows, lines = [], []
    with open(path, encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise CustomTaskError(f"{path}:{line_no}: not a JSON object ({error.msg}); JSONL holds one object "
                                      "per line") from None
            if not isinstance(row, dict):
                raise CustomTaskError(f"{path}:{line_no}: not a JSON object; JSONL holds one object per line")
            rows.append(row)
            lines.append(line_no)
    names = list(dict.fromkeys(key for row in rows for key in row))
    for row, line_no in zip(rows, lines):
        missing = [name for name in names if name not in row]
        if missing:
            raise CustomTaskError(f"{path}:{line_no}: the object lacks {missing} that other lines have")
    return _Table(str(path), {name: [row[name] for row in rows] for name in names}, lines)


def _read_dataset(source: Source, split: str) -> _Table:
    """A split of a Hugging Face dataset (`datasets`): a save_to_disk folder or the hub."""
    import datasets  # imported here: slow, and only needed for datasets

    split_name = source.hf_splits[SPLITS.index(split)]
    where = source.describe(split)
    if source.from_disk:
        data = datasets.load_from_disk(source.hf_dataset)
        if not isinstance(data, datasets.DatasetDict):
            raise CustomTaskError(f"{source.hf_dataset} holds one split, not a DatasetDict; save a DatasetDict with "
                                  "train and dev splits (DatasetDict({...}).save_to_disk)")
        if split_name not in data:
            raise CustomTaskError(f"{source.hf_dataset} has no split {split_name!r} (task.{split}_split); its splits: "
                                  f"{', '.join(data)}")
        data = data[split_name]
    else:
        try:
            data = datasets.load_dataset(source.hf_dataset, source.hf_config, split=split_name)
        except Exception as error:  # offline, no such dataset or split: one line, and what to do instead
            raise CustomTaskError(
                f"could not load {where} from the Hugging Face hub ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); without the hub, point task.hf_dataset at a "
                "folder written by DatasetDict.save_to_disk, or use task.train / task.dev files") from error
    feature = data.features.get(source.label_column)
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return _Table(where, data.to_dict(), names=names)
