"""OmegaConf resolvers used by conf/ (entry-point code: the algorithms never import this)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_GLUE = PROJECT_ROOT.parent / "shared" / "data" / "glue"


def default_glue_dir() -> str | None:
    """No GLUE_DIR set: the GLUE folder beside the checkout if present, else None (the hub)."""
    return str(SHARED_GLUE) if SHARED_GLUE.is_dir() else None


def experiment_dir_name(stage: str, mode: str, split: str = "dev", schedule: str = "paper") -> str:
    """The folder of one experiment under <root>/<model>/<task>/seed<seed>/."""
    if stage == "finetune":
        return "finetune_holdout" if split == "train_holdout" else "finetune"
    name = f"{stage}_{mode}" if stage != "magnitude" else f"magnitude_{schedule}"
    return name + ("_holdout" if split == "train_holdout" else "")


def register_resolvers() -> None:
    resolvers = {
        "project_root": lambda: str(PROJECT_ROOT),
        "default_glue_dir": default_glue_dir,
        "experiment_dir": lambda stage, mode, split="dev", schedule="paper": experiment_dir_name(
            stage, mode, split, schedule),
    }
    for name, function in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


register_resolvers()
