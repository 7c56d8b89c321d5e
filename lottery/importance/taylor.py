"""First-order Taylor importance (Molchanov et al. 2019, "Importance Estimation for Neural Network
Pruning"): per unit, s = sum over the unit's weights w of w * dL/dw, the first-order estimate of
how much the batch loss changes when the unit's weights are set to zero.

Which weights a unit owns is defined once, in `lottery.importance.weight_norm` (module doc) from
the model family's adapter: for BERT, a head's q/k/v rows and bias entries and its
attention-output columns; an MLP block's `intermediate.dense` and `output.dense` weights AND biases. The output bias is included because
the MLP gate multiplies the block's output after it (so masking the block removes it, and
physical pruning drops it); magnitude pruning leaves that bias alone because there a lone zeroed
bias would shift the residual stream, a question structured units do not raise. A consequence
worth knowing: with all gates at 1, the `attention.output.dense` part of a head's score equals
Michel's dL/dxi for that head exactly, and the `output.dense` (weight + bias) part of an MLP's
score equals Michel's dL/dnu; Taylor adds the terms of the weights feeding them.

`batch` returns the SIGNED s of one batch; the protocol's `accumulate` adds |s_t| ("per_batch",
close to Molchanov's average of per-batch estimates, which squares instead of taking |.|) or
|s_1 + ... + s_t| ("running": sum w * (g_1 + ... + g_t), what a never-zeroed `.grad` gives).

Masked units: the head gate multiplies the head's context and the MLP gate the block's output,
so no gradient reaches a masked unit's weights (the q/k/v rows get 0 through the gate, the
attention-output columns and `output.dense` see a zero input or output): a masked unit scores
exactly 0, like under Michel's criterion. That is harmless: masked units are never chosen again,
and a 0 keeps them out of the per-layer L2 normalisation. Units removed by physical pruning
score 0 too.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lottery.importance.base import (
    BatchScores,
    Criterion,
    eval_mode,
    forward_with_loss,
    masks_for_call,
    register_criterion,
    token_count,
)
from lottery.importance.weight_norm import unit_parameters, unit_sums
from lottery.masks import StructuredMasks, check_shape
from lottery.models import encoder_layers, model_shape


@contextmanager
def _requiring_grad(parameters: list[Tensor]):
    """Let frozen parameters require grad for the call, then freeze them again."""
    frozen = [parameter for parameter in parameters if not parameter.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        yield
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)


def taylor_scores(model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor]
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(signed s per head [L, H], per MLP [L], logits, loss) for one batch, all detached.

    Gradients come from `torch.autograd.grad` with respect to the units' parameters only: no
    `.grad` is written (so no optimizer state or DDP hook is touched). The model runs in eval mode
    (restored afterwards) with `masks` attached for the call unless they already are.
    """
    check_shape(masks.shape, model_shape(model), f"StructuredMasks scored on {type(model).__name__}")
    parameters = [
        tensor
        for heads, mlp in (unit_parameters(model, layer) for layer in encoder_layers(model))
        for tensor in [tensor for tensor, _ in heads] + mlp
    ]
    with (
        eval_mode(model),
        torch.inference_mode(False),
        torch.enable_grad(),
        _requiring_grad(parameters),
        masks_for_call(model, masks),
    ):
        output = forward_with_loss(model, batch)
        loss = output.loss
        # allow_unused: a layer with no heads left never calls its (empty) q/k/v.
        grads = torch.autograd.grad(loss, parameters, allow_unused=True, materialize_grads=True)
    gradient_of = {id(tensor): grad for tensor, grad in zip(parameters, grads, strict=True)}
    del grads
    # pop: each gradient is freed once its unit sums are taken
    head, mlp = unit_sums(model, lambda tensor: tensor.detach() * gradient_of.pop(id(tensor)))
    return head, mlp, output.logits.detach(), loss.detach()


@register_criterion
class Taylor(Criterion):
    """sum of w * dL/dw over each unit's weights, per batch (Molchanov et al. 2019)."""

    name = "taylor"

    def batch(self, model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor]) -> BatchScores:
        head, mlp, logits, loss = taylor_scores(model, masks, batch)
        return BatchScores(head, mlp, logits, loss, token_count(batch))
