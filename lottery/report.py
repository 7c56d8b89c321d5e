"""Turn a sweep's ``results.json`` files into the paper's tables and figures.

Usage: ``python -m lottery.report DIR [--wandb] [--seed N]``. Every ``results.json`` under DIR
(any mix of models, tasks, modes and seeds; DIR/report is skipped) is read, and DIR/report/ gets:

- ``table.md``, ``table.csv`` (long format), ``table.tex``: the headline table, mean ± std
  (Bessel) over seeds of each task's driving metric, and the tickets' sizes;
- ``figures/heatmap_*`` and ``figures/bars_*`` (PNG and PDF) per (model, task, mode);
- ``stability.csv``, ``stability.md``: agreement of structured good masks across seeds;
- ``overlap/*.csv`` and ``figures/overlap_*``: task x task Jaccard of super-good head masks;
- ``super/<model>/<task>/<mode>/super_{good,random,bad}.json``: super-survivor masks (drawn by
  ``lottery.tickets.super_tickets``), and ``super/summary.csv`` with their sizes and pool sizes.

"Mode" below is the pruning variant: ``structured`` or ``magnitude``, suffixed with the pruning
target, schedule and search split when they differ from the paper's (e.g. ``structured-heads``,
``magnitude-imp``, ``structured-train_holdout``), so that different variants are never averaged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lottery import stability
from lottery.io import atomic_write, write_json, write_text
from lottery.tickets import super_tickets

REPORT_DIRNAME = "report"
RESULTS_FILENAME = "results.json"
TICKETS = ("good", "random", "bad")
EVALS = ("pruned", "retrained")
EVAL_ABBREVIATIONS = {"pruned": "pr", "retrained": "re"}
TABLE_COLUMNS = ["model", "mode", "task", "ticket", "eval", "metric", "mean", "std", "n"]
STABILITY_COLUMNS = [
    "model",
    "mode",
    "task",
    "component",
    "n_seeds",
    "n_elements",
    "mean_kept",
    "iou",
    "mean_jaccard",
    "krippendorff_alpha",
    "cochran_q",
    "cochran_p",
]
GLUE_ORDER = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
_DEFAULT_VARIANT = {"pruning": {"structured": "heads_mlps", "magnitude": "magnitude"}}
_REQUIRED_KEYS = ("model", "task", "seed", "mode", "metric", "full", "tickets", "num_layers", "num_heads")

GroupKey = tuple[str, str, str]  # (model, mode, task)


class NoResultsError(FileNotFoundError):
    """The folder given to the report holds no results.json."""


# --------------------------------------------------------------------------------------- reading


def mode_name(result: dict[str, Any]) -> str:
    """The pruning variant of a run: its mode plus whatever differs from the paper's setup."""
    mode = result["mode"]
    parts = [mode]
    pruning = result.get("pruning")
    if pruning and pruning != _DEFAULT_VARIANT["pruning"].get(mode):
        parts.append(pruning)
    if result.get("schedule", "paper") not in (None, "paper"):
        parts.append(result["schedule"])
    if result.get("search_split", "dev") not in (None, "dev"):
        parts.append(result["search_split"])
    return "-".join(parts)


def collect_results(directory: str | Path) -> list[dict[str, Any]]:
    """Every results.json under ``directory`` (recursively, skipping its report folder).

    Each dict is the file's content plus ``_path`` (the file) and ``_dir`` (its folder, against
    which ``mask_file`` entries are resolved). Raises NoResultsError if there is none, and
    ValueError for a malformed file or two files for the same (model, task, mode, seed).
    """
    root = Path(directory)
    if not root.is_dir():
        raise NoResultsError(f"{root} is not a folder; give the output folder of a sweep")
    report_dir = (root / REPORT_DIRNAME).resolve()
    paths = sorted(p for p in root.rglob(RESULTS_FILENAME) if report_dir not in p.resolve().parents)
    if not paths:
        raise NoResultsError(
            f"no {RESULTS_FILENAME} found under {root.resolve()}. A sweep writes one {RESULTS_FILENAME} "
            f"per run (model, task, mode, seed) into that run's output folder: point the report at the "
            f"folder that holds the runs, or run the sweep first."
        )
    results, seen = [], {}
    for path in paths:
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        missing = [key for key in _REQUIRED_KEYS if key not in result]
        if missing:
            raise ValueError(f"{path} lacks the keys {missing}; was it written by the pipeline?")
        run = (result["model"], result["task"], mode_name(result), result["seed"])
        if run in seen:
            raise ValueError(f"{seen[run]} and {path} are both {run}: remove one, or point the report at one sweep")
        seen[run] = path
        result["_path"], result["_dir"] = str(path), str(path.parent)
        results.append(result)
    return results


