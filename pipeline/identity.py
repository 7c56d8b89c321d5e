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
from lottery.tasks import Task
from pipeline.stages import check_writable

HASH_LENGTH = 8
SETTINGS_FILE = "settings.json"
# Recipe keys that change no result: a resumed run is exact, however often it checkpoints.
RECIPE_IGNORED = ("checkpoint_every_n_steps",)
DATA_KEYS = ("train_limit", "eval_limit", "batching", "pad_to", "max_length", "batch_size", "eval_batch_size")
# 2: every epoch draws its own seeded order (1, before: every epoch repeated epoch 1's order), so
# no result trained under version 1 is ever reused.
EPOCH_ORDER_VERSION = 2


def digest(settings: dict[str, Any]) -> str:
    """A short, stable hash of JSON-able settings (key order does not matter)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def data_fingerprint(cfg: DictConfig, task: Task) -> dict[str, str]:
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


def world_size(cfg: DictConfig) -> int:
    """How many processes train together: nodes x devices (`devices: auto` counts the GPUs here)."""
    devices = cfg.trainer.get("devices", 1)
    if devices in ("auto", -1, "-1"):
        import torch

        devices = torch.cuda.device_count() if str(cfg.trainer.accelerator) in ("gpu", "cuda", "auto") else 1
    count = len(devices) if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices) else int(devices)
    return max(1, count) * int(cfg.trainer.get("num_nodes", 1) or 1)


def execution_settings(cfg: DictConfig) -> dict[str, Any]:
    """How the training runs, where that changes its result: a 2-process DDP fine-tune takes half
    the steps of twice the batch (each rank its own batches), so it is not the one-process model,
    and a GPU's kernels do not round as the CPU's do."""
    strategy = cfg.trainer.get("strategy", None)
    target = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy or "")
    size = world_size(cfg)
    return {"accelerator": str(cfg.trainer.accelerator), "world_size": size,
            "strategy": target.rsplit(".", 1)[-1] if size > 1 else "single"}


def finetune_settings(cfg: DictConfig, task: Task) -> dict[str, Any]:
    """What determines a fine-tuned model and its dev metrics (a custom task's definition too:
    its columns, labels and metrics; GLUE tasks are named by their name alone)."""
    recipe = {key: value for key, value in plain(cfg.recipe).items() if key not in RECIPE_IGNORED}
    definition = {} if task.definition is None else {"task_definition": task.definition}
    return {
        "model": model_settings(cfg),
        "task": task.name,
        **definition,
        "seed": int(cfg.seed),
        "recipe": recipe,
        "data": {**{key: plain(cfg.data[key]) for key in DATA_KEYS}, "files": data_fingerprint(cfg, task),
                 "epoch_order": EPOCH_ORDER_VERSION},
        "holdout_excluded": cfg.search.split == "train_holdout",
        "precision": str(cfg.trainer.precision),
        "execution": execution_settings(cfg),
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
