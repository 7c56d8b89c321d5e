"""The folder a result lives in, named by the settings that determine it.

Every experiment folder is named by its mode, a few readable tags and a hash of the settings that
determine its results, and records those settings in `settings.json` (as open_lth does):

    <paths.root>/<model.id>/<task>/seed<seed>/finetune-<hash>/
    <paths.root>/<model.id>/<task>/seed<seed>/structured-paper-<hash>/

Two runs whose settings differ never share a folder; two that agree always do (the fine-tune is
shared by every experiment of the same model, task, seed, recipe and data). Which settings those
are is declared with each setting (`pipeline.settings.declare`); settings that do not change any
result (how often to checkpoint, logging, where the data folder is mounted) stay out of the hash;
the data's content is in it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lottery.glue_data import source_fingerprint
from lottery.io import read_json_or_none, write_json
from lottery.tasks import Task
from pipeline.settings import RunSettings
from pipeline.stages import check_writable

HASH_LENGTH = 8
SETTINGS_FILE = "settings.json"


def digest(settings: dict[str, Any]) -> str:
    """A short, stable hash of JSON-able settings (key order does not matter)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def data_fingerprint(settings: RunSettings, task: Task) -> dict[str, str]:
    """The content hash of every split a run reads (train and the dev splits)."""
    return {split: source_fingerprint(task, split, settings.data.glue_dir) for split in ("train", *task.eval_splits)}


def finetune_identity(settings: RunSettings, task: Task) -> dict[str, Any]:
    """What determines a fine-tuned model and its dev metrics (a custom task's definition too: its
    columns, labels and metrics; a GLUE task is named by its name alone)."""
    return settings.finetune_identity(data_fingerprint(settings, task), task.definition)


def without_seed(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings shared by all seeds of one variant: what the report groups runs by."""
    return {key: value for key, value in settings.items() if key != "seed"}


def stage_folder(parent: Path, name: str, settings: dict[str, Any]) -> Path:
    """`parent/<name>-<hash of settings>`."""
    return parent / f"{name}-{digest(settings)}"


def record_settings(folder: Path, settings: dict[str, Any]) -> None:
    """Write `settings.json` into a stage folder unless it already holds the same settings."""
    path = folder / SETTINGS_FILE
    if read_json_or_none(path) != json.loads(json.dumps(settings, default=str)):
        check_writable(folder)
        write_json(path, settings)
