"""Iterative magnitude pruning with rewinding (Chen et al. 2020, "The Lottery Ticket Hypothesis
for Pre-trained BERT Networks"), as a callback acting between training rounds of one fit.

The fit runs `rounds x epochs_per_round` epochs with validation at the end of every round. At a
round's end the callback records the round's dev score and mask, and, while the score stays at or
above `threshold x full`, prunes a further `fraction` of the ORIGINAL eligible weights globally by
the magnitude of the trained weights, rewinds the survivors to their pre-trained values (kept on
the CPU), and resets the optimizer and learning-rate schedule. The mask is decided on rank 0 and
broadcast. Its state (round, masks, history) is in the checkpoint, so a run killed mid-round
resumes with the same mask and schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch

from callbacks.weight_masks import WeightMaskEnforcer
from lottery.io import write_json
from lottery.magnitude import (
    WeightMasks,
    eligible_parameters,
    global_magnitude_step,
    rewind_,
    sparsity_report,
)


class IterativeMagnitudePruning(WeightMaskEnforcer):
    def __init__(self, out_dir: str, metric: str, pretrained: Callable[[], Mapping[str, torch.Tensor]],
                 full_score: float, rounds: int = 10, epochs_per_round: int = 3, fraction: float = 0.1,
                 threshold: float = 0.9, include_biases: bool = True, suffixes: tuple[str, ...] | None = None):
        super().__init__(None)
        if rounds < 1 or epochs_per_round < 1 or not 0 < fraction < 1 or not 0 < threshold <= 1:
            raise ValueError("IterativeMagnitudePruning needs rounds >= 1, epochs_per_round >= 1, "
                             f"0 < fraction < 1, 0 < threshold <= 1; got {rounds}, {epochs_per_round}, "
                             f"{fraction}, {threshold}")
        self.out_dir = Path(out_dir)
        self.metric = metric
        self.pretrained = pretrained  # called in setup: the pre-trained state (every parameter), on the CPU
        self.full_score = float(full_score)
        self.rounds = rounds
        self.epochs_per_round = epochs_per_round
        self.fraction = fraction
        self.threshold = threshold
        self.parameter_options = {"include_biases": include_biases, **({"suffixes": suffixes} if suffixes else {})}
        self.history: list[dict] = []
        self.good: WeightMasks | None = None
        self._pretrained_state: Mapping[str, torch.Tensor] | None = None

    @property
    def done(self) -> bool:
        return bool(self.history) and (not self.history[-1]["passed"] or len(self.history) >= self.rounds)

    # ----- state -----
    def state_dict(self) -> dict:
        return {"history": self.history, "masks": dict(self.masks) if self.masks is not None else None,
                "good": dict(self.good) if self.good is not None else None}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])
        self.masks = WeightMasks(state_dict["masks"]) if state_dict["masks"] is not None else None
        self.good = WeightMasks(state_dict["good"]) if state_dict["good"] is not None else None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._pretrained_state = self.pretrained()
        if self.masks is None:  # round 1 starts from the fine-tuned weights' first pruning step
            params = eligible_parameters(pl_module.model, **self.parameter_options)
            first = global_magnitude_step(params, WeightMasks.ones_like(params), self.fraction, of="original")
            self.masks = trainer.strategy.broadcast(first, src=0)
            self._rewind(pl_module)

    def _rewind(self, pl_module: pl.LightningModule) -> None:
        """Survivors and every unpruned parameter (embeddings, LayerNorm, head) back to their start."""
        rewind_(pl_module.model, self.masks, self._pretrained_state)
        with torch.no_grad():
            for name, parameter in pl_module.model.named_parameters():
                if name not in self.masks:
                    parameter.copy_(self._pretrained_state[name].to(parameter.device))

    # ----- between rounds -----
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.epochs_per_round:
            return
        score = float(trainer.callback_metrics[f"val/{self.metric}"])
        passed = score >= self.threshold * self.full_score
        round_index = len(self.history) + 1
        self.history.append({"round": round_index, "sparsity": self.masks.sparsity(), "score": score,
                             "passed": passed})
        if trainer.is_global_zero:
            self.masks.save(self.out_dir / f"round_{round_index:02d}.npz")
            write_json(self.out_dir / f"round_{round_index:02d}.json",
                       {**self.history[-1], **sparsity_report(self.masks, pl_module.model)})
        if passed:
            self.good = self.masks
        if self.done:
            trainer.should_stop = True
            return
        params = eligible_parameters(pl_module.model, **self.parameter_options)
        chosen = global_magnitude_step(params, self.masks, self.fraction, of="original")
        self.masks = trainer.strategy.broadcast(chosen, src=0)
        self._rewind(pl_module)
        trainer.strategy.setup_optimizers(trainer)  # fresh AdamW and a fresh linear schedule
