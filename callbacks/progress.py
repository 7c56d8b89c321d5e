"""The progress bar a fit shows: Rich in a terminal, Lightning's plain bar when output goes to a
log file (a Rich live display would fill SLURM logs with redraws)."""

from __future__ import annotations

import sys

from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    if sys.stdout.isatty():
        return RichProgressBar(refresh_rate=refresh_rate)
    return TQDMProgressBar(refresh_rate=max(refresh_rate, 50))
