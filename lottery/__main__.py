"""bert-lottery's entry point.

One machine, CPU or one GPU:
    python -m lottery task=rte model=minilm seed=1337
    python -m lottery experiment=structured task=stsb model=minilm trainer=gpu
Multi-GPU DDP on one node (all GPUs):
    python -m lottery experiment=structured task=mnli model=bert_base trainer=ddp
A sweep (Hydra multirun), locally or on SLURM:
    python -m lottery -m task=rte,mrpc seed=1337,42
    python -m lottery -m +sweep=paper hydra/launcher=slurm
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

import lottery.pipeline.config  # noqa: F401  (registers the resolvers conf/ uses)

log = logging.getLogger("lottery")

USER_ERRORS = ("GlueDataError", "UnknownTaskError", "ModelLayoutError", "MaskShapeError", "MissingMandatoryValue",
               "ConfigValueError", "ValueError", "FileNotFoundError", "OSError")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from lottery.pipeline import train
    from lottery.pipeline.common import finish_wandb

    try:
        train(cfg)
    except Exception as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.exception("this sweep job failed")  # into the job's own log (SLURM: its .err file)
            raise  # Hydra reports the failed job after the others finish
        if type(error).__name__ not in USER_ERRORS:
            raise  # a bug: the full traceback
        log.error("%s: %s", type(error).__name__, error)
        log.debug("traceback", exc_info=True)
        sys.exit(2)
    finally:
        finish_wandb()


if __name__ == "__main__":
    main()
