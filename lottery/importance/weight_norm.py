"""Weight-norm importance (a data-free baseline): each head's and each MLP block's L2 norm of the
weights it owns. Also the one definition of which weights a unit owns, shared with `taylor`.

A unit owns exactly what removing it removes (`lottery.pruning`, `lottery.accounting._unit_sizes`);
the model family's adapter says where (`lottery.architectures`, `Family.unit_linears`). For BERT:

- head h of a layer (head size d): rows h*d:(h+1)*d of `attention.self.{query,key,value}.weight`,
  entries h*d:(h+1)*d of their biases, and columns h*d:(h+1)*d of `attention.output.dense.weight`.
  `attention.output.dense.bias` is shared by all heads and never gated: no head owns it (a
  decoder's KV group likewise owns its query heads' q_proj rows, its k_proj / v_proj rows and its
  o_proj columns; a ModernBERT head its rows in each third of the fused Wqkv);
- the MLP block: `intermediate.dense.{weight,bias}` and `output.dense.{weight,bias}` (every
  family: its MLP linears). The output bias belongs to the block here (unlike in magnitude
  pruning, which leaves it unpruned as the paper does): the MLP gate multiplies the block's output
  AFTER that bias is added (the hook on `output.dropout`), so gating the block removes the bias
  with it, and physical pruning drops it.

Masks: a masked unit (gate 0) scores 0, as under the data-driven criteria, whose gradients cannot
reach it. So the same masks give the same scores on a masked model and on one physically pruned
by them (a removed unit scores 0 too), and masked units do not weigh in the per-layer L2
normalisation of head scores. Masked units are never chosen again, so their score only matters
through that normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from lottery.architectures import UnitLinear
from lottery.importance.base import (
    BatchScores,
    Criterion,
    eval_mode,
    forward_with_loss,
    masks_for_call,
    register_criterion,
    token_count,
)
from lottery.masks import StructuredMasks, check_shape
from lottery.models import encoder_layers, model_family, model_shape

# (parameter, how the units share it out): q/k/v rows and bias entries, attention-output columns.
HeadTensors = list[tuple[Tensor, UnitLinear]]


def unit_parameters(model: nn.Module, layer: nn.Module) -> tuple[HeadTensors, list[Tensor]]:
    """One layer's (unit-grouped tensors with their `UnitLinear`, MLP tensors); see module doc."""
    family = model_family(model)
    heads: HeadTensors = [(tensor, linear) for tensor, linear, _ in family.head_tensors(layer, model.config)]
    mlp = [
        parameter
        for linear in family.mlp_modules(layer)
        for parameter in (linear.weight, linear.bias)
        if parameter is not None  # a physically pruned block's output linear has no bias
    ]
    return heads, mlp


def present_heads(model: nn.Module, layer: nn.Module, num_heads: int) -> Tensor:
    """Original indices of the units the layer still holds (all of them unless physically pruned)."""
    kept = model_family(model).kept_units(layer)
    return torch.arange(num_heads) if kept is None else torch.tensor(kept, dtype=torch.long)


def per_unit_sum(values: Tensor, linear: UnitLinear) -> Tensor:
    """Sum of `values` (shaped like a unit-grouped parameter of `linear`) over each present unit's slices."""
    moved = values.movedim(linear.dim, 0)  # [segments * units * width, ...]
    units = moved.shape[0] // linear.per_unit
    if units == 0:  # a layer whose units were all removed
        return moved.new_zeros(0)
    if linear.segments == 1:
        return moved.reshape(units, -1).sum(dim=1)
    return moved.reshape(linear.segments, units, -1).sum(dim=(0, 2))


def unit_sums(model: nn.Module, values: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """(head [L, H], mlp [L]): per-unit sums of `values(parameter)`, float32 on the CPU.

    `values` maps each tensor of `unit_parameters` to elementwise values of the same shape
    (e.g. w**2 or w * dL/dw); it is called one tensor at a time, so at most one such tensor is
    alive at once. Units a layer no longer holds get 0.
    """
    num_layers, num_heads = model_shape(model)
    head = torch.zeros(num_layers, num_heads)
    mlp = torch.zeros(num_layers)
    with torch.no_grad():
        for index, layer in enumerate(encoder_layers(model)):
            head_tensors, mlp_tensors = unit_parameters(model, layer)
            present = present_heads(model, layer, num_heads)
            layer_head = torch.zeros(len(present))
            for tensor, linear in head_tensors:
                layer_head += per_unit_sum(values(tensor).float(), linear).cpu()
            head[index, present] = layer_head
            mlp[index] = sum(float(values(tensor).float().sum()) for tensor in mlp_tensors)
    return head, mlp


def score_batch(model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor]) -> BatchScores:
    """Logits and loss of one batch with `masks` applied, in eval mode, no gradients (no scores)."""
    with eval_mode(model), torch.no_grad(), masks_for_call(model, masks):
        output = forward_with_loss(model, batch)
    return BatchScores(None, None, output.logits.detach(), output.loss.detach(), token_count(batch))


def weight_norms(model: nn.Module, masks: StructuredMasks) -> tuple[Tensor, Tensor]:
    """(head [L, H], mlp [L]) L2 norms of the units' weights, times their gates (see module doc)."""
    check_shape(masks.shape, model_shape(model), f"StructuredMasks scored on {type(model).__name__}")
    head, mlp = unit_sums(model, lambda tensor: tensor.detach().square())
    return head.sqrt() * masks.head.detach().cpu(), mlp.sqrt() * masks.mlp.detach().cpu()


@register_criterion
class WeightNorm(Criterion):
    """L2 norm of each unit's weights; needs no data (`batch` only scores the model)."""

    name = "weight_norm"
    uses_data = False

    def static(self, model: nn.Module, masks: StructuredMasks) -> tuple[Tensor, Tensor]:
        return weight_norms(model, masks)

    def batch(self, model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor]) -> BatchScores:
        return score_batch(model, masks, batch)