def _task_order(task: str) -> tuple[int, str]:
    normalised = re.sub(r"[^a-z0-9]", "", task.lower())
    return (GLUE_ORDER.index(normalised) if normalised in GLUE_ORDER else len(GLUE_ORDER), task)


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _mode_order(mode: str) -> tuple[int, str]:
    return (0 if mode.startswith("structured") else 1, mode)


def group_results(results: Iterable[dict[str, Any]]) -> dict[GroupKey, list[dict[str, Any]]]:
    """Results per (model, mode, task), in table order, each list sorted by seed."""
    groups: dict[GroupKey, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["model"], mode_name(result), result["task"]), []).append(result)
    order = sorted(groups, key=lambda k: (k[0], _mode_order(k[1]), _task_order(k[2])))
    return {key: sorted(groups[key], key=lambda r: r["seed"]) for key in order}


def _ticket(result: dict[str, Any], ticket: str) -> dict[str, Any]:
    return (result.get("tickets") or {}).get(ticket) or {}


def _driving_metric(group: list[dict[str, Any]]) -> str:
    metrics = {r["metric"] for r in group}
    if len(metrics) > 1:
        raise ValueError(f"runs of one task disagree on the driving metric {sorted(metrics)}: {group[0]['_path']}")
    return metrics.pop()


# ---------------------------------------------------------------------------------------- tables


def summary_table(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Mean, std (ddof=1; nan for one seed) and n over seeds, in long format (TABLE_COLUMNS).

    Rows: ``full``/``majority`` with eval ``dev``, each ticket with eval ``pruned``/``retrained``
    on the task's driving metric, and each ticket with eval ``size`` on ``size_pct``. An
    evaluation that no seed ran has no row.
    """
    rows = []
    for key, group in group_results(results).items():
        metric = _driving_metric(group)
        samples = {
            ("full", "dev", metric): [(r.get("full") or {}).get(metric) for r in group],
            ("majority", "dev", metric): [(r.get("majority_baseline") or {}).get(metric) for r in group],
        }
        for ticket in TICKETS:
            for evaluation in EVALS:
                samples[(ticket, evaluation, metric)] = [
                    (_ticket(r, ticket).get(evaluation) or {}).get(metric) for r in group
                ]
        for ticket in TICKETS:
            samples[(ticket, "size", "size_pct")] = [_ticket(r, ticket).get("size_pct") for r in group]
        for cell, values in samples.items():
            present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
            if present:
                std = float(np.std(present, ddof=1)) if len(present) > 1 else float("nan")
                rows.append([*key, *cell, float(np.mean(present)), std, len(present)])
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _row_labels(mode: str) -> dict[tuple[str, str], str]:
    """(ticket, eval) -> the paper's row label, e.g. ("good", "pruned") -> "s-good pr"."""
    prefix = mode[0]
    labels = {("full", "dev"): "full", ("majority", "dev"): "majority"}
    labels |= {(t, e): f"{prefix}-{t} {EVAL_ABBREVIATIONS[e]}" for t in TICKETS for e in EVALS}
    labels |= {(t, "size"): f"{prefix}-{t} size %" for t in TICKETS}
    return labels


def _cell(row: pd.Series, pm: str) -> str:
    digits = 1 if row["eval"] == "size" else 3
    text = f"{row['mean']:.{digits}f}"
    return text if math.isnan(row["std"]) else f"{text}{pm}{row['std']:.{digits}f}"


def table_sections(summary: pd.DataFrame, pm: str = " ± ") -> dict[tuple[str, str], pd.DataFrame]:
    """One formatted table per (model, mode): paper row labels x tasks, '-' where not run."""
    sections = {}
    for (model, mode), part in summary.groupby(["model", "mode"], sort=False):
        labels = _row_labels(mode)
        tasks = list(dict.fromkeys(part["task"]))
        table = pd.DataFrame("-", index=list(labels.values()), columns=tasks)
        for _, row in part.iterrows():
            table.loc[labels[(row["ticket"], row["eval"])], row["task"]] = _cell(row, pm)
        sections[(model, mode)] = table
    return sections


def _section_note(summary: pd.DataFrame, model: str, mode: str) -> str:
    part = summary[(summary["model"] == model) & (summary["mode"] == mode) & (summary["ticket"] == "full")]
    return "; ".join(f"{r.task}: {r.metric}, {_seeds(r.n)}" for r in part.itertuples())


def markdown_table(frame: pd.DataFrame, index_name: str = "") -> str:
    """A GitHub-flavoured Markdown table, index first (pandas' to_markdown needs tabulate)."""
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(frame.index, frame.values)]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", text)


