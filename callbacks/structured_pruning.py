"""Drives the paper's iterative head/MLP mask search from inside a Lightning fit.

Each training epoch of an `ImportanceModule` is one search iteration: this callback keeps each
batch's importance scores at the batch's position in the selection split, reads the epoch's score
from the module's metrics, and at the end of the epoch all-reduces the scores across ranks (each
rank filled its own batches' rows, so the sum is exactly the one-process matrix), lets
`StructuredSearch` decide the next mask on rank 0, broadcasts it, and writes
`<out_dir>/iter_NNN.json`. Its state (the whole search) goes into the checkpoint it writes after
every iteration (`<out_dir>/checkpoints/last.ckpt`), so a killed search resumes at the next
iteration; a search found finished in that checkpoint stops at once. (ModelCheckpoint cannot do
this: it saves only when the global step moved, and a search takes no optimizer steps.) After the
fit, `finished()` is the search as it ended, also in the launching process of a DDP fit whose ranks
ran in spawned processes (read back from that checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from callbacks.protocols import Searchable
from lottery.importance import ImportanceAccumulator, normalize_head_importance, normalize_mlp_importance
from lottery.io import write_json
from lottery.masks import StructuredMasks
from lottery.search import SearchConfig, StructuredSearch


class StructuredPruning(Callback):
    def __init__(self, out_dir: str, metric: str, config: SearchConfig, accumulate: str,
                 num_batches: int | None = None):
        self.out_dir = Path(out_dir)
        self.metric = metric
        self.config = config
        self.accumulate = accumulate
        self.num_batches = num_batches
        self.search: StructuredSearch | None = None
        self._accumulator: ImportanceAccumulator | None = None

    # ----- set-up and checkpoint state -----
    def setup(self, trainer: pl.Trainer, pl_module: Searchable, stage: str) -> None:
        masks: StructuredMasks | None = getattr(pl_module, "masks", None)
        if masks is None or getattr(pl_module, "criterion", None) is None:
            raise ValueError("StructuredPruning needs a module with structured masks and an importance criterion "
                             "(lightning_modules.importance_module.ImportanceModule)")
        if self.search is None:
            self.search = StructuredSearch(*masks.shape, self.config)

    def state_dict(self) -> dict:
        return {"search": self.search.state_dict()} if self.search is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if "search" in state_dict:
            self.search = StructuredSearch.from_state_dict(state_dict["search"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.search.done:  # killed after its last checkpoint, before the stage was recorded
            trainer.should_stop = True

    # ----- one iteration per epoch -----
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Searchable) -> None:
        head, mlp = self.search.current_mask()
        pl_module.masks.set(head, mlp)
        batches = self.num_batches if self.num_batches is not None else trainer.num_training_batches * trainer.world_size
        self._accumulator = ImportanceAccumulator.for_masks(pl_module.masks, int(batches), self.accumulate,
                                                            device=pl_module.device)
        pl_module.task_metrics.reset()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not outputs or outputs["head"] is None:  # a DDP placeholder, or a criterion without data
            return
        index = batch_idx * trainer.world_size + trainer.global_rank  # the batch's place in the whole split
        self._accumulator.add(index, outputs["head"], outputs["mlp"], outputs["tokens"])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Searchable) -> None:
        scores = pl_module.task_metrics.compute()  # synchronised across ranks by torchmetrics
        pl_module.task_metrics.reset()
        for tensor in self._accumulator.tensors():
            tensor.copy_(trainer.strategy.reduce(tensor.clone(), reduce_op="sum"))
        if pl_module.criterion.uses_data:
            head_raw, mlp_raw = self._accumulator.raw()
        else:
            head_raw, mlp_raw = (t.detach().to("cpu", torch.float64) for t in
                                 pl_module.criterion.static(pl_module.model, pl_module.masks))
        state = None
        if trainer.is_global_zero:
            self.search.report(normalize_head_importance(head_raw), normalize_mlp_importance(mlp_raw),
                               scores[self.metric])
            self._write_iteration(head_raw, mlp_raw, scores)
            state = self.search.state_dict()
        state = trainer.strategy.broadcast(state, src=0)
        if not trainer.is_global_zero:
            self.search.load_state_dict(state)
        record = self.search.history[-1]
        pl_module.log_dict({"search/score": float(record.score), "search/iteration": float(record.iteration),
                            "search/heads_kept": float(record.head_mask.sum()),
                            "search/mlps_kept": float(record.mlp_mask.sum())}, sync_dist=False)
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # the full state: the search resumes from it
        if self.search.done:
            trainer.should_stop = True

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / "last.ckpt"

    def finished(self) -> StructuredSearch:
        """The search as it ended: this process's, or the one rank 0 checkpointed last (when the fit's
        ranks ran in spawned processes, this process's callback never saw them)."""
        if self.search is not None and self.search.done:
            return self.search
        checkpoint = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        search = StructuredSearch.from_state_dict(checkpoint["callbacks"][self.state_key]["search"])
        if not search.done:
            raise RuntimeError(f"the mask search in {self.checkpoint_path} has not finished")
        return search

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
