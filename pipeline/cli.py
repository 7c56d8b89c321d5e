"""The command line: `python -m lottery [overrides]`, or `bert-lottery [overrides]` where the package
is installed (see lottery/__main__.py for examples).

A user's mistake (`lottery.errors.LotteryError`: an unknown task, a missing file, a bad value)
ends the run with one line naming what is wrong and exit code 2; anything else is a bug and
keeps its traceback. In a multirun a failing job is logged in its own log and reported by Hydra
after the other jobs finish.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

import pipeline.config
from lottery.errors import LotteryError
from lottery.io import write_error

log = logging.getLogger("lottery")


def main() -> None:
    """The command: with no arguments, the help and the two commands to start with (not a fine-tune
    with every default); otherwise the run Hydra composes."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    from pipeline.plan import SWEEP, sweep_total_line

    SWEEP.reset()
    run_from_config()
    total = sweep_total_line()  # a sweep's plans (plan=true -m), added up
    if total:
        print(total, flush=True)


@hydra.main(version_base="1.3", config_path=pipeline.config.CONFIG_PATH, config_name="config")
def run_from_config(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from pipeline import train
    from pipeline.training import finish_wandb

    try:
        train(cfg)
    except Exception as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.exception("this sweep job failed")  # into the job's own log (SLURM: its .err file)
            raise  # Hydra reports the failed job after the others finish
        error = write_error(error, getattr(error, "filename", None) or cfg.paths.root) or error  # a full disk
        if not isinstance(error, LotteryError):
            raise  # a bug: the full traceback
        log.error("%s: %s", type(error).__name__, error)
        log.debug("traceback", exc_info=True)
        sys.exit(2)
    finally:
        finish_wandb()
