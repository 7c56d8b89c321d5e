"""The report's sections, found by name: a results.json lists the sections that draw its mode's
results (`Results.figures`, set by the mode), and the report runs them.

`GROUP_FIGURES`: one figure per (model, variant, task) group. `COLLECTIONS`: analyses over all
groups that ask for them (stability across seeds, super tickets, task x task overlap, the paired
tests of the table's rows). A new figure is one function here and its name in the modes that want
it. Every agreement figure is written beside its chance level (`lottery.stability`).
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
from lottery.report.agreement import PERMUTATION_SEED, PERMUTATIONS, STABILITY_COLUMNS, good_masks, stability_rows
from lottery.report.discover import GroupKey, Loaded
from lottery.report.evolution import evolution_figure
from lottery.report.masks import structured_masks
from lottery.report.super_tickets import super_masks
from lottery.report.tables import differences_markdown, markdown_table, seed_differences

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


def _vs_chance(observed: float, chance: float, p: float, digits: int = 2) -> str:
    """A figure beside its chance level: "0.43 (0.38; p 0.012)"."""
    if math.isnan(observed):
        return "nan"
    return f"{observed:.{digits}f} ({chance:.{digits}f}; p {_fmt(p)})"


COMPONENT_NAMES = {"heads": "Heads", "mlps": "MLPs"}
CHANCE_NOTE = ("Each figure: observed (chance; p). chance = what independent, uniformly random masks that keep as "
               "many units as each observed mask give (exact, except the IoU's, estimated from the permutations); "
               f"p = one-sided permutation p-value that the observed agreement is at least that high ({PERMUTATIONS} "
               "draws, each mask permuted on its own, +1 corrected so the smallest possible p is "
               f"1/{PERMUTATIONS + 1}). Two random masks of survival rate p already share about p/(2-p) of their "
               "units: the excess over chance, not the raw figure, is the agreement that pruning adds.")


def write_stability(groups: dict[GroupKey, list[Loaded]], out: Path, seed: int) -> list[Path]:
    rows = [row for key, group in groups.items() for row in stability_rows(key, group)]
    frame = pd.DataFrame(rows, columns=STABILITY_COLUMNS)
    shown = pd.DataFrame({
        "variant / task / component": [f"{r.variant} / {r.task} / {r.component}" for r in frame.itertuples()],
        "seeds": frame["n_seeds"], "kept (mean)": frame["mean_kept"].map(lambda v: f"{v:.1f}"),
        "mean Jaccard": [_vs_chance(r.mean_jaccard, r.jaccard_chance, r.jaccard_p) for r in frame.itertuples()],
        "excess": frame["jaccard_excess"].map(lambda v: "nan" if math.isnan(v) else f"{v:+.2f}"),
        "IoU": [_vs_chance(r.iou, r.iou_chance, r.iou_p) for r in frame.itertuples()],
        "kept in all seeds": [_vs_chance(r.kept_in_all, r.kept_in_all_chance, r.kept_in_all_p, 1)
                              for r in frame.itertuples()],
        "Krippendorff's alpha": [_vs_chance(r.krippendorff_alpha, r.alpha_chance, r.alpha_p)
                                 for r in frame.itertuples()],
        "Cochran's Q (p)": [f"{_fmt(r.cochran_q)} ({_fmt(r.cochran_p)})" for r in frame.itertuples()],
    }, index=frame.index).set_axis(frame["model"].to_list())
    text = ("# Stability of good structured masks across seeds\n\n"
            "mean Jaccard = mean over seed pairs of |kept in both| / |kept in either|; IoU = |kept in all| / "
            "|kept in any|; kept in all seeds = the super-survivors; Krippendorff's alpha (nominal; nan = no "
            "variation); Cochran's Q tests that all seeds keep elements at the same rate (its chi-square p). "
            + CHANCE_NOTE + " stability.csv has each statistic's observed, chance, excess and p.\n\n"
            + markdown_table(shown, index_name="model") + "\n")
    return [write_text(out / "stability.csv", frame.to_csv(index=False)), write_text(out / "stability.md", text)]


def write_super_tickets(groups: dict[GroupKey, list[Loaded]], out: Path, seed: int) -> list[Path]:
    """Super-good/random/bad masks per group, and per component how many units survive (and are
    pruned) in every seed beside what independent random masks of the same sizes give."""
    written, table = [], []
    for (model, variant, task), group in groups.items():
        masks, counts = super_masks(group, seed)
        folder = out / "super" / figures.safe_name(model) / figures.safe_name(task) / figures.safe_name(variant)
        written += [write_json(folder / f"{kind}.json", mask) for kind, mask in masks.items()]
        flat = good_masks(group)
        for row in counts:
            component = flat[row["component"]]
            kept = stability.super_survivors_vs_chance(list(component), PERMUTATIONS, PERMUTATION_SEED)
            pruned = stability.super_survivors_vs_chance(list(1 - component), PERMUTATIONS, PERMUTATION_SEED)
            table.append({"model": model, "variant": variant, "task": task, "seeds": len(group), **row,
                          "n_elements": component.shape[1],
                          **{f"kept_in_all_{k}": v for k, v in kept.items()},
                          **{f"pruned_in_all_{k}": v for k, v in pruned.items()}})
    frame = pd.DataFrame(table)
    written.append(write_text(out / "super" / "summary.csv", frame.to_csv(index=False)))
    shown = pd.DataFrame({
        "variant / task / component": [f"{r.variant} / {r.task} / {r.component}" for r in frame.itertuples()],
        "seeds": frame["seeds"], "units": frame["n_elements"],
        "kept in all seeds (super-good)": [_vs_chance(r.kept_in_all_observed, r.kept_in_all_chance, r.kept_in_all_p, 1)
                                           for r in frame.itertuples()],
        "pruned in all seeds": [_vs_chance(r.pruned_in_all_observed, r.pruned_in_all_chance, r.pruned_in_all_p, 1)
                                for r in frame.itertuples()],
        "notes": frame["notes"].fillna(""),
    }, index=frame.index).set_axis(frame["model"].to_list())
    text = ("# Super-survivors against chance\n\nUnits kept in every seed's good mask (super-good) and pruned in "
            "every seed (the pool of super-bad), beside the count that independent random masks of the same sizes "
            "give: n x prod(kept_i / n) (pruned: n x prod(1 - kept_i / n)). " + CHANCE_NOTE
            + " The super masks themselves: super/<model>/<task>/<variant>/super_{good,random,bad}.json.\n\n"
            + markdown_table(shown, index_name="model") + "\n")
    written.append(write_text(out / "super" / "summary.md", text))
    return written


def _long(names: list[str], arrays: dict[str, np.ndarray], **extra: np.ndarray) -> pd.DataFrame:
    """A task x task result in long format: one row per ordered pair of tasks."""
    rows = []
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            rows.append({"task_a": a, "task_b": b, **{k: float(v[i, j]) for k, v in {**arrays, **extra}.items()}})
    return pd.DataFrame(rows)


def write_task_overlap(groups: dict[GroupKey, list[Loaded]], out: Path, seed: int) -> list[Path]:
    """Per (model, variant) with two tasks or more: the paper's counts of heads and of MLPs kept in
    both tasks' good masks of the same seed, and the Jaccard similarity of super-good heads, each
    beside what independent random masks of the same sizes give (chance, excess, p)."""
    by_variant: dict[tuple[str, str], dict[str, list[Loaded]]] = {}
    for (model, variant, task), group in groups.items():
        by_variant.setdefault((model, variant), {})[task] = group
    written = []
    for (model, variant), per_task in by_variant.items():
        if len(per_task) < 2:
            continue
        name = f"{figures.safe_name(model)}_{figures.safe_name(variant)}"
        masks = {task: {run.results.seed: structured_masks(run) for run in group} for task, group in per_task.items()}
        sections = [f"# Overlap between tasks: {model}, {variant}", "", CHANCE_NOTE]
        for index, component in enumerate(("heads", "mlps")):
            parts = {task: {s: pair[index] for s, pair in seeds.items()} for task, seeds in masks.items()}
            try:
                names, mean, std = stability.task_overlap_counts(parts)
            except ValueError:  # no seed shared by all tasks
                continue
            _, vs = stability.task_overlap_vs_chance(parts, PERMUTATIONS, PERMUTATION_SEED)
            frame = pd.DataFrame(mean, index=names, columns=names)
            written.append(write_text(out / "overlap" / f"counts_{component}_{name}.csv",
                                      frame.to_csv(index_label="task")))
            written.append(write_text(out / "overlap" / f"counts_{component}_{name}_std.csv",
                                      pd.DataFrame(std, index=names, columns=names).to_csv(index_label="task")))
            written.append(write_text(out / "overlap" / f"counts_{component}_{name}_vs_chance.csv",
                                      _long(names, vs, std=std).to_csv(index=False)))
            written += figures.write_figure(
                figures.overlap_counts_heatmap(model, variant, component, names, mean, std, vs["chance"], vs["p"]),
                out / "figures" / f"overlap_{component}_{name}")
            cells = pd.DataFrame("", index=names, columns=names)
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    cells.loc[a, b] = (f"{mean[i, j]:.1f} (kept)" if i == j
                                       else _vs_chance(mean[i, j], vs["chance"][i, j], vs["p"][i, j], 1))
            sections += ["", (f"## {COMPONENT_NAMES[component]} kept in both tasks' good masks of the same seed "
                             "(mean over seeds; diagonal: kept by the task)"), "", markdown_table(cells, "task")]
        super_good = {task: super_masks(group, seed)[0]["super_good"]["head_mask"] for task, group in per_task.items()}
        flat = {t: np.asarray(m).ravel() for t, m in sorted(super_good.items())}
        names, matrix = stability.overlap_matrix(flat)
        chance, p = np.ones_like(matrix), np.full(matrix.shape, np.nan)
        for i, j in zip(*np.triu_indices(len(names), k=1)):
            result = stability.stability_vs_chance([flat[names[i]], flat[names[j]]], PERMUTATIONS, PERMUTATION_SEED)
            chance[i, j] = chance[j, i] = result["chance"]
            p[i, j] = p[j, i] = result["p"]
        csv = pd.DataFrame(matrix, index=names, columns=names).to_csv(index_label="task")
        written.append(write_text(out / "overlap" / f"jaccard_super_heads_{name}.csv", csv))
        vs = {"observed": matrix, "chance": chance, "excess": matrix - chance, "p": p}
        written.append(write_text(out / "overlap" / f"jaccard_super_heads_{name}_vs_chance.csv",
                                  _long(names, vs).to_csv(index=False)))
        written += figures.write_figure(figures.overlap_heatmap(model, variant, names, matrix, chance, p),
                                        out / "figures" / f"overlap_jaccard_super_heads_{name}")
        cells = pd.DataFrame("", index=names, columns=names)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                cells.loc[a, b] = "1" if i == j else _vs_chance(matrix[i, j], chance[i, j], p[i, j])
        sizes = ", ".join(f"{t} {int(flat[t].sum())}" for t in names)
        sections += ["", f"## Jaccard of super-good heads between tasks (super-good heads: {sizes})", "",
                     markdown_table(cells, "task")]
        written.append(write_text(out / "overlap" / f"overlap_{name}.md", "\n".join(sections) + "\n"))
    return written


def write_differences(groups: dict[GroupKey, list[Loaded]], out: Path, seed: int) -> list[Path]:
    """differences.{csv,md}: good against random and bad tickets, paired by seed, for every group
    that draws the table's bars."""
    frame = seed_differences(groups)
    if frame.empty:
        return []
    return [write_text(out / "differences.csv", frame.to_csv(index=False)),
            write_text(out / "differences.md", differences_markdown(frame))]


COLLECTIONS: dict[str, Collection] = {
    # Every mode that draws the table's bars (good/random/bad, pruned/retrained) gets its differences tested.
    "bars": write_differences,
    "stability": write_stability,
    "super_tickets": write_super_tickets,
    "task_overlap": write_task_overlap,
}
