"""The report's sections, found by name: a results.json lists the sections that draw its mode's
results (`Results.figures`, set by the mode), and the report runs them.

`GROUP_FIGURES`: one figure per (model, variant, task) group. `COLLECTIONS`: analyses over all
groups that ask for them (stability across seeds, super tickets, task x task overlap). A new
figure is one function here and its name in the modes that want it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lottery import stability
from lottery.io import write_json, write_text
from lottery.report import figures
from lottery.report.agreement import STABILITY_COLUMNS, stability_rows
from lottery.report.discover import GroupKey, Loaded
from lottery.report.evolution import evolution_figure
from lottery.report.masks import structured_masks
from lottery.report.super_tickets import super_masks
from lottery.report.tables import markdown_table

# A group figure returns one Figure, or several keyed by a name suffix (e.g. one per seed).
GroupFigure = Callable[[GroupKey, list[Loaded], pd.DataFrame], Figure | dict[str, Figure]]
Collection = Callable[[dict[GroupKey, list[Loaded]], Path, int], list[Path]]


def _part(summary: pd.DataFrame, key: GroupKey) -> pd.DataFrame:
    model, variant, task = key
    return summary[(summary["model"] == model) & (summary["variant"] == variant) & (summary["task"] == task)]


def _importance_evolution(key: GroupKey, group: list[Loaded], summary: pd.DataFrame) -> dict[str, Figure]:
    return {f"seed{run.results.seed}": evolution_figure(run, structured_masks(run)[0]) for run in group}


GROUP_FIGURES: dict[str, GroupFigure] = {
    "bars": lambda key, group, summary: figures.bar_chart(key[0], key[1], key[2], _part(summary, key)),
    "structured_heatmap": lambda key, group, summary: figures.structured_heatmap(key[0], key[1], key[2], group),
    "magnitude_heatmap": lambda key, group, summary: figures.magnitude_heatmap(key[0], key[1], key[2], group),
    "importance_evolution": _importance_evolution,
}


def register_group_figure(name: str) -> Callable[[GroupFigure], GroupFigure]:
    def add(function: GroupFigure) -> GroupFigure:
        GROUP_FIGURES[name] = function
        return function
    return add


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return str(value)


def write_stability(groups: dict[GroupKey, list[Loaded]], out: Path, seed: int) -> list[Path]:
    rows = [row for key, group in groups.items() for row in stability_rows(key, group)]
    frame = pd.DataFrame(rows, columns=STABILITY_COLUMNS)
    text = ("# Stability of good structured masks across seeds\n\nIoU = |kept in all| / |kept in any|; "
            "Krippendorff's alpha (nominal; nan = no variation); Cochran's Q with its chi-square p.\n\n"
            + markdown_table(frame.map(_fmt).set_index("model"), index_name="model") + "\n")
    return [write_text(out / "stability.csv", frame.to_csv(index=False)), write_text(out / "stability.md", text)]


def write_super_tickets(groups: dict[GroupKey, list[Loaded]], out: Path, seed: int) -> list[Path]:
    written, table = [], []
    for (model, variant, task), group in groups.items():
        masks, counts = super_masks(group, seed)
        folder = out / "super" / figures.safe_name(model) / figures.safe_name(task) / figures.safe_name(variant)
        written += [write_json(folder / f"{kind}.json", mask) for kind, mask in masks.items()]
        table += [{"model": model, "variant": variant, "task": task, "seeds": len(group), **row} for row in counts]
    written.append(write_text(out / "super" / "summary.csv", pd.DataFrame(table).to_csv(index=False)))
    return written


def write_task_overlap(groups: dict[GroupKey, list[Loaded]], out: Path, seed: int) -> list[Path]:
    """Per (model, variant) with two tasks or more: the paper's counts of heads and of MLPs kept in
    both tasks' good masks of the same seed, and the Jaccard similarity of super-good heads."""
    by_variant: dict[tuple[str, str], dict[str, list[Loaded]]] = {}
    for (model, variant, task), group in groups.items():
        by_variant.setdefault((model, variant), {})[task] = group
    written = []
    for (model, variant), per_task in by_variant.items():
        if len(per_task) < 2:
            continue
        name = f"{figures.safe_name(model)}_{figures.safe_name(variant)}"
        masks = {task: {run.results.seed: structured_masks(run) for run in group} for task, group in per_task.items()}
        for index, component in enumerate(("heads", "mlps")):
            parts = {task: {s: pair[index] for s, pair in seeds.items()} for task, seeds in masks.items()}
            try:
                names, mean, std = stability.task_overlap_counts(parts)
            except ValueError:  # no seed shared by all tasks
                continue
            frame = pd.DataFrame(mean, index=names, columns=names)
            written.append(write_text(out / "overlap" / f"counts_{component}_{name}.csv",
                                      frame.to_csv(index_label="task")))
            written.append(write_text(out / "overlap" / f"counts_{component}_{name}_std.csv",
                                      pd.DataFrame(std, index=names, columns=names).to_csv(index_label="task")))
            written += figures.write_figure(figures.overlap_counts_heatmap(model, variant, component, names, mean, std),
                                            out / "figures" / f"overlap_{component}_{name}")
        super_good = {task: super_masks(group, seed)[0]["super_good"]["head_mask"] for task, group in per_task.items()}
        names, matrix = stability.overlap_matrix({t: np.asarray(m).ravel() for t, m in sorted(super_good.items())})
        csv = pd.DataFrame(matrix, index=names, columns=names).to_csv(index_label="task")
        written.append(write_text(out / "overlap" / f"jaccard_super_heads_{name}.csv", csv))
        written += figures.write_figure(figures.overlap_heatmap(model, variant, names, matrix),
                                        out / "figures" / f"overlap_jaccard_super_heads_{name}")
    return written


COLLECTIONS: dict[str, Collection] = {
    "stability": write_stability,
    "super_tickets": write_super_tickets,
    "task_overlap": write_task_overlap,
}
