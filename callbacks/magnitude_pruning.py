"""Iterative magnitude pruning with rewinding (Chen et al. 2020, "The Lottery Ticket Hypothesis
for Pre-trained BERT Networks"), as a callback acting between training rounds of one fit.

The fit runs `rounds x epochs_per_round` epochs with validation at the end of every round. At a
round's end the callback reports the round's dev score and mask to a `MagnitudeSearch` (the same
state machine, and the same pass rule, as the paper's one-shot search), and, while the rounds
pass, prunes a further `fraction` of the ORIGINAL eligible weights globally by the magnitude of
the trained weights, rewinds the survivors to their pre-trained values (kept on the CPU), and
resets the optimizer and learning-rate schedule. The mask is decided on rank 0 and broadcast.
Its state (search, current mask) is in the checkpoint, so a run killed mid-round resumes with the
same mask and schedule; when the search ends the callback checkpoints it (`<out_dir>/checkpoints/
last.ckpt`), so a run killed after that stops at once, and `finished()` is the search as it ended,
also in the launching process of a DDP fit whose ranks ran in spawned processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch

from callbacks.protocols import HasModel
from callbacks.weight_masks import WeightMaskEnforcer
from lottery.io import write_json
from lottery.magnitude import (
    MagnitudeSearch,
    WeightMasks,
    eligible_parameters,
    global_magnitude_step,
    rewind_,
    sparsity_report,
)


class IterativeMagnitudePruning(WeightMaskEnforcer):
    def __init__(self, out_dir: str, metric: str, pretrained: Callable[[], Mapping[str, torch.Tensor]],
                 full_score: float, *, rounds: int, epochs_per_round: int, fraction: float, threshold: float,
                 include_biases: bool, roles: tuple[str, ...]):
        super().__init__(None)
        if rounds < 1 or epochs_per_round < 1 or not 0 < fraction < 1:
            raise ValueError("IterativeMagnitudePruning needs rounds >= 1, epochs_per_round >= 1 and "
                             f"0 < fraction < 1; got {rounds}, {epochs_per_round}, {fraction}")
        self.out_dir = Path(out_dir)
        self.metric = metric
        self.pretrained = pretrained  # called in setup: the pre-trained state (every parameter), on the CPU
        self.full_score = float(full_score)
        self.epochs_per_round = epochs_per_round
        self.search = MagnitudeSearch(fraction=fraction, threshold=threshold, max_steps=rounds, of="original",
                                      exit_mask="last_passing")
        self.parameter_options = {"include_biases": include_biases, "roles": tuple(roles)}
        self._pretrained_state: Mapping[str, torch.Tensor] | None = None

    @property
    def history(self) -> list[dict]:
        """One record per round (round 0: the fine-tuned full model)."""
        return self.search.history

    @property
    def good(self) -> WeightMasks | None:
        return self.search.good

    # ----- state -----
    def state_dict(self) -> dict:
        return {"search": self.search.state_dict(), "masks": dict(self.masks) if self.masks is not None else None}

    def load_state_dict(self, state_dict: dict) -> None:
        self.search.load_state_dict(state_dict["search"])
        self.masks = WeightMasks(state_dict["masks"]) if state_dict["masks"] is not None else None

    def setup(self, trainer: pl.Trainer, pl_module: HasModel, stage: str) -> None:
        self._pretrained_state = self.pretrained()
        if self.masks is None:  # round 1 starts from the fine-tuned weights' first pruning step
            params = eligible_parameters(pl_module.model, **self.parameter_options)
            full = WeightMasks.ones_like(params)
            self.search.report(self.full_score, full)
            first = global_magnitude_step(params, full, self.search.fraction, of="original")
            self.masks = trainer.strategy.broadcast(first, src=0)
            self._rewind(pl_module)

    def _rewind(self, pl_module: HasModel) -> None:
        """Survivors and every unpruned parameter (embeddings, LayerNorm, head) back to their start."""
        rewind_(pl_module.model, self.masks, self._pretrained_state)
        with torch.no_grad():
            for name, parameter in pl_module.model.named_parameters():
                if name not in self.masks:
                    parameter.copy_(self._pretrained_state[name].to(parameter.device))

    def on_train_start(self, trainer: pl.Trainer, pl_module: HasModel) -> None:
        if self.search.done:  # killed after the search ended, before its stage was recorded
            trainer.should_stop = True

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / "last.ckpt"

    def finished(self) -> MagnitudeSearch:
        """The search as it ended: this process's, or the one rank 0 checkpointed when it ended (when
        the fit's ranks ran in spawned processes, this process's callback never saw them)."""
        if self.search.done:
            return self.search
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)["callbacks"][self.state_key]
        search = MagnitudeSearch(fraction=self.search.fraction, threshold=self.search.threshold,
                                 max_steps=self.search.max_steps, of=self.search.of, exit_mask=self.search.exit_mask)
        search.load_state_dict(state["search"])
        if not search.done:
            raise RuntimeError(f"the IMP search in {self.checkpoint_path} has not finished")
        return search

    # ----- between rounds -----
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: HasModel) -> None:
        if (trainer.current_epoch + 1) % self.epochs_per_round:
            return
        score = float(trainer.callback_metrics[f"val/{self.metric}"])
        self.search.report(score, self.masks)
        record = self.search.history[-1]
        if trainer.is_global_zero:
            round_index = record["step"]
            self.masks.save(self.out_dir / f"round_{round_index:02d}.npz")
            write_json(self.out_dir / f"round_{round_index:02d}.json",
                       {**record, **sparsity_report(self.masks, pl_module.model)})
        if self.search.done:
            trainer.save_checkpoint(self.checkpoint_path)
            trainer.should_stop = True
            return
        params = eligible_parameters(pl_module.model, **self.parameter_options)
        chosen = global_magnitude_step(params, self.masks, self.search.fraction, of="original")
        self.masks = trainer.strategy.broadcast(chosen, src=0)
        self._rewind(pl_module)
        trainer.strategy.setup_optimizers(trainer)  # fresh AdamW and a fresh linear schedule
