"""A run's good (or other) ticket as arrays: structured masks, or % of weights surviving per unit."""

from __future__ import annotations

import numpy as np

from lottery.errors import CorruptFileError
from lottery.io import read_json
from lottery.report.discover import Loaded


def structured_masks(run: Loaded, ticket: str = "good") -> tuple[np.ndarray, np.ndarray]:
    """A structured ticket's (head_mask [L, H], mlp_mask [L]) from results.json or its mask_file."""
    results = run.results
    entry = results.tickets.get(ticket)
    if entry is None:
        raise CorruptFileError(f"{run.path}: no {ticket} ticket")
    head, mlp = entry.head_mask, entry.mlp_mask
    if head is None or mlp is None:
        stored = read_json(run.folder / entry.mask_file)
        head, mlp = stored["head_mask"], stored["mlp_mask"]
    head, mlp = np.asarray(head, dtype=np.int64), np.asarray(mlp, dtype=np.int64)
    shape = (results.num_layers, results.num_heads)
    if head.shape != shape or mlp.shape != shape[:1]:
        raise CorruptFileError(f"{run.path}: {ticket} masks have shapes {head.shape}, {mlp.shape}; expected {shape}")
    return head, mlp


def weight_survival(run: Loaded, ticket: str = "good") -> tuple[np.ndarray, np.ndarray]:
    """A weight ticket's % of weights surviving per head [L, H] and per MLP [L]."""
    entry = run.results.tickets.get(ticket)
    if entry is None or entry.head_survival is None or entry.mlp_survival is None:
        raise CorruptFileError(f"{run.path}: the {ticket} ticket lacks head_survival/mlp_survival")
    return np.asarray(entry.head_survival, dtype=float), np.asarray(entry.mlp_survival, dtype=float)


def same_shape(group: list[Loaded]) -> tuple[int, int]:
    shapes = {(run.results.num_layers, run.results.num_heads) for run in group}
    if len(shapes) > 1:
        raise CorruptFileError(f"runs of one model disagree on its shape {sorted(shapes)}: {group[0].path}")
    return shapes.pop()
