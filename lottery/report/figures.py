"""The report's figures: each function returns a matplotlib Figure (drawn with Agg, never touching
pyplot's global state); `write_figure` saves it as PNG and PDF.

Agreement figures (survival counts, task x task overlaps) hatch the cells that are not above what
independent random masks of the same sizes give (one-sided p >= `NOT_ABOVE_CHANCE_AT`), with a
legend entry saying so.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from lottery import stability
from lottery.io import atomic_write
from lottery.report.discover import Loaded
from lottery.report.masks import same_shape, structured_masks, weight_survival
from lottery.schema import EVALUATIONS

COMPONENT_TITLES = {"heads": "Heads", "mlps": "MLPs"}
NOT_ABOVE_CHANCE_AT = 0.05
HATCH = "///"


def _not_above_chance(p: np.ndarray) -> np.ndarray:
    """Cells whose one-sided p is at least NOT_ABOVE_CHANCE_AT (nan = no test: never hatched)."""
    p = np.asarray(p, dtype=float)
    return ~np.isnan(p) & (p >= NOT_ABOVE_CHANCE_AT)


# Greyed (a translucent white veil) and hatched: visible on every colour of the colour maps used.
VEIL = {"facecolor": (1.0, 1.0, 1.0, 0.45), "edgecolor": (0.0, 0.0, 0.0, 0.5), "hatch": HATCH, "linewidth": 0}


def _hatch_cells(ax, hatched: np.ndarray) -> None:
    for row, col in zip(*np.nonzero(hatched)):
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, **VEIL))


def _chance_legend(figure: Figure, what: str) -> None:
    figure.legend(handles=[Patch(**VEIL, label=f"not above chance ({what}; one-sided p >= {NOT_ABOVE_CHANCE_AT})")],
                  loc="outside lower left", fontsize=7, frameon=False)


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


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


def structured_heatmap(model: str, mode: str, task: str, group: list[Loaded]) -> Figure:
    """Layers x heads grid of in how many seeds each head survived, and the same per MLP.

    A unit is hatched when its count is not above chance: independent random masks of each seed's
    size would let it survive at least as often with probability >= NOT_ABOVE_CHANCE_AT (the exact
    Poisson-binomial tail, `stability.survival_counts_vs_chance`; per unit, uncorrected).
    """
    layers, heads = same_shape(group)
    head_masks, mlp_masks = map(np.stack, zip(*(structured_masks(r) for r in group)))
    seeds = len(group)
    head_chance = stability.survival_counts_vs_chance(list(head_masks.reshape(seeds, -1)))
    mlp_chance = stability.survival_counts_vs_chance(list(mlp_masks))
    head_counts, mlp_counts = head_masks.sum(axis=0), mlp_masks.sum(axis=0)
    figure, ax_heads, ax_mlps = _grid_and_bar(layers, heads)
    cmap = matplotlib.colormaps["viridis"].resampled(seeds + 1)
    image = ax_heads.imshow(head_counts, cmap=cmap, vmin=-0.5, vmax=seeds + 0.5, aspect="auto")
    _annotate_grid(ax_heads, head_counts, head_counts.astype(str), dark_below=seeds / 2)
    _hatch_cells(ax_heads, _not_above_chance(head_chance["p"]).reshape(layers, heads))
    _layer_head_axes(ax_heads, layers, heads)
    ax_heads.set_title(f"heads (chance: {head_chance['expected']:.1f} seeds each)")
    _chance_legend(figure, "random masks of each seed's size")
    colorbar = figure.colorbar(image, ax=ax_heads, ticks=range(seeds + 1), fraction=0.05, pad=0.02)
    colorbar.set_label("seeds in which it survived")
    hatched = _not_above_chance(mlp_chance["p"])
    ax_mlps.barh(range(layers), mlp_counts, color=cmap(mlp_counts / max(seeds, 1)), edgecolor="black")
    for layer in np.nonzero(hatched)[0]:
        ax_mlps.barh(layer, mlp_counts[layer], **VEIL)
    ax_mlps.axvline(mlp_chance["expected"], color="0.3", linestyle=":", linewidth=1)
    ax_mlps.set_xlim(0, seeds)
    ax_mlps.set_xticks(range(seeds + 1))
    ax_mlps.set_xlabel(f"seeds in which it survived\n(dotted: chance, {mlp_chance['expected']:.1f})")
    kept_in_all = int((head_counts == seeds).sum())
    chance_in_all = head_counts.size * float(np.prod(head_masks.reshape(seeds, -1).mean(axis=1)))
    figure.suptitle(f"{task} — {model}, {mode} pruning: surviving heads and MLPs of good tickets ({_seeds(seeds)})\n"
                    f"heads kept in every seed: {kept_in_all} (chance {chance_in_all:.1f})", fontsize=10)
    return figure


def magnitude_heatmap(model: str, mode: str, task: str, group: list[Loaded]) -> Figure:
    """Mean % of weights surviving per head (grid) and per MLP (bar, ± std over seeds)."""
    layers, heads = same_shape(group)
    head_pct, mlp_pct = map(np.stack, zip(*(weight_survival(r) for r in group)))
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

    metric = part.loc[~part["eval"].str.startswith("size"), "metric"].iloc[0]
    figure = _new_figure(7.5, 5.0)
    ax = figure.add_subplot()
    colours = {"full": "0.45", "pruned": "tab:blue", "retrained": "tab:orange"}
    bars = [(0.0, "full", "dev", colours["full"], None)]
    kinds = [k for k in dict.fromkeys(part["ticket"]) if k not in ("full", "majority")]
    for index, ticket in enumerate(kinds, start=1):
        for offset, evaluation in zip((-0.2, 0.2), EVALUATIONS):
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
    labels = ["full"]
    for kind in kinds:
        speedup, _, n_speed = stat(kind, "speedup_b64")
        labels.append(f"{kind}\n{speedup:.2f}x faster (b64)" if n_speed else kind)
    ax.set_xticks(range(len(kinds) + 1), labels=labels)
    ax.set_ylabel(f"dev {metric}")
    figure.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    size, size_std, n_size = stat("good", "size")
    seeds = int(part["n"].max())
    title = f"{task} — {model}, {mode} pruning ({_seeds(seeds)})"
    if n_size:
        spread = "" if math.isnan(size_std) else f" ± {size_std:.1f}"
        title += f"\ngood subnetwork: {size:.1f}{spread}% of all parameters kept (non-embedding; the paper's size)"
    ax.set_title(title)
    return figure


def overlap_heatmap(model: str, mode: str, names: list[str], matrix: np.ndarray, chance: np.ndarray | None = None,
                    p: np.ndarray | None = None) -> Figure:
    """Task x task Jaccard similarity of super-good head masks; with `chance` and `p`, each cell also
    shows its chance level and cells not above chance are hatched."""
    size = max(4.5, 0.7 * len(names) + 2.5)
    figure = _new_figure(size + 1, size)
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    labels = np.vectorize(lambda v: f"{v:.2f}")(matrix).astype(object)
    if chance is not None:
        for i, j in zip(*np.nonzero(~np.eye(len(names), dtype=bool))):
            labels[i, j] = f"{matrix[i, j]:.2f}\nch {chance[i, j]:.2f}"
    _annotate_grid(ax, matrix, labels, dark_below=0.5)
    if p is not None:
        _hatch_cells(ax, _not_above_chance(p))
        _chance_legend(figure, "ch = random masks of the same sizes")
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    figure.colorbar(image, ax=ax, fraction=0.05).set_label("Jaccard similarity of super-good heads")
    ax.set_title(f"Overlap of super-survivor heads between tasks\n{model}, {mode} pruning")
    return figure


def overlap_counts_heatmap(model: str, mode: str, component: str, names: list[str], mean: np.ndarray,
                           std: np.ndarray, chance: np.ndarray | None = None, p: np.ndarray | None = None) -> Figure:
    """The paper's task x task overlap: mean (± std over seeds) number of heads / MLPs kept in both
    tasks' good masks of the same seed; the diagonal is the number each task keeps. With `chance`
    and `p`, off-diagonal cells also show the expected count of random masks of the same sizes and
    cells not above it are hatched."""
    size = max(4.5, 0.8 * len(names) + 2.5)
    figure = _new_figure(size + 1, size)
    ax = figure.add_subplot()
    image = ax.imshow(mean, cmap="Purples", vmin=0)
    top = float(np.nanmax(mean)) if mean.size else 1.0
    labels = np.empty(mean.shape, dtype=object)
    for (i, j), value in np.ndenumerate(mean):
        spread = "" if np.isnan(std[i, j]) else f"\n±{std[i, j]:.1f}"
        expected = "" if chance is None or i == j else f"\nch {chance[i, j]:.1f}"
        labels[i, j] = f"{value:.1f}{spread}{expected}"
    _annotate_grid(ax, -mean, labels, dark_below=-top / 2)
    if p is not None:
        _hatch_cells(ax, _not_above_chance(p))
        _chance_legend(figure, "ch = random masks of the same sizes")
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    figure.colorbar(image, ax=ax, fraction=0.05).set_label(f"{component} kept in both (mean over seeds)")
    ax.set_title(f"{COMPONENT_TITLES.get(component, component)} kept in both tasks' good tickets, same seed\n"
                 f"{model}, {mode}")
    return figure


def write_figure(figure: Figure, stem: Path) -> list[Path]:
    return [
        atomic_write(stem.with_name(f"{stem.name}.{fmt}"),
                     lambda handle, fmt=fmt: figure.savefig(handle, format=fmt, dpi=150))
        for fmt in ("png", "pdf")
    ]


def safe_name(name: str) -> str:
    """A name usable as one path component (model names may contain '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))
