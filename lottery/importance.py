"""Head and MLP importance of Michel et al. (2019), as used by Prasanna et al. (2020).

The importance of a gate is the sum over batches of |dL/dgate| for the batch loss L, taken with
the model in eval mode (no dropout) and the current masks applied. Heads are then normalised per
layer by the L2 norm and min-max scaled over all heads; MLPs are min-max scaled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from lottery.masks import StructuredMasks, attach_masks, attached_masks

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "labels")


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


def _model_inputs(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if "labels" not in batch:
        raise ValueError("importance needs a batch with `labels` (the loss is differentiated)")
    inputs = {}
    for key in MODEL_INPUT_KEYS:
        if batch.get(key) is not None:
            tensor = batch[key].to(device)
            # Batches made under inference_mode (e.g. in a Lightning eval loop) cannot be saved for
            # backward; cloned outside inference mode they can.
            inputs[key] = tensor.clone() if tensor.is_inference() else tensor
    return inputs


def gate_gradients(
    model: nn.Module, masks: StructuredMasks, batch: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dL/dhead [L, H], dL/dmlp [L], logits, loss) for one batch, all detached.

    Only the gates are differentiated (`torch.autograd.grad`): no weight gradient is computed or
    accumulated, so this is cheaper than a training step and fires no DDP gradient hooks. The
    model runs in eval mode; `masks` are attached for the call unless already attached to it.
    """
    attached = attached_masks(model)
    if attached is not None and attached is not masks:
        raise ValueError("the model has other StructuredMasks attached; pass those or remove them first")
    device = next(model.parameters()).device
    with (
        eval_mode(model),
        torch.inference_mode(False),
        torch.enable_grad(),
        masks.differentiable(device) as (head_gates, mlp_gates),
        nullcontext() if attached is not None else attach_masks(model, masks),
    ):
        output = model(**_model_inputs(batch, device))
        loss = output.loss
        if loss is None:
            raise ValueError("the model returned no loss; does the batch carry `labels`?")
        head_grad, mlp_grad = torch.autograd.grad(
            loss, [head_gates, mlp_gates], allow_unused=True, materialize_grads=True
        )
    return head_grad.detach(), mlp_grad.detach(), output.logits.detach(), loss.detach()


class ImportanceAccumulator:
    """Sums |batch gradient| of each gate over batches.

    `head` and `mlp` are the running sums; `tensors()` returns them for an in-place
    `all_reduce(SUM)` across ranks before normalising.
    """

    def __init__(self, num_layers: int, num_heads: int, device: torch.device | str | None = None) -> None:
        self.head = torch.zeros(num_layers, num_heads, device=device)
        self.mlp = torch.zeros(num_layers, device=device)
        self.num_batches = 0

    @classmethod
    def for_masks(cls, masks: StructuredMasks, device: torch.device | str | None = None) -> ImportanceAccumulator:
        return cls(*masks.shape, device=device)

    def add(self, head_grad: torch.Tensor, mlp_grad: torch.Tensor) -> None:
        self.head += head_grad.detach().abs().to(self.head)
        self.mlp += mlp_grad.detach().abs().to(self.mlp)
        self.num_batches += 1

    def tensors(self) -> list[torch.Tensor]:
        return [self.head, self.mlp]

    def raw(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.clone(), self.mlp.clone()

    def normalized(self) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize_head_importance(self.head), normalize_mlp_importance(self.mlp)


def _min_max(scores: torch.Tensor) -> torch.Tensor:
    """Scale to [0, 1]; all-equal scores (no ranking information) become all zeros."""
    low, high = scores.min(), scores.max()
    span = high - low
    return torch.where(span > 0, (scores - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(scores))


def normalize_head_importance(raw: torch.Tensor) -> torch.Tensor:
    """Divide each layer's scores by their L2 norm (a zero norm divides by 1), then min-max all."""
    raw = torch.as_tensor(raw, dtype=torch.float32)
    norms = raw.norm(p=2, dim=-1, keepdim=True)
    return _min_max(raw / torch.where(norms > 0, norms, torch.ones_like(norms)))


def normalize_mlp_importance(raw: torch.Tensor) -> torch.Tensor:
    return _min_max(torch.as_tensor(raw, dtype=torch.float32))


def compute_importance(
    model: nn.Module, masks: StructuredMasks, batches: Iterable[Mapping[str, torch.Tensor]]
) -> dict[str, torch.Tensor | int]:
    """Importance over `batches`: {"head_raw", "mlp_raw", "head", "mlp", "num_batches"} (for notebooks)."""
    accumulator = ImportanceAccumulator.for_masks(masks)
    for batch in batches:
        head_grad, mlp_grad, _, _ = gate_gradients(model, masks, batch)
        accumulator.add(head_grad.cpu(), mlp_grad.cpu())
    head, mlp = accumulator.normalized()
    head_raw, mlp_raw = accumulator.raw()
    return {"head_raw": head_raw, "mlp_raw": mlp_raw, "head": head, "mlp": mlp, "num_batches": accumulator.num_batches}
