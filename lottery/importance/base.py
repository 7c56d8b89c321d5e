"""What every importance criterion shares: the per-batch scores it returns, how they add up over
the batches of the selection split, and the paper's normalisation.

A criterion scores each head ([L, H]) and each MLP ([L]) of the model with its current masks.
Data-driven criteria return a signed score per batch (Michel et al.: dL/dgate); how those add
up is a protocol choice (`ACCUMULATIONS`):

- "per_batch" (Michel et al. 2019, as published): sum_t |g_t|;
- "running" (Prasanna et al.'s code, src/find_head_mlp_masks.py): the gate's `.grad` is added
  after every batch but never zeroed, so what is summed is the running gradient:
  sum_t |g_1 + ... + g_t|. Their published masks come from this.

Both need the batches' scores in the selection split's order, so the accumulator keeps one row per
batch at its global index: DDP ranks fill their own rows and one all-reduce (SUM) gives every rank
exactly the one-process matrix. MLP raw scores are divided by the number of non-pad tokens, as the
authors do (a constant factor: it does not change the ranking). Heads are normalised per layer by
their L2 norm and min-max scaled over all heads; MLPs are min-max scaled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from lottery.errors import ConfigError
from lottery.masks import StructuredMasks, attach_masks, attached_masks
from lottery.models import forward_input_names

ACCUMULATIONS = ("running", "per_batch")
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "labels")


@dataclass(frozen=True)
class BatchScores:
    """One batch's signed scores (None for criteria that need no data), its logits and loss."""

    head: Tensor | None  # [L, H]
    mlp: Tensor | None  # [L]
    logits: Tensor
    loss: Tensor
    tokens: int  # non-pad tokens of the batch


class Criterion:
    """An importance criterion: one subclass per module, registered with `@register_criterion`.

    Data-driven criteria (`uses_data = True`) implement `batch`; the others implement `static`
    (their `batch` only scores the model, for the search's dev score).
    """

    name: ClassVar[str]
    uses_data: ClassVar[bool] = True

    def batch(self, model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor]) -> BatchScores:
        raise NotImplementedError

    def static(self, model: nn.Module, masks: StructuredMasks) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(f"criterion {self.name!r} needs data: use batch()")


CRITERIA: dict[str, type[Criterion]] = {}


def register_criterion(cls: type[Criterion]) -> type[Criterion]:
    CRITERIA[cls.name] = cls
    return cls


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise ConfigError(f"unknown importance criterion {name!r}; choose one of {sorted(CRITERIA)} "
                          f"(importance=<name>)")
    return CRITERIA[name]()


def check_accumulation(accumulate: str) -> str:
    if accumulate not in ACCUMULATIONS:
        raise ConfigError(f"importance.accumulate must be one of {ACCUMULATIONS}, got {accumulate!r}")
    return accumulate


# ----- running the model -----
@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, then restore each one's previous mode."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


def model_inputs(batch: Mapping[str, Tensor], device: torch.device, model: nn.Module | None = None
                 ) -> dict[str, Tensor]:
    """The batch's model inputs (`MODEL_INPUT_KEYS`) on `device`; with `model`, only those its forward
    accepts (`lottery.models.forward_inputs`: no token_type_ids for DistilBERT, ModernBERT, decoders)."""
    if "labels" not in batch:
        raise ValueError("importance needs a batch with `labels` (the loss is differentiated)")
    accepted = forward_input_names(model) if model is not None else None
    inputs = {}
    for key in MODEL_INPUT_KEYS:
        if batch.get(key) is not None and (accepted is None or key in accepted):
            tensor = batch[key].to(device)
            # Batches made under inference_mode (e.g. in a Lightning eval loop) cannot be saved for
            # backward; cloned outside inference mode they can.
            inputs[key] = tensor.clone() if tensor.is_inference() else tensor
    return inputs


def token_count(batch: Mapping[str, Tensor]) -> int:
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


# ----- adding batches up -----
class ImportanceAccumulator:
    """Per-batch scores in the selection split's batch order; `raw()` adds them up.

    `scores` [num_batches, L*H + L] and `tokens` [num_batches] are the tensors to all-reduce
    (SUM) across ranks: each rank writes only the rows of its own batches.
    """

    def __init__(self, num_layers: int, num_heads: int, num_batches: int, accumulate: str = "running",
                 device: torch.device | str | None = None) -> None:
        self.num_layers, self.num_heads = num_layers, num_heads
        self.accumulate = check_accumulation(accumulate)
        self.scores = torch.zeros(num_batches, num_layers * num_heads + num_layers, device=device)
        self.tokens = torch.zeros(num_batches, dtype=torch.float64, device=device)

    @classmethod
    def for_masks(cls, masks: StructuredMasks, num_batches: int, accumulate: str = "running",
                  device: torch.device | str | None = None) -> ImportanceAccumulator:
        return cls(*masks.shape, num_batches, accumulate, device)

    @property
    def num_batches(self) -> int:
        return int(self.scores.shape[0])

    def add(self, index: int, head: Tensor, mlp: Tensor, tokens: int) -> None:
        """Record the scores of batch `index` (its position in the whole split's batch order)."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch index {index} outside 0..{self.num_batches - 1}")
        self.scores[index] = torch.cat([head.detach().reshape(-1), mlp.detach().reshape(-1)]).to(self.scores)
        self.tokens[index] = float(tokens)

    def tensors(self) -> list[Tensor]:
        return [self.scores, self.tokens]

    def raw(self) -> tuple[Tensor, Tensor]:
        """(head [L, H], mlp [L]) summed as `accumulate` says, in float64 on the CPU."""
        scores = self.scores.detach().to("cpu", torch.float64)
        if self.accumulate == "running":
            scores = scores.cumsum(dim=0)
        total = scores.abs().sum(dim=0)
        split = self.num_layers * self.num_heads
        head, mlp = total[:split].view(self.num_layers, self.num_heads), total[split:]
        tokens = float(self.tokens.sum())
        return head, (mlp / tokens if tokens > 0 else mlp)


# ----- normalisation -----
def _min_max(scores: Tensor) -> Tensor:
    """Scale to [0, 1]; all-equal scores (no ranking information) become all zeros."""
    low, high = scores.min(), scores.max()
    span = high - low
    return torch.where(span > 0, (scores - low) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(scores))


def normalize_head_importance(raw: Tensor) -> Tensor:
    """Divide each layer's scores by their L2 norm (a zero norm divides by 1), then min-max all."""
    raw = torch.as_tensor(raw)
    raw = raw if raw.is_floating_point() else raw.float()
    norms = raw.norm(p=2, dim=-1, keepdim=True)
    return _min_max(raw / torch.where(norms > 0, norms, torch.ones_like(norms)))


def normalize_mlp_importance(raw: Tensor) -> Tensor:
    raw = torch.as_tensor(raw)
    return _min_max(raw if raw.is_floating_point() else raw.float())


def masks_for_call(model: nn.Module, masks: StructuredMasks) -> AbstractContextManager:
    """`attach_masks(model, masks)` for one call, or nothing if these masks are already attached."""
    attached = attached_masks(model)
    if attached is not None and attached is not masks:
        raise ValueError("the model has other StructuredMasks attached; pass those or remove them first")
    return nullcontext() if attached is not None else attach_masks(model, masks)


def forward_with_loss(model: nn.Module, batch: Mapping[str, Tensor]):
    """The model's output on `batch` (its inputs moved to the model's device); it must carry a loss."""
    output = model(**model_inputs(batch, next(model.parameters()).device, model))
    if output.loss is None:
        raise ValueError("the model returned no loss; does the batch carry `labels`?")
    return output