def latex_tables(summary: pd.DataFrame) -> str:
    """The headline table as plain LaTeX tabulars (no packages needed), one per (model, mode)."""
    blocks = ["% Generated by python -m lottery.report: mean $\\pm$ std over seeds on dev."]
    for (model, mode), table in table_sections(summary, pm=" $\\pm$ ").items():
        columns = " & ".join(_latex_escape(c) for c in table.columns)
        rows = [
            f"{_latex_escape(label)} & " + " & ".join(row) + r" \\" for label, row in zip(table.index, table.values)
        ]
        blocks.append(
            "\n".join(
                [
                    r"\begin{table}[ht]",
                    r"\centering",
                    (
                        rf"\caption{{{_latex_escape(model)}, {_latex_escape(mode)} pruning "
                        rf"({_latex_escape(_section_note(summary, model, mode))})}}"
                    ),
                    r"\begin{tabular}{l" + "c" * len(table.columns) + "}",
                    r"\hline",
                    rf" & {columns} \\",
                    r"\hline",
                    *rows,
                    r"\hline",
                    r"\end{tabular}",
                    r"\end{table}",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


def markdown_tables(summary: pd.DataFrame) -> str:
    lines = [
        "# Results",
        "",
        (
            "Mean ± std (Bessel) over seeds of each task's driving metric on dev; one seed shows the mean "
            "only, '-' = not run. pr = mask applied to the fine-tuned model, re = mask applied to the "
            "pre-trained model, then fine-tuned. size % = share of the full model's parameters kept."
        ),
    ]
    for (model, mode), table in table_sections(summary).items():
        lines += [
            "",
            f"## {model} — {mode}",
            "",
            markdown_table(table),
            "",
            f"Metrics and seeds: {_section_note(summary, model, mode)}.",
        ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- masks


def structured_masks(result: dict[str, Any], ticket: str = "good") -> tuple[np.ndarray, np.ndarray]:
    """A structured ticket's (head_mask [L, H], mlp_mask [L]) from results.json or its mask_file."""
    entry = _ticket(result, ticket)
    head, mlp = entry.get("head_mask"), entry.get("mlp_mask")
    if head is None or mlp is None:
        if not entry.get("mask_file"):
            raise ValueError(f"{result['_path']}: the {ticket} ticket has neither head_mask/mlp_mask nor mask_file")
        stored = json.loads((Path(result["_dir"]) / entry["mask_file"]).read_text())
        head, mlp = stored["head_mask"], stored["mlp_mask"]
    head, mlp = np.asarray(head, dtype=np.int64), np.asarray(mlp, dtype=np.int64)
    shape = (result["num_layers"], result["num_heads"])
    if head.shape != shape or mlp.shape != shape[:1]:
        raise ValueError(f"{result['_path']}: {ticket} masks have shapes {head.shape}, {mlp.shape}; expected {shape}")
    return head, mlp


def magnitude_survival(result: dict[str, Any], ticket: str = "good") -> tuple[np.ndarray, np.ndarray]:
    """A magnitude ticket's % of weights surviving per head [L, H] and per MLP [L]."""
    entry = _ticket(result, ticket)
    if entry.get("head_survival") is None or entry.get("mlp_survival") is None:
        raise ValueError(f"{result['_path']}: the {ticket} ticket lacks head_survival/mlp_survival")
    return np.asarray(entry["head_survival"], dtype=float), np.asarray(entry["mlp_survival"], dtype=float)


def _check_same_shape(group: list[dict[str, Any]]) -> tuple[int, int]:
    shapes = {(r["num_layers"], r["num_heads"]) for r in group}
    if len(shapes) > 1:
        raise ValueError(f"runs of one model disagree on its shape {sorted(shapes)}: {group[0]['_path']}")
    return shapes.pop()


def stability_rows(key: GroupKey, group: list[dict[str, Any]]) -> list[list[Any]]:
    """Agreement across seeds of the good head masks and good MLP masks of one structured group."""
    heads, mlps = zip(*(structured_masks(r) for r in group))
    rows = []
    for component, masks in (("heads", np.stack([h.ravel() for h in heads])), ("mlps", np.stack(mlps))):
        q, p = stability.cochrans_q(masks)
        rows.append(
            [
                *key,
                component,
                masks.shape[0],
                masks.shape[1],
                float(masks.sum(axis=1).mean()),
                stability.intersection_over_union(masks),
                stability.mean_pairwise_jaccard(masks),
                stability.krippendorff_alpha_nominal(masks),
                q,
                p,
            ]
        )
    return rows


def super_masks(group: list[dict[str, Any]], seed: int) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Super-good/random/bad structured masks of one (model, mode, task), as mask-file dicts.

    Heads and MLPs go through ``lottery.tickets.super_tickets`` separately, so each super mask
    keeps as many heads and as many MLPs as the super-good one where the pools allow. Also
    returns, per component, the counts, pool sizes and notes about pools that were too small.
    """
    layers, heads_per_layer = _check_same_shape(group)
    heads, mlps = zip(*(structured_masks(r) for r in group))
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
        for kind in ("good", "random", "bad")
    }
    summary = [
        {
            "component": component,
            **{f"super_{kind}": tickets.counts[kind] for kind in ("good", "random", "bad")},
            **{f"{kind}_candidates": tickets.candidates[kind] for kind in ("random", "bad")},
            "notes": "; ".join(tickets.notes),
        }
        for component, tickets in per_component.items()
    ]
    return masks, summary


# --------------------------------------------------------------------------------------- figures


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # render with Agg without touching pyplot's global state
    return figure


def _annotate_grid(ax, values: np.ndarray, labels: np.ndarray, dark_below: float) -> None:
    for (row, col), value in np.ndenumerate(values):
        colour = "white" if value < dark_below else "black"
        ax.text(col, row, labels[row, col], ha="center", va="center", fontsize=8, color=colour)


def _layer_head_axes(ax, layers: int, heads: int) -> None:
    ax.set_xticks(range(heads), labels=[str(h + 1) for h in range(heads)])
    ax.set_yticks(range(layers), labels=[str(layer + 1) for layer in range(layers)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")


def _grid_and_bar(layers: int, heads: int) -> tuple[Figure, Any, Any]:
    figure = _new_figure(max(6.5, 0.5 * heads + 3.5), max(3.5, 0.42 * layers + 1.6))
    grid = figure.add_gridspec(1, 2, width_ratios=[heads, max(3.0, 0.3 * heads)])
    ax_heads = figure.add_subplot(grid[0])
    ax_mlps = figure.add_subplot(grid[1])
    ax_mlps.set_yticks(range(layers), labels=[str(layer + 1) for layer in range(layers)])
    ax_mlps.set_ylim(layers - 0.5, -0.5)  # layer 1 on top, as in the head grid
    ax_mlps.set_ylabel("layer")
    ax_mlps.set_title("MLPs")
    ax_mlps.grid(axis="x", alpha=0.3)
    return figure, ax_heads, ax_mlps


def structured_heatmap(model: str, mode: str, task: str, group: list[dict[str, Any]]) -> Figure:
    """Layers x heads grid of in how many seeds each head survived, and the same per MLP."""
    layers, heads = _check_same_shape(group)
    head_masks, mlp_masks = map(np.stack, zip(*(structured_masks(r) for r in group)))
    seeds = len(group)
    head_counts, mlp_counts = head_masks.sum(axis=0), mlp_masks.sum(axis=0)
    figure, ax_heads, ax_mlps = _grid_and_bar(layers, heads)
    cmap = matplotlib.colormaps["viridis"].resampled(seeds + 1)
    image = ax_heads.imshow(head_counts, cmap=cmap, vmin=-0.5, vmax=seeds + 0.5, aspect="auto")
    _annotate_grid(ax_heads, head_counts, head_counts.astype(str), dark_below=seeds / 2)
    _layer_head_axes(ax_heads, layers, heads)
    ax_heads.set_title("heads")
    colorbar = figure.colorbar(image, ax=ax_heads, ticks=range(seeds + 1), fraction=0.05, pad=0.02)
    colorbar.set_label("seeds in which it survived")
    ax_mlps.barh(range(layers), mlp_counts, color=cmap(mlp_counts / max(seeds, 1)), edgecolor="black")
    ax_mlps.set_xlim(0, seeds)
    ax_mlps.set_xticks(range(seeds + 1))
    ax_mlps.set_xlabel("seeds in which it survived")
    figure.suptitle(f"{task} — {model}, {mode} pruning: surviving heads and MLPs of good tickets ({_seeds(seeds)})")
    return figure


def magnitude_heatmap(model: str, mode: str, task: str, group: list[dict[str, Any]]) -> Figure:
    """Mean % of weights surviving per head (grid) and per MLP (bar, ± std over seeds)."""
    layers, heads = _check_same_shape(group)
    head_pct, mlp_pct = map(np.stack, zip(*(magnitude_survival(r) for r in group)))
    seeds = len(group)
    mean_heads = head_pct.mean(axis=0)
    figure, ax_heads, ax_mlps = _grid_and_bar(layers, heads)
    image = ax_heads.imshow(mean_heads, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    _annotate_grid(ax_heads, mean_heads, np.vectorize(lambda v: f"{v:.0f}")(mean_heads), dark_below=50)
    _layer_head_axes(ax_heads, layers, heads)
    ax_heads.set_title("heads")
    colorbar = figure.colorbar(image, ax=ax_heads, fraction=0.05, pad=0.02)
    colorbar.set_label("% of weights surviving (mean over seeds)")
    mlp_std = mlp_pct.std(axis=0, ddof=1) if seeds > 1 else None
    ax_mlps.barh(
        range(layers),
        mlp_pct.mean(axis=0),
        xerr=mlp_std,
        capsize=3,
        color=matplotlib.colormaps["viridis"](mlp_pct.mean(axis=0) / 100),
        edgecolor="black",
    )
    ax_mlps.set_xlim(0, 100)
    ax_mlps.set_xlabel("% of weights surviving")
    figure.suptitle(f"{task} — {model}, {mode} pruning: weights surviving in good tickets ({_seeds(seeds)})")
    return figure


def bar_chart(model: str, mode: str, task: str, part: pd.DataFrame) -> Figure:
    """Full model, then good/random/bad tickets pruned and retrained, with the majority baseline."""

    def stat(ticket: str, evaluation: str) -> tuple[float, float, int]:
        row = part[(part["ticket"] == ticket) & (part["eval"] == evaluation)]
        if row.empty:
            return float("nan"), float("nan"), 0
        return float(row["mean"].iloc[0]), float(row["std"].iloc[0]), int(row["n"].iloc[0])

    metric = part.loc[part["eval"] != "size", "metric"].iloc[0]
    figure = _new_figure(7.5, 5.0)
    ax = figure.add_subplot()
    colours = {"full": "0.45", "pruned": "tab:blue", "retrained": "tab:orange"}
    bars = [(0.0, "full", "dev", colours["full"], None)]
    for index, ticket in enumerate(TICKETS, start=1):
        for offset, evaluation in zip((-0.2, 0.2), EVALS):
            bars.append((index + offset, ticket, evaluation, colours[evaluation], evaluation))
    values = []
    labelled = set()
    for x, ticket, evaluation, colour, legend in bars:
        mean, std, n = stat(ticket, evaluation)
        if n == 0:
            ax.text(x, 0, "not\nrun", ha="center", va="bottom", fontsize=7, color="0.4")
            continue
        label = legend if legend and legend not in labelled else None
        labelled.add(legend)
        ax.bar(
            x,
            mean,
            width=0.4 if legend else 0.5,
            color=colour,
            label=label,
            yerr=None if math.isnan(std) else std,
            capsize=4,
            edgecolor="black",
            linewidth=0.5,
        )
        spread = 0.0 if math.isnan(std) else std
        ax.annotate(
            f"{mean:.2f}",
            (x, mean + spread if mean >= 0 else mean - spread),
            xytext=(0, 3 if mean >= 0 else -3),
            textcoords="offset points",
            ha="center",
            va="bottom" if mean >= 0 else "top",
            fontsize=7,
        )
        values += [mean - spread, mean + spread]
    majority, _, n_majority = stat("majority", "dev")
    if n_majority:
        ax.axhline(majority, color="black", linestyle="--", linewidth=1, label=f"majority baseline ({majority:.2f})")
        values.append(majority)
    full, _, n_full = stat("full", "dev")
    if n_full:
        ax.axhline(0.9 * full, color="0.45", linestyle=":", linewidth=1, label="90% of full")
    low, high = min([0.0, *values]), max([0.0, *values])
    ax.set_ylim(low - 0.05 * (high - low or 1), high + 0.12 * (high - low or 1))
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(range(len(TICKETS) + 1), labels=["full", *TICKETS])
    ax.set_ylabel(f"dev {metric}")
    figure.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    size, size_std, n_size = stat("good", "size")
    seeds = int(part["n"].max())
    title = f"{task} — {model}, {mode} pruning ({_seeds(seeds)})"
    if n_size:
        spread = "" if math.isnan(size_std) else f" ± {size_std:.1f}"
        title += f"\ngood subnetwork keeps {size:.1f}{spread}% of the non-embedding encoder parameters"
    ax.set_title(title)
    return figure


def overlap_heatmap(model: str, mode: str, names: list[str], matrix: np.ndarray) -> Figure:
    """Task x task Jaccard similarity of super-good head masks."""
    size = max(4.5, 0.7 * len(names) + 2.5)
    figure = _new_figure(size + 1, size)
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    _annotate_grid(ax, matrix, np.vectorize(lambda v: f"{v:.2f}")(matrix), dark_below=0.5)
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    figure.colorbar(image, ax=ax, fraction=0.05).set_label("Jaccard similarity of super-good heads")
    ax.set_title(f"Overlap of super-survivor heads between tasks\n{model}, {mode} pruning")
    return figure


# --------------------------------------------------------------------------------------- writing


def _write_text(path: Path, text: str) -> Path:
    return write_text(path, text)


def _write_figure(figure: Figure, stem: Path) -> list[Path]:
    return [
        atomic_write(
            stem.with_name(f"{stem.name}.{fmt}"), lambda handle, fmt=fmt: figure.savefig(handle, format=fmt, dpi=150)
        )
        for fmt in ("png", "pdf")
    ]


def _safe(name: str) -> str:
    """A name usable as one path component (model names may contain '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return str(value)


def write_report(directory: str | Path, *, seed: int = 0) -> list[Path]:
    """Write every table, figure, stability statistic and super mask into ``directory/report``.

    ``seed`` seeds the subsampling of super-random and super-bad masks. Returns the files written.
    """
    results = collect_results(directory)
    out = Path(directory) / REPORT_DIRNAME
    figures = out / "figures"
    summary = summary_table(results)
    written = [
        _write_text(out / "table.md", markdown_tables(summary)),
        _write_text(out / "table.csv", summary.to_csv(index=False)),
        _write_text(out / "table.tex", latex_tables(summary)),
    ]
    stability_table: list[list[Any]] = []
    super_good: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    super_table: list[dict[str, Any]] = []
    for key, group in group_results(results).items():
        model, mode, task = key
        name = f"{_safe(model)}_{_safe(task)}_{_safe(mode)}"
        part = summary[(summary["model"] == model) & (summary["mode"] == mode) & (summary["task"] == task)]
        written += _write_figure(bar_chart(model, mode, task, part), figures / f"bars_{name}")
        if mode.startswith("structured"):
            written += _write_figure(structured_heatmap(model, mode, task, group), figures / f"heatmap_{name}")
            stability_table += stability_rows(key, group)
            masks, counts = super_masks(group, seed)
            folder = out / "super" / _safe(model) / _safe(task) / _safe(mode)
            written += [write_json(folder / f"{kind}.json", mask) for kind, mask in masks.items()]
            super_table += [{"model": model, "mode": mode, "task": task, **row} for row in counts]
            super_good.setdefault((model, mode), {})[task] = np.asarray(masks["super_good"]["head_mask"]).ravel()
        else:
            written += _write_figure(magnitude_heatmap(model, mode, task, group), figures / f"heatmap_{name}")
    if stability_table:
        frame = pd.DataFrame(stability_table, columns=STABILITY_COLUMNS)
        text = (
            "# Stability of good structured masks across seeds\n\nIoU = |kept in all| / |kept in any|; "
            "Krippendorff's alpha (nominal; nan = no variation); Cochran's Q with its chi-square p.\n\n"
            + markdown_table(frame.map(_fmt).set_index("model"), index_name="model")
            + "\n"
        )
        written += [
            _write_text(out / "stability.csv", frame.to_csv(index=False)),
            _write_text(out / "stability.md", text),
        ]
    if super_table:
        written.append(_write_text(out / "super" / "summary.csv", pd.DataFrame(super_table).to_csv(index=False)))
    for (model, mode), per_task in super_good.items():
        if len(per_task) < 2:
            continue
        names, matrix = stability.overlap_matrix(per_task)
        name = f"overlap_heads_{_safe(model)}_{_safe(mode)}"
        csv = pd.DataFrame(matrix, index=names, columns=names).to_csv(index_label="task")
        written.append(_write_text(out / "overlap" / f"{name}.csv", csv))
        written += _write_figure(overlap_heatmap(model, mode, names, matrix), figures / name)
    return written


def push_to_wandb(report_dir: Path, written: Sequence[Path]) -> None:
    """Log the report's tables (wandb.Table) and PNG figures (wandb.Image) to a W&B "report" run.

    Offline unless WANDB_MODE says otherwise; the project is WANDB_PROJECT or "bert-lottery".
    """
    import wandb  # only on this code path: the report itself needs no W&B

    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "bert-lottery"),
        job_type="report",
        mode=os.environ.get("WANDB_MODE", "offline"),
    )

    def key(path: Path) -> str:
        return path.relative_to(report_dir).with_suffix("").as_posix()

    try:
        tables = {key(p): wandb.Table(dataframe=pd.read_csv(p)) for p in written if p.suffix == ".csv"}
        images = {key(p): wandb.Image(str(p)) for p in written if p.suffix == ".png"}
        run.log({**tables, **images})
    finally:
        wandb.finish()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lottery.report",
        description="Tables, figures, stability statistics and super-survivor masks of a sweep.",
    )
    parser.add_argument("dir", type=Path, help="sweep output folder; every results.json below it is read")
    parser.add_argument(
        "--wandb", action="store_true", help="also log tables and figures to a W&B run (job_type report)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for subsampling super-random and super-bad masks")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.dir, seed=args.seed)
    except (NoResultsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    out = args.dir / REPORT_DIRNAME
    print(f"Wrote {len(written)} files under {out}:")
    for path in written:
        print(f"  {path.relative_to(out)}")
    if args.wandb:
        push_to_wandb(out, written)
        print("Logged the tables and figures to W&B (job_type=report).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
