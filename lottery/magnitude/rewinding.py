"""Rewinding a ticket's surviving weights to their pre-trained values (iterative magnitude pruning)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lottery.magnitude.masks import WeightMasks
from lottery.masks import MaskShapeError


@torch.no_grad()
def rewind_(model: nn.Module, masks: WeightMasks, pretrained_state: Mapping[str, Tensor]) -> None:
    """Set the masked parameters to their pre-trained values where kept and to zero where pruned.

    Only the parameters in `masks` change: reset the others (embeddings, LayerNorm, classifier)
    yourself. `pretrained_state` stays where it is (CPU); each tensor is copied to its parameter's
    device on its own, so no second copy of the model lives on the GPU.
    """
    params = masks.check_compatible(model)
    for name in masks:
        if name not in pretrained_state:
            raise KeyError(f"pretrained_state has no {name!r}")
        p, source = params[name], pretrained_state[name]
        if source.shape != p.shape:
            raise MaskShapeError(
                f"parameter {name!r}: pre-trained tensor has shape {tuple(source.shape)}, the model's {tuple(p.shape)}"
            )
        p.copy_(source.to(p.device, p.dtype))
        p.masked_fill_(~masks.on(name, p.device), 0.0)

