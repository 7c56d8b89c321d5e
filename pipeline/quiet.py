"""Library chatter that a person reading a run's log does not need, silenced where it is said.

Only these, each by its own message: Lightning's product tips and its device and bookkeeping
lines at INFO (`LIGHTNING_CHATTER`), a deprecation inside Lightning that no user can act on and
its hint to use `srun` wherever SLURM is installed (`LIBRARY_DEPRECATIONS`), and transformers' per-call progress bars ("Loading weights", "Writing
model shards"). Warnings stay warnings: anything else Lightning, transformers or torch warns about
still shows. The rest of the noise is stopped at its own source: a search's by-design warnings
(`lightning_modules.importance_module.search_warnings_expected`), the load report of a classifier
head that is new by design (`lottery.models.load_classifier`), the search checkpoint's
`weights_only` line (`callbacks.structured_pruning`), torchmetrics' Spearman memory note
(`lightning_modules.metrics`).
"""

from __future__ import annotations

import logging
import warnings

# Lightning's INFO lines (rank_zero_info) that say nothing about this run's results.
LIGHTNING_CHATTER = (
    "💡 Tip:",  # advertisements for Lightning's cloud products
    "GPU available:", "TPU available:", "HPU available:",  # device inventory, every Trainer
    "LOCAL_RANK:",  # CUDA_VISIBLE_DEVICES of each rank, every Trainer
    "Loading `train_dataloader` to estimate number of stepping batches.",
    "`Trainer.fit` stopped: `max_epochs=",  # every fit ends so
)
LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                     "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
# (message regex, category) of deprecations inside libraries, not in anything a user calls.
LIBRARY_DEPRECATIONS = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", Warning),  # Lightning's _pytree on torch >= 2.10
    # On any machine with SLURM's tools, every Trainer suggests `srun`; the project submits to SLURM
    # through its launchers (hydra/launcher=slurm), which run each job under SLURM themselves.
    (r"The `srun` command is available on your system but is not used", Warning),
)


class LightningChatter(logging.Filter):
    """Drops the INFO records of `LIGHTNING_CHATTER`; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and record.getMessage().startswith(LIGHTNING_CHATTER))


def quiet_libraries() -> None:
    """Silence the chatter above (idempotent; the pipeline calls it before every run)."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, LightningChatter) for existing in logger.filters):
            logger.addFilter(LightningChatter())
    for message, category in LIBRARY_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=category)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
