"""How head importance moves during a structured search, from its search/iter_NNN.json files.

Per run, one figure with three panels:
- the Spearman correlation of the heads' importance between consecutive iterations (over the
  heads still unmasked in both): how much each step re-ranks the heads it leaves;
- where the good ticket's survivors ranked at iteration 0 (the unmasked model): the share of
  survivors among the heads of each decile of iteration-0 importance, 1 = least important;
- the layers x heads grid annotated with the iteration at which each head was pruned ("·" for
  survivors of the good ticket).
"""

from __future__ import annotations

import itertools

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from lottery.errors import CorruptFileError
from lottery.io import read_json
from lottery.report.discover import Loaded


def iterations(run: Loaded) -> list[dict]:
    """The run's search iterations (mask, importance, score), in order."""
    paths = sorted((run.folder / "search").glob("iter_*.json"))
    if not paths:
        raise CorruptFileError(f"{run.folder / 'search'} has no iter_*.json (the search's record)")
    return [read_json(path) for path in paths]


def consecutive_spearman(records: list[dict]) -> list[float]:
    """Spearman correlation of head importance between iteration i and i+1, over heads unmasked in both."""
    values = []
    for before, after in itertools.pairwise(records):
        alive = (np.asarray(before["head_mask"]).ravel() > 0) & (np.asarray(after["head_mask"]).ravel() > 0)
        a = np.asarray(before["head_importance"]).ravel()[alive]
        b = np.asarray(after["head_importance"]).ravel()[alive]
        values.append(float(spearmanr(a, b)[0]) if alive.sum() > 2 and a.std() > 0 and b.std() > 0 else float("nan"))
    return values


def pruned_at(records: list[dict], good_head: np.ndarray) -> np.ndarray:
    """Per head, the first iteration whose mask no longer has it, among the masks on the way to the
    good ticket (passing ones); -1 for survivors of the good ticket."""
    result = np.full(good_head.shape, -1, dtype=int)
    for record in records:
        if not record.get("passed", True):
            continue
        mask = np.asarray(record["head_mask"])
        newly = (mask == 0) & (result == -1) & (good_head == 0)
        result[newly] = record["iteration"]
    return result


def survivor_share_by_initial_rank(records: list[dict], good_head: np.ndarray, bins: int = 10) -> np.ndarray:
    """Share of good-ticket survivors in each `bins`-quantile of iteration-0 importance (low to high)."""
    initial = np.asarray(records[0]["head_importance"]).ravel()
    order = np.argsort(initial, kind="stable")
    survived = good_head.ravel()[order] > 0
    return np.array([chunk.mean() if chunk.size else np.nan for chunk in np.array_split(survived, bins)])


def evolution_figure(run: Loaded, good_head: np.ndarray) -> Figure:
    from lottery.report.figures import _annotate_grid, _layer_head_axes, _new_figure

    records = iterations(run)
    figure = _new_figure(15, 4.2)
    grid = figure.add_gridspec(1, 3, width_ratios=[1, 1, 1.4])
    ax_corr, ax_rank, ax_grid = (figure.add_subplot(grid[i]) for i in range(3))
    correlation = consecutive_spearman(records)
    ax_corr.plot(range(1, len(correlation) + 1), correlation, marker="o")
    ax_corr.set_xlabel("iteration i")
    ax_corr.set_ylabel("Spearman(importance at i-1, at i)")
    ax_corr.set_ylim(-1.05, 1.05)
    ax_corr.axhline(0, color="0.6", linewidth=0.5)
    ax_corr.set_title("re-ranking between consecutive iterations")
    shares = survivor_share_by_initial_rank(records, good_head)
    ax_rank.bar(range(1, len(shares) + 1), shares, color="tab:green", edgecolor="black", linewidth=0.5)
    ax_rank.set_xlabel("decile of importance at iteration 0 (1 = least important)")
    ax_rank.set_ylabel("share that survived in the good ticket")
    ax_rank.set_ylim(0, 1)
    ax_rank.set_title("survivors by their first ranking")
    when = pruned_at(records, good_head)
    layers, heads = when.shape
    shown = np.where(when < 0, np.nan, when).astype(float)
    image = ax_grid.imshow(shown, cmap="magma_r", aspect="auto")
    labels = np.where(when < 0, "·", when.astype(str))
    latest = max(1.0, float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0)
    _annotate_grid(ax_grid, -np.nan_to_num(shown, nan=0.0), labels, dark_below=-latest / 2)  # white on dark cells
    _layer_head_axes(ax_grid, layers, heads)
    figure.colorbar(image, ax=ax_grid, fraction=0.05).set_label("iteration at which it was pruned")
    ax_grid.set_title("when each head was pruned (· = survivor)")
    results = run.results
    figure.suptitle(f"{results.task} — {results.model}, {results.variant}, seed {results.seed}: importance during the search "
                    f"({len(records)} iterations)")
    return figure
