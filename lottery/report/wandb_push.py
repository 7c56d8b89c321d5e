"""`python -m lottery.report DIR --wandb`: the report's tables and figures as a W&B "report" run.

The only place the report touches W&B, imported only on that path: the report itself needs none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def push_to_wandb(report_dir: Path, written: Sequence[Path]) -> None:
    """Log the tables (wandb.Table) and PNG figures (wandb.Image) to a W&B run with job_type "report".

    Offline unless WANDB_MODE says otherwise; the project is WANDB_PROJECT or "bert-lottery".
    """
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "bert-lottery"), job_type="report",
                     mode=os.environ.get("WANDB_MODE", "offline"))

    def key(path: Path) -> str:
        return path.relative_to(report_dir).with_suffix("").as_posix()

    try:
        tables = {key(p): wandb.Table(dataframe=pd.read_csv(p)) for p in written if p.suffix == ".csv"}
        images = {key(p): wandb.Image(str(p)) for p in written if p.suffix == ".png"}
        run.log({**tables, **images})
    finally:
        wandb.finish()
