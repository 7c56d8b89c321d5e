"""The experiment pipeline (the entry point's side: Lightning, Hydra and W&B live here).

`train(cfg)` runs one (model, task, seed) through the configured experiment's stages. Everything
else in `lottery` is plain torch/numpy and never imports this package.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from lottery.pipeline.common import finetune, make_run

log = logging.getLogger("lottery")


def train(cfg: DictConfig) -> dict:
    """Run the configured experiment; returns its metrics (fine-tune) or results (experiments)."""
    run = make_run(cfg)
    metrics = finetune(run)
    if cfg.stage == "finetune":
        log.info("dev metrics of %s on %s (seed %s): %s", cfg.model.id, run.task.name, run.seed, metrics)
        return metrics
    if cfg.stage == "structured":
        from lottery.pipeline.structured import run_structured

        return run_structured(run, metrics)
    if cfg.stage == "super":
        from lottery.pipeline.structured import run_super

        return run_super(run, metrics)
    if cfg.stage == "magnitude":
        from lottery.pipeline.magnitude import run_magnitude

        return run_magnitude(run, metrics)
    raise ValueError(f"unknown stage {cfg.stage!r}: use experiment=finetune|structured|magnitude|super")
