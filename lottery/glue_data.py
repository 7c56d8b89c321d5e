"""Reading GLUE splits from the classic TSV layout or from the Hugging Face hub.

Both sources return the same `Examples`: one or two text columns and a label column (class ids
in the hub's order, or floats for STS-B). TSV files are read with quoting off, as the GLUE
processors do: some fields begin with a bare `"`, which a default CSV reader would merge with
the next rows.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lottery.errors import LotteryError
from lottery.tasks import GlueTask, Task

HUB_DATASET = "nyu-mll/glue"

csv.field_size_limit(sys.maxsize)


class GlueDataError(LotteryError, ValueError):
    """Missing or malformed GLUE data, with what to do about it."""


@dataclass
class Examples:
    texts: list[tuple[str, ...]]
    labels: list[float] | list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: list[int]) -> Examples:
        return Examples([self.texts[i] for i in indices], [self.labels[i] for i in indices])


def resolve_glue_dir(glue_dir: str | os.PathLike | None) -> Path | None:
    """The local GLUE folder: the given one, else env GLUE_DIR, else None (use the hub)."""
    chosen = glue_dir if glue_dir not in (None, "") else os.environ.get("GLUE_DIR") or None
    return Path(chosen).expanduser().resolve() if chosen else None


def split_file(task: GlueTask, glue_dir: Path, split: str) -> Path:
    name = "train.tsv" if split == "train" else task.dev_files.get(split)
    if name is None:
        raise GlueDataError(f"task {task.name} has no split {split!r}; splits: train, {', '.join(task.dev_files)}")
    return glue_dir / task.folder / name


def read_tsv_split(task: GlueTask, glue_dir: Path, split: str) -> Examples:
    path = split_file(task, glue_dir, split)
    if not path.is_file():
        raise GlueDataError(
            f"GLUE file not found: {path}\n"
            f"Provide GLUE either as a local folder in the classic layout (<dir>/{task.folder}/{path.name}) "
            f"with data.glue_dir=<dir> or env GLUE_DIR=<dir>, or from the Hugging Face hub "
            f"({HUB_DATASET}) with data.glue_dir=null and GLUE_DIR unset."
        )
    return read_tsv(path, task)


def read_tsv(path: Path, task: GlueTask) -> Examples:
    layout = task.tsv
    texts: list[tuple[str, ...]] = []
    labels: list = []
    with open(path, encoding="utf-8-sig", newline="") as handle:  # utf-8-sig drops MRPC's BOM
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns: dict[str | int, int] = {}
        for line_no, row in enumerate(rows, start=1):
            if layout.has_header and line_no == 1:
                columns = {name: i for i, name in enumerate(row)}
                missing = [c for c in (*layout.text_columns, layout.label_column) if c not in columns]
                if missing:
                    raise GlueDataError(f"{path}:1: header lacks column(s) {missing} for task {task.name}: {row}")
                if layout.num_columns is None:
                    expected = len(row)
                continue
            if not columns:
                columns = {i: i for i in range(max(c for c in (*layout.text_columns, layout.label_column)) + 1)}
            expected = layout.num_columns if layout.num_columns is not None else expected
            if len(row) != expected:
                raise GlueDataError(
                    f"{path}:{line_no}: malformed row for task {task.name}: expected {expected} tab-separated "
                    f"columns, found {len(row)}"
                )
            texts.append(tuple(row[columns[c]] for c in layout.text_columns))
            labels.append(_parse_label(row[columns[layout.label_column]], task, path, line_no))
    if not labels:
        raise GlueDataError(f"{path}: no examples found for task {task.name}")
    return Examples(texts, labels)


def _parse_label(raw: str, task: GlueTask, path: Path, line_no: int) -> float | int:
    if task.is_regression:
        try:
            value = float(raw)
        except ValueError:
            raise GlueDataError(f"{path}:{line_no}: label {raw!r} is not a number (task {task.name})") from None
        if not math.isfinite(value):
            raise GlueDataError(f"{path}:{line_no}: label {raw!r} is not a finite number (task {task.name}); "
                                "fix or remove that row")
        return value
    try:
        return task.labels.index(raw)
    except ValueError:
        raise GlueDataError(
            f"{path}:{line_no}: label {raw!r} is not one of {list(task.labels)} (task {task.name})"
        ) from None


def read_hub_split(task: GlueTask, split: str) -> Examples:
    """A split of nyu-mll/glue through `datasets` (needs the hub)."""
    import datasets  # imported here: slow, and only needed without a local folder

    hub_split = "train" if split == "train" else task.hub_dev_splits.get(split)
    if hub_split is None:
        raise GlueDataError(f"task {task.name} has no split {split!r}")
    try:
        data = datasets.load_dataset(HUB_DATASET, task.hub_config, split=hub_split)
    except Exception as error:  # offline, hub down, ...: say how to use local files instead
        raise GlueDataError(
            f"could not load {HUB_DATASET}/{task.hub_config} [{hub_split}] from the Hugging Face hub "
            f"({type(error).__name__}: {error}).\nWithout the hub, point data.glue_dir (or env GLUE_DIR) "
            f"at a folder in the classic GLUE TSV layout."
        ) from error
    texts = list(zip(*(data[field] for field in task.hub_text_fields)))
    labels = [float(x) for x in data["label"]] if task.is_regression else [int(x) for x in data["label"]]
    bad = next((i for i, label in enumerate(labels) if not math.isfinite(label)), None)
    if bad is not None:
        raise GlueDataError(f"{HUB_DATASET}/{task.hub_config} [{hub_split}] row {bad}: label {labels[bad]} is not finite")
    return Examples(texts, labels)


def read_split(task: Task, split: str, glue_dir: str | os.PathLike | None) -> Examples:
    """One split of a task: a GLUE task's from the local folder if one is configured, else from the
    hub; a custom task (`lottery.custom_tasks`) reads its own source."""
    if not isinstance(task, GlueTask):
        return task.read(split)
    folder = resolve_glue_dir(glue_dir)
    return read_tsv_split(task, folder, split) if folder else read_hub_split(task, split)


def source_fingerprint(task: Task, split: str, glue_dir: str | os.PathLike | None) -> str:
    """What identifies a split's data: the SHA-1 of its local file, or the hub dataset's name (a
    custom task's: `CustomTask.fingerprint`).

    Run folders and the tokenisation cache are keyed by it, so edited data is never mistaken for
    the data a finished result was computed on."""
    if not isinstance(task, GlueTask):
        return task.fingerprint(split)
    folder = resolve_glue_dir(glue_dir)
    if folder is None:
        return f"hub:{HUB_DATASET}/{task.hub_config}:{split}"
    path = split_file(task, folder, split)
    if not path.is_file():
        return f"missing:{path}"  # reading the split raises the helpful error
    return sha1_of_file(path)


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def sha1_of_file(path: Path) -> str:
    """The SHA-1 of a file's bytes, computed once per (path, modification time, size)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = hashlib.sha1(path.read_bytes()).hexdigest()
    return _FILE_HASHES[key]
