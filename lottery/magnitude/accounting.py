"""How much of the model a weight mask keeps: overall, per layer, per tensor, and per attention unit
and MLP (the share of the weights each owns that survive)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lottery.architectures import UnitLinear
from lottery.magnitude.eligibility import ELIGIBLE_ROLES, layer_parameter_names
from lottery.magnitude.masks import WeightMasks
from lottery.models import model_family, model_shape


def _percent(kept: int | Tensor, total: int) -> float | None:
    return 100.0 * float(kept) / total if total else None


def _head_survival(layer_masks: Mapping[str, Tensor], num_heads: int,
                   unit_linears: Mapping[str, UnitLinear]) -> list[float | None]:
    """% kept per attention unit of one layer: its rows of the q/k/v projections (and bias
    entries), its columns of the attention-output weight (`unit_linears`: path -> how the units
    share that linear out)."""
    kept, total = torch.zeros(num_heads, dtype=torch.int64), 0
    for key, mask in layer_masks.items():
        path, kind = key.rsplit(".", 1)
        linear = unit_linears.get(path)
        if linear is None:
            continue
        if linear.dim == 0:  # rows grouped by unit within each segment: [segments * units * width, ...]
            grouped, dims = mask.reshape(linear.segments, num_heads, linear.width, -1), (0, 2, 3)
        elif kind == "weight":  # columns grouped by unit: [out, segments * units * width]
            grouped, dims = mask.reshape(mask.shape[0], linear.segments, num_heads, linear.width), (0, 1, 3)
        else:  # the output projection's bias is shared by all units
            continue
        kept += torch.count_nonzero(grouped, dim=dims)
        total += grouped.numel() // num_heads
    return [_percent(k, total) for k in kept.tolist()]


def sparsity_report(masks: WeightMasks, model: nn.Module) -> dict:
    """JSON-friendly accounting of a mask set on `model`'s (unpruned) architecture.

    `sparsity`, `per_layer` and `per_matrix` are fractions pruned; `head_survival[l][u]` and
    `mlp_survival[l]` are percentages kept. A head (attention unit; a KV group under grouped-query
    attention) owns its rows of Q, K, V (and their bias entries) and its columns of the
    attention-output weight; an MLP owns its input linears (BERT: intermediate.dense, weight and
    bias) and its output linear (weight, and bias if masked). Tensors absent from `masks` are left
    out; a unit with nothing masked reports None.
    """
    masks.check_compatible(model)
    _, num_heads = model_shape(model)
    family = model_family(model)
    unit_linears = {linear.path: linear for linear in family.unit_linears(model.config)}
    mlp_paths = {*family.mlp_inputs, family.mlp_output}
    kept = {name: int(torch.count_nonzero(m)) for name, m in masks.items()}
    per_layer, head_survival, mlp_survival = [], [], []
    for layer_names in layer_parameter_names(model, ELIGIBLE_ROLES, True, ()):
        present = {key: name for key, name in layer_names.items() if name in masks}
        layer_kept = _percent(sum(kept[n] for n in present.values()), sum(masks[n].numel() for n in present.values()))
        per_layer.append(None if layer_kept is None else 1.0 - layer_kept / 100.0)
        head_survival.append(_head_survival({key: masks[n] for key, n in present.items()}, num_heads, unit_linears))
        mlp = [n for key, n in present.items() if key.rsplit(".", 1)[0] in mlp_paths]
        mlp_survival.append(_percent(sum(kept[n] for n in mlp), sum(masks[n].numel() for n in mlp)))
    return {
        "sparsity": masks.sparsity(),
        "kept": masks.num_kept(),
        "total": masks.num_total(),
        "per_layer": per_layer,
        "per_matrix": {name: 1.0 - kept[name] / m.numel() for name, m in masks.items()},
        "head_survival": head_survival,
        "mlp_survival": mlp_survival,
    }
