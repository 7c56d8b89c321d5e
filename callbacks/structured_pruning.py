"""Drives the paper's iterative head/MLP mask search from inside a Lightning fit.

Each training epoch of a `GlueModule` in search mode is one search iteration: the module
accumulates nothing itself; this callback sums |dL/dgate| over the epoch's batches, reads the
epoch's score from the module's metrics, and at the end of the epoch reduces importance across
ranks, lets `StructuredSearch` decide the next mask on rank 0, broadcasts it, and writes
`<out_dir>/iter_NNN.json`. Its state (the whole search) goes into the checkpoint it writes after
every iteration (`<out_dir>/checkpoints/last.ckpt`), so a killed search resumes at the next
iteration. (ModelCheckpoint cannot do this: it saves only when the global step moved, and a
search takes no optimizer steps.)
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from lottery.importance import (
    ImportanceAccumulator,
    normalize_head_importance,
    normalize_mlp_importance,
)
from lottery.io import write_json
from lottery.masks import StructuredMasks
from lottery.search import SearchConfig, StructuredSearch


class StructuredPruning(Callback):
    def __init__(self, out_dir: str, metric: str, mode: str = "heads_mlps", threshold: float = 0.9,
                 head_fraction: float = 0.1, mlps_per_step: int = 1):
        self.out_dir = Path(out_dir)
        self.metric = metric
        self.config = SearchConfig(mode=mode, threshold=threshold, head_fraction=head_fraction,
                                   mlps_per_step=mlps_per_step)
        self.search: StructuredSearch | None = None
        self._restored: dict | None = None
        self._accumulator: ImportanceAccumulator | None = None

    # ----- set-up and checkpoint state -----
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        masks: StructuredMasks | None = getattr(pl_module, "masks", None)
        if masks is None or not getattr(pl_module, "search", False):
            raise ValueError("StructuredPruning needs a module in search mode with structured masks "
                             "(GlueModule(..., masks=StructuredMasks.for_model(model), search=True))")
        if self.search is None:
            self.search = StructuredSearch(*masks.shape, self.config)

    def state_dict(self) -> dict:
        return {"search": self.search.state_dict()} if self.search is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if "search" in state_dict:
            self.search = StructuredSearch.from_state_dict(state_dict["search"])

    # ----- one iteration per epoch -----
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        head, mlp = self.search.current_mask()
        pl_module.masks.set(head, mlp)
        self._accumulator = ImportanceAccumulator.for_masks(pl_module.masks, device=pl_module.device)
        pl_module.task_metrics.reset()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._accumulator.add(outputs["head_grad"], outputs["mlp_grad"])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = pl_module.task_metrics.compute()  # synchronised across ranks by torchmetrics
        pl_module.task_metrics.reset()
        head_raw, mlp_raw = (trainer.strategy.reduce(t.clone(), reduce_op="sum") for t in self._accumulator.raw())
        state = None
        if trainer.is_global_zero:
            self.search.report(normalize_head_importance(head_raw), normalize_mlp_importance(mlp_raw),
                               scores[self.metric])
            self._write_iteration(head_raw.cpu(), mlp_raw.cpu(), scores)
            state = self.search.state_dict()
        state = trainer.strategy.broadcast(state, src=0)
        if not trainer.is_global_zero:
            self.search.load_state_dict(state)
        record = self.search.history[-1]
        pl_module.log_dict({"search/score": float(record.score), "search/iteration": float(record.iteration),
                            "search/heads_kept": float(record.head_mask.sum()),
                            "search/mlps_kept": float(record.mlp_mask.sum())}, sync_dist=False)
        trainer.save_checkpoint(self.checkpoint_path)
        if self.search.done:
            trainer.should_stop = True

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / "last.ckpt"

    def _write_iteration(self, head_raw: torch.Tensor, mlp_raw: torch.Tensor, scores: dict) -> None:
        record = self.search.history[-1]
        write_json(self.out_dir / f"iter_{record.iteration:03d}.json", {
            "iteration": record.iteration,
            "phase": record.phase,
            "passed": record.passed,
            "score": record.score,
            "metric": self.metric,
            "metrics": scores,
            "head_mask": record.head_mask.int().tolist(),
            "mlp_mask": record.mlp_mask.int().tolist(),
            "head_importance_raw": head_raw.tolist(),
            "head_importance": record.head_importance.tolist(),
            "mlp_importance_raw": mlp_raw.tolist(),
            "mlp_importance": record.mlp_importance.tolist(),
        })
        if self.search.done:
            head, mlp = self.search.good_mask()
            good = StructuredMasks(head, mlp)
            good.save_json(self.out_dir / "good.json")
            write_json(self.out_dir / "summary.json", {
                "full_score": self.search.full_score,
                "threshold_score": self.search.threshold_score,
                "good_iteration": self.search.last_passing_iteration,
                "iterations": self.search.iteration,
                "config": self.config.to_dict(),
            })
