"""Which settings determine a stage's result, and the folder that result lives in.

Every experiment folder is named by its mode, a few readable tags and a hash of the settings that
determine its results, and records those settings in `settings.json` (as open_lth does):

    <paths.root>/<model.id>/<task>/seed<seed>/finetune-<hash>/
    <paths.root>/<model.id>/<task>/seed<seed>/structured-paper-<hash>/

Two runs whose settings differ never share a folder; two that agree always do (the fine-tune is
shared by every experiment of the same model, task, seed, recipe and data). Settings that do not
change any result (how often to checkpoint, logging, where the data folder is mounted) stay out
of the hash; the data's content is in it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lottery.glue_data import source_fingerprint
from lottery.io import read_json_or_none, write_json
from lottery.tasks import GlueTask
from pipeline.stages import check_writable

HASH_LENGTH = 8
SETTINGS_FILE = "settings.json"
# Recipe keys that change no result: a resumed run is exact, however often it checkpoints.
RECIPE_IGNORED = ("checkpoint_every_n_steps",)
DATA_KEYS = ("train_limit", "eval_limit", "group_by_length", "pad_to", "max_length", "batch_size", "eval_batch_size")


def digest(settings: dict[str, Any]) -> str:
    """A short, stable hash of JSON-able settings (key order does not matter)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def data_fingerprint(cfg: DictConfig, task: GlueTask) -> dict[str, str]:
    """The content hash of every split a run reads (train and the dev splits)."""
    return {split: source_fingerprint(task, split, cfg.data.glue_dir) for split in ("train", *task.eval_splits)}


def model_family_name(cfg: DictConfig) -> str:
    """The family of a random-init model (`model.family`, conf/model/tiny.yaml; default bert)."""
    return str(cfg.model.get("family", None) or "bert")


def model_settings(cfg: DictConfig) -> dict[str, Any]:
    """What identifies the model. A random-init model's family is part of it, except for BERT, so
    that the tiny BERT's folders keep the hashes they had before other families existed."""
    model = {"name_or_path": cfg.model.name_or_path, "random_init": bool(cfg.model.random_init)}
    if model["random_init"] and model_family_name(cfg) != "bert":
        model["family"] = model_family_name(cfg)
    return model


def finetune_settings(cfg: DictConfig, task: GlueTask) -> dict[str, Any]:
    """What determines a fine-tuned model and its dev metrics."""
    recipe = {key: value for key, value in plain(cfg.recipe).items() if key not in RECIPE_IGNORED}
    return {
        "model": model_settings(cfg),
        "task": task.name,
        "seed": int(cfg.seed),
        "recipe": recipe,
        "data": {**{key: plain(cfg.data[key]) for key in DATA_KEYS}, "files": data_fingerprint(cfg, task)},
        "holdout_excluded": cfg.search.split == "train_holdout",
        "precision": str(cfg.trainer.precision),
    }


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
