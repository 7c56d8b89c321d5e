"""Michel et al. (2019)'s head and MLP importance, as Prasanna et al. (2020) use it: the gradient
of the batch loss with respect to each gate (xi[l, h] on a head's attention output, nu[l] on an
MLP block's output), taken in eval mode (no dropout) with the current masks applied."""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
from lottery.masks import StructuredMasks


def gate_gradients(model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor],
                   loss_fn: Callable[[nn.Module, Mapping[str, Tensor]], Tensor] | None = None
                   ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """(dL/dhead [L, H], dL/dmlp [L], logits, loss) for one batch, all detached; with `loss_fn`
    (`loss_fn(model, batch) -> scalar`, for a model whose loss is not its own output's), L is
    that and the logits are None.

    Only the gates are differentiated (`torch.autograd.grad`): no weight gradient is computed or
    accumulated, so this is cheaper than a training step and fires no DDP gradient hooks. The
    model runs in eval mode; `masks` are attached for the call unless already attached to it.
    """
    with (
        eval_mode(model),
        torch.inference_mode(False),
        torch.enable_grad(),
        masks.differentiable(next(model.parameters()).device) as (head_gates, mlp_gates),
        masks_for_call(model, masks),
    ):
        output = forward_with_loss(model, batch) if loss_fn is None else None
        loss = output.loss if output is not None else loss_fn(model, batch)
        head_grad, mlp_grad = torch.autograd.grad(
            loss, [head_gates, mlp_gates], allow_unused=True, materialize_grads=True
        )
    logits = output.logits.detach() if output is not None else None
    return head_grad.detach(), mlp_grad.detach(), logits, loss.detach()


@register_criterion
class Michel(Criterion):
    """dL/dgate per batch (the paper's criterion)."""

    name = "michel"

    def batch(self, model: nn.Module, masks: StructuredMasks, batch: Mapping[str, Tensor]) -> BatchScores:
        head, mlp, logits, loss = gate_gradients(model, masks, batch)
        return BatchScores(head, mlp, logits, loss, token_count(batch))
