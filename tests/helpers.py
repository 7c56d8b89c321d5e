"""Composing the real Hydra config in tests, and running the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

import pipeline.config  # noqa: F401  (resolvers)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def tiny_overrides(root, glue, *extra: str) -> list[str]:
    """A run on the tiny BERT and the tiny GLUE files, one short epoch, outputs under `root`."""
    return ["model=tiny", f"paths.root={root}", f"data.glue_dir={glue}", "recipe.max_epochs=1",
            "recipe.batch_size=8", "recipe.eval_batch_size=8", "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1", *extra]


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_cli(args: list[str], cwd, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lottery", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environment, check=False)


def only(paths, what: str = "folder") -> Path:
    """The one path of `paths` (a glob), or a failed assertion naming what was found."""
    found = sorted(paths)
    assert len(found) == 1, f"expected one {what}, found {found}"
    return found[0]


def finetune_dir(root, task: str, seed: int = 1337, model: str = "tiny") -> Path:
    return only(Path(root, model, task, f"seed{seed}").glob("finetune-*"), "fine-tune folder")


def experiment_dir(root, task: str, variant: str, seed: int = 1337, model: str = "tiny") -> Path:
    """The experiment folder `<variant>-<hash>` (e.g. variant "structured-paper")."""
    return only(Path(root, model, task, f"seed{seed}").glob(f"{variant}-????????"), f"{variant} folder")


def stage_metrics(folder) -> dict:
    """The metrics a finished stage recorded in its metrics.json."""
    import json

    return json.loads((Path(folder) / "metrics.json").read_text())["metrics"]
