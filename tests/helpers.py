"""Composing the real Hydra config in tests, and running the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

import lottery.pipeline.config  # noqa: F401  (resolvers)

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
