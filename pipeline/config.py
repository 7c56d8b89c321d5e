"""OmegaConf resolvers used by conf/, and the checks every run's settings pass before any work.

A wrong value (a fractional seed, a threshold of 2, a custom model without an id, a model folder
that does not exist) stops the run at once with one line that names the setting and how to fix
it, instead of a traceback minutes into a fine-tune.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from lottery.errors import ConfigError
from lottery.models import TINY_FAMILIES
from lottery.pass_rule import check_threshold

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_GLUE = PROJECT_ROOT.parent / "shared" / "data" / "glue"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def default_glue_dir() -> str | None:
    """No GLUE_DIR set: the GLUE folder beside the checkout if present, else None (the hub)."""
    return str(SHARED_GLUE) if SHARED_GLUE.is_dir() else None


def writable_or_temporary(path: str) -> str:
    """`path` if it can be created and written, else a folder under the system's temporary one.

    Hydra writes its bookkeeping (resolved config, log) before the run starts; on a read-only
    results root (reading finished results) that bookkeeping goes elsewhere.
    """
    target = Path(path)
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is not None and os.access(existing, os.W_OK | os.X_OK):
        return str(target)
    relative = str(target).lstrip(os.sep).replace(os.sep, "_")
    return str(Path(tempfile.gettempdir()) / "bert-lottery-hydra" / relative)


def tiny_model_id(family: str | None) -> str:
    """The output folder name of a tiny random model: `tiny` for BERT (as before other families
    existed), `tiny_<family>` for the others."""
    return "tiny" if family in (None, "bert") else f"tiny_{family}"


def register_resolvers() -> None:
    resolvers = {
        "project_root": lambda: str(PROJECT_ROOT),
        "tiny_id": tiny_model_id,
        "default_glue_dir": default_glue_dir,
        "hydra_dir": writable_or_temporary,
    }
    for name, function in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


register_resolvers()


# ----- checks -----
SEED_LIMIT = 2**32  # numpy's seeds and Lightning's seed_everything take 0 <= seed < 2**32


def check_seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"seed must be an integer (e.g. seed=1337), got {value!r}")
    if not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"seed must lie in 0 <= seed < 2**32 = {SEED_LIMIT} (what numpy and torch accept), got {value}")
    return value


def check_model(cfg: DictConfig) -> None:
    try:
        model_id = cfg.model.id
    except MissingMandatoryValue:
        raise ConfigError("model.id is missing: name the model for its output folder, e.g. "
                          "model=custom model.name_or_path=roberta-base model.id=roberta_base") from None
    if not isinstance(model_id, str) or not re.fullmatch(r"[\w.-]+", model_id):
        raise ConfigError(f"model.id must be a folder-safe name (letters, digits, _ . -), got {model_id!r}")
    try:
        name = cfg.model.name_or_path
    except MissingMandatoryValue:
        raise ConfigError("model.name_or_path is missing: give a Hugging Face hub id (e.g. roberta-base) or "
                          "a local model folder") from None
    if cfg.model.get("random_init", False):
        family = cfg.model.get("family", None) or "bert"
        if family not in TINY_FAMILIES:
            raise ConfigError(f"model.family={family!r} is not a family with a tiny random model; choose one of "
                              f"{', '.join(TINY_FAMILIES)}")
    if name is None:
        return
    name = str(name)
    if Path(name).expanduser().is_dir():
        return
    looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep + os.sep in name
    if looks_like_path or not HUB_ID.match(name):
        raise ConfigError(f"model.name_or_path={name!r} is neither an existing folder nor a hub id like "
                          "'bert-base-uncased' or 'org/name': fix the path")


def check_config(cfg: DictConfig) -> None:
    """The settings every run shares; each mode checks its own (`Mode.check`)."""
    check_seed(cfg.seed)
    check_model(cfg)
    check_threshold(cfg.search.threshold)
    if cfg.search.split not in ("dev", "train_holdout", "train_subset"):
        raise ConfigError(f"search.split must be dev, train_holdout or train_subset, got {cfg.search.split!r}")
    recipe = cfg.recipe
    for key in ("batch_size", "eval_batch_size", "max_epochs", "max_length", "checkpoint_every_n_steps"):
        value = recipe[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"recipe.{key} must be a positive integer, got {value!r}")
    if not isinstance(recipe.lr, (int, float)) or isinstance(recipe.lr, bool) or not recipe.lr > 0:
        raise ConfigError(f"recipe.lr must be a positive number, got {recipe.lr!r}")
    if not 0 <= float(recipe.warmup_ratio) < 1:
        raise ConfigError(f"recipe.warmup_ratio must lie in [0, 1), got {recipe.warmup_ratio!r}")
