"""Figures for attention-pattern types: example maps per type, type shares among head sets, and
surviving against pruned heads (`lottery.patterns_stats`).

Both return a `matplotlib.figure.Figure` drawn with Agg and never touch pyplot's global state;
saving is the caller's job. Layers and heads are numbered from 1, as in the report's figures and
in hand-label files.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lottery.patterns import TYPES, AttentionFeatures, PatternError, type_counts
from lottery.patterns_stats import TypeContrast


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _share(value: float) -> str:
    """A feature for a title; the block share is NaN (shown "-") where no example was a pair."""
    return "-" if np.isnan(value) else f"{value:.2f}"


def _spread_pick(items: list, count: int) -> list:
    """`count` items evenly spaced over the list (first and last included): a fair sample, not the
    most typical heads."""
    if len(items) <= count or count < 2:
        return items[:count]
    step = (len(items) - 1) / (count - 1)
    return [items[round(k * step)] for k in range(count)]


def type_examples_figure(
    features: AttentionFeatures,
    types: Sequence[Sequence[str]],
    per_type: int = 3,
    example: int = 0,
    tokens: Sequence[str] | None = None,
) -> Figure:
    """A grid with one row per type and up to `per_type` heads of that type, each showing its map
    on example `example` of `features.maps`; titles give the head and its averaged features.

    Heads are picked evenly over the layer-ordered heads of each type. `tokens` (e.g. from
    ``tokenizer.convert_ids_to_tokens(features.map_input_ids[example])``) label the axes.
    """
    if not 0 <= example < len(features.maps):
        raise PatternError(f"example {example} has no kept map: {len(features.maps)} kept (attention_features keep_maps)")
    maps = features.maps[example]
    size = maps.shape[-1]
    if tokens is not None and len(tokens) != size:
        raise PatternError(f"{len(tokens)} tokens given for a map over {size} tokens")
    heads_by_type = {name: [] for name in TYPES}
    for layer, row in enumerate(types):
        for head, name in enumerate(row):
            heads_by_type[name].append((layer, head))
    cell = 2.2 if tokens is None else max(2.2, 0.09 * size + 0.6)
    figure = _new_figure(cell * per_type + 1.2, cell * len(TYPES) + 0.4)
    axes = figure.subplots(len(TYPES), per_type, squeeze=False)
    for row, name in enumerate(TYPES):
        picked = _spread_pick(heads_by_type[name], per_type)
        for col in range(per_type):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"{name}\n({len(heads_by_type[name])} heads)", fontsize=9)
            if col >= len(picked):
                ax.set_frame_on(False)
                if col == 0:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, fontsize=9)
                continue
            layer, head = picked[col]
            # Each map on its own scale (0 to its largest weight): a [CLS] column would otherwise
            # leave the rest of a head's pattern too dark to see.
            ax.imshow(maps[layer, head], cmap="viridis", vmin=0.0, vmax=float(maps[layer, head].max()), interpolation="nearest")
            ax.set_title(
                f"L{layer + 1} H{head + 1}  v {features.vertical[layer, head]:.2f} d {features.diagonal[layer, head]:.2f}\n"
                f"b {_share(features.block[layer, head])} c {features.concentration[layer, head]:.2f}",
                fontsize=7,
            )
            if tokens is not None:
                ax.set_xticks(range(size), labels=list(tokens), rotation=90, fontsize=4)
                ax.set_yticks(range(size), labels=list(tokens), fontsize=4)
    figure.suptitle("Example attention maps per pattern type (rows: queries, columns: keys; each map scaled to its maximum)", fontsize=10)
    return figure


def type_shares_figure(
    groups: Mapping[str, Sequence[str]] | Mapping[str, Mapping[str, Sequence[str]]],
    title: str | None = None,
) -> Figure:
    """Grouped bars of the share of each type among sets of heads.

    `groups` maps a set's name to its heads' types, e.g. {"all heads": [...], "good survivors":
    [...], "super-survivors": [...]}; or maps panel names to such dicts (e.g. {"pre-trained":
    {...}, "fine-tuned": {...}}), drawn side by side with a shared y axis. Legends give each
    set's number of heads.
    """
    if not groups:
        raise PatternError("no head sets to plot")
    nested = all(isinstance(value, Mapping) for value in groups.values())
    panels = dict(groups) if nested else {"": groups}
    figure = _new_figure(max(5.0, 4.2 * len(panels)), 3.6)
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    positions = np.arange(len(TYPES))
    for ax, (panel, sets) in zip(axes, panels.items(), strict=True):
        width = 0.8 / max(1, len(sets))
        for index, (name, head_types) in enumerate(sets.items()):
            counts = type_counts(head_types)
            total = sum(counts.values())
            shares = [counts[t] / total if total else 0.0 for t in TYPES]
            ax.bar(positions - 0.4 + width * (index + 0.5), shares, width, label=f"{name} (n={total})")
        ax.set_xticks(positions, labels=[t.replace("+", "+\n") for t in TYPES], fontsize=8)
        ax.set_title(panel, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("share of heads")
    axes[0].set_ylim(0, 1)
    if title:
        figure.suptitle(textwrap.fill(title, width=int(13 * figure.get_figwidth())), fontsize=10)
    return figure


def type_contrast_figure(contrasts: Mapping[str, TypeContrast], title: str | None = None, note: str | None = None
                         ) -> Figure:
    """Surviving against pruned heads, one column per panel (e.g. "pre-trained", "fine-tuned").

    Top: the share of each type among the survivors and among the pruned heads (means over seeds).
    Bottom: survivors' share minus pruned heads' share, pooled over seeds (black), each seed's
    (small dots), and the 95% range of the pooled difference under random masks of the same sizes
    (grey band); the pooled two-sided p above each type. `note` is printed under the panels.
    """
    if not contrasts:
        raise PatternError("no contrasts to plot")
    figure = _new_figure(max(5.5, 4.6 * len(contrasts)), 6.4)
    axes = figure.subplots(2, len(contrasts), squeeze=False, sharex=True)
    positions = np.arange(len(TYPES))
    for column, (panel, contrast) in enumerate(contrasts.items()):
        top, bottom = axes[0][column], axes[1][column]
        seeds = int(np.count_nonzero(~np.isnan(contrast.difference[:, 0])))
        for offset, values, label in ((-0.2, contrast.pooled_survivors_share, "survivors"),
                                      (0.2, contrast.pooled_pruned_share, "pruned")):
            top.bar(positions + offset, np.nan_to_num(values), 0.4, label=label)
        top.set_title(f"{panel} ({seeds} seed{'s' if seeds != 1 else ''})", fontsize=10)
        top.set_ylim(0, 1)
        top.grid(axis="y", alpha=0.3)
        top.legend(fontsize=7)
        bottom.axhline(0, color="black", linewidth=0.5)
        band = contrast.pooled_null_high - contrast.pooled_null_low
        bottom.bar(positions, np.nan_to_num(band), 0.5, bottom=np.nan_to_num(contrast.pooled_null_low), color="0.85",
                   label="95% under random masks")
        for index, row in enumerate(contrast.difference):
            bottom.plot(positions, row, "o", color="tab:blue", markersize=3, alpha=0.6,
                        label="each seed" if index == 0 else None)
        bottom.plot(positions, contrast.pooled_difference, "D", color="black", markersize=5, label="pooled")
        low = np.nanmin([np.nanmin(contrast.difference, initial=0), np.nanmin(contrast.pooled_null_low, initial=0)])
        high = np.nanmax([np.nanmax(contrast.difference, initial=0), np.nanmax(contrast.pooled_null_high, initial=0)])
        span = max(high - low, 0.1)
        bottom.set_ylim(low - 0.1 * span, high + 0.25 * span)
        for x, p in zip(positions, contrast.pooled_p, strict=True):
            if not np.isnan(p):
                bottom.text(x, high + 0.08 * span, f"p {p:.2g}", ha="center", fontsize=7)
        bottom.set_xticks(positions, labels=[t.replace("+", "+\n") for t in TYPES], fontsize=8)
        bottom.grid(axis="y", alpha=0.3)
        bottom.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("share of heads")
    axes[1][0].set_ylabel("survivors - pruned")
    if title:
        figure.suptitle(textwrap.fill(title, width=int(13 * figure.get_figwidth())), fontsize=10)
    if note:
        figure.supxlabel(textwrap.fill(note, width=int(16 * figure.get_figwidth())), fontsize=7)
    return figure
