"""Michel et al. (2019)'s head and MLP importance, as Prasanna et al. (2020) use it: the gradient
of the batch loss with respect to each gate (xi[l, h] on a head's attention output, nu[l] on an
MLP block's output), taken in eval mode (no dropout) with the current masks applied."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from lottery.importance.base import (
    BatchScores,
    Criterion,
    eval_mode,
    model_inputs,
    register_criterion,
    token_count,
)
from lottery.masks import StructuredMasks, attach_masks, attached_masks


def gate_gradients(model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor]
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
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
        output = model(**model_inputs(batch, device, model))
        loss = output.loss
        if loss is None:
            raise ValueError("the model returned no loss; does the batch carry `labels`?")
        head_grad, mlp_grad = torch.autograd.grad(
            loss, [head_gates, mlp_gates], allow_unused=True, materialize_grads=True
        )
    return head_grad.detach(), mlp_grad.detach(), output.logits.detach(), loss.detach()


@register_criterion
class Michel(Criterion):
    """dL/dgate per batch (the paper's criterion)."""

    name = "michel"

    def batch(self, model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor]) -> BatchScores:
        head, mlp, logits, loss = gate_gradients(model, masks, batch)
        return BatchScores(head, mlp, logits, loss, token_count(batch))
