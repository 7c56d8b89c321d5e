"""Super-survivor masks of a structured variant across its seeds, as the authors draw them
(`lottery.tickets.super_tickets`, heads and MLPs separately), in the mask-file format that
`experiment=super` reads."""

from __future__ import annotations

from typing import Any

import torch

from lottery.report.discover import Loaded
from lottery.report.masks import same_shape, structured_masks
from lottery.tickets import super_tickets

KINDS = ("good", "random", "bad")


def super_masks(group: list[Loaded], seed: int) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Super-good/random/bad masks of one (model, variant, task) as mask-file dicts, and per
    component (heads, MLPs) the counts, pool sizes and notes about pools that were too small."""
    layers, heads_per_layer = same_shape(group)
    heads, mlps = zip(*(structured_masks(run) for run in group))
    per_component = {
        component: super_tickets([torch.as_tensor(m, dtype=torch.float32) for m in masks], seed=seed)
        for component, masks in (("heads", heads), ("mlps", mlps))
    }
    masks = {
        f"super_{kind}": {
            "num_layers": layers,
            "num_heads": heads_per_layer,
            "head_mask": getattr(per_component["heads"], kind).int().tolist(),
            "mlp_mask": getattr(per_component["mlps"], kind).int().tolist(),
        }
        for kind in KINDS
    }
    summary = [
        {"component": component, **{f"super_{kind}": tickets.counts[kind] for kind in KINDS},
         **{f"{kind}_candidates": tickets.candidates[kind] for kind in ("random", "bad")},
         "notes": "; ".join(tickets.notes)}
        for component, tickets in per_component.items()
    ]
    return masks, summary
