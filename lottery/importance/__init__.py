"""Importance of heads and MLPs: pluggable criteria (one module each, found through one registry),
how their per-batch scores add up (the protocol's `accumulate`), and the paper's normalisation.

A new criterion is one module in this package that defines a `Criterion` subclass decorated with
`@register_criterion`, plus one file `conf/importance/<name>.yaml`; every module here is imported
below, so nothing else needs to know its name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from lottery.importance.base import (
    ACCUMULATIONS,
    CRITERIA,
    MODEL_INPUT_KEYS,
    BatchScores,
    Criterion,
    ImportanceAccumulator,
    check_accumulation,
    eval_mode,
    get_criterion,
    model_inputs,
    normalize_head_importance,
    normalize_mlp_importance,
    register_criterion,
    token_count,
)
from lottery.importance.michel import gate_gradients
from lottery.masks import StructuredMasks

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ACCUMULATIONS", "CRITERIA", "MODEL_INPUT_KEYS", "BatchScores", "Criterion", "ImportanceAccumulator",
    "check_accumulation", "compute_importance", "eval_mode", "gate_gradients", "get_criterion", "model_inputs",
    "normalize_head_importance", "normalize_mlp_importance", "register_criterion", "token_count",
]


def compute_importance(model: nn.Module, masks: StructuredMasks, batches: Iterable[Mapping[str, Tensor]],
                       criterion: str = "michel", accumulate: str = "running") -> dict[str, Tensor | int]:
    """Importance over `batches` (in order): {"head_raw", "mlp_raw", "head", "mlp", "num_batches"}.

    A convenience for notebooks and tests; the search computes the same through Lightning."""
    scorer = get_criterion(criterion)
    batches = list(batches)
    if scorer.uses_data:
        accumulator = ImportanceAccumulator.for_masks(masks, len(batches), accumulate)
        for index, batch in enumerate(batches):
            scores = scorer.batch(model, masks, batch)
            accumulator.add(index, scores.head.cpu(), scores.mlp.cpu(), scores.tokens)
        head_raw, mlp_raw = accumulator.raw()
    else:
        head_raw, mlp_raw = (t.detach().to("cpu", torch.float64) for t in scorer.static(model, masks))
    return {"head_raw": head_raw, "mlp_raw": mlp_raw, "head": normalize_head_importance(head_raw),
            "mlp": normalize_mlp_importance(mlp_raw), "num_batches": len(batches)}
