"""How much good structured masks agree: across the seeds of a variant (the paper's stability
statistics), and between two protocols on the same fine-tuned model (the protocol comparison)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lottery import stability
from lottery.report.discover import GroupKey, Loaded
from lottery.report.masks import structured_masks
from lottery.schema import is_protocol_setting

STABILITY_COLUMNS = ["model", "variant", "task", "component", "n_seeds", "n_elements", "mean_kept", "iou",
                     "mean_jaccard", "krippendorff_alpha", "cochran_q", "cochran_p"]


def stability_rows(key: GroupKey, group: list[Loaded]) -> list[list[Any]]:
    """Agreement across seeds of the good head masks and good MLP masks of one structured group."""
    heads, mlps = zip(*(structured_masks(run) for run in group))
    rows = []
    for component, masks in (("heads", np.stack([h.ravel() for h in heads])), ("mlps", np.stack(mlps))):
        q, p = stability.cochrans_q(masks)
        rows.append([*key, component, masks.shape[0], masks.shape[1], float(masks.sum(axis=1).mean()),
                     stability.intersection_over_union(masks), stability.mean_pairwise_jaccard(masks),
                     stability.krippendorff_alpha_nominal(masks), q, p])
    return rows


def _protocol_free(settings: dict[str, Any], mode: str) -> dict[str, Any]:
    """A run's settings without the protocol keys: two runs equal here differ only in protocol."""
    from lottery.report.discover import _flatten

    return {k: v for k, v in _flatten(settings).items() if not is_protocol_setting(k) and k != "seed"}


def protocol_pairs(groups: dict[GroupKey, list[Loaded]]) -> list[tuple[GroupKey, GroupKey]]:
    """Pairs of structured groups of the same (model, task) whose settings differ only in protocol keys."""
    buckets: dict[tuple, list[GroupKey]] = {}
    for key, group in groups.items():
        results = group[0].results
        if results.pruning != "structured" or not results.protocol.get("keys"):
            continue
        free = repr(sorted(_protocol_free(results.settings, results.mode).items()))
        buckets.setdefault((key[0], key[2], results.mode, free), []).append(key)
    pairs = []
    for keys in buckets.values():
        keys = sorted(keys, key=lambda k: groups[k][0].results.protocol["name"] != "paper")
        pairs += [(keys[i], keys[j]) for i in range(len(keys)) for j in range(i + 1, len(keys))]
    return pairs


def protocol_comparison(groups: dict[GroupKey, list[Loaded]], summary: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per task and seed, the Jaccard similarity of the two protocols' good head (and MLP) masks,
    and the table rows side by side. Returns the per-seed frame and a Markdown text."""
    rows, sections = [], []
    for first, second in protocol_pairs(groups):
        names = [groups[k][0].results.protocol["name"] for k in (first, second)]
        by_seed = [{run.results.seed: run for run in groups[k]} for k in (first, second)]
        for seed in sorted(set(by_seed[0]) & set(by_seed[1])):
            (h1, m1), (h2, m2) = structured_masks(by_seed[0][seed]), structured_masks(by_seed[1][seed])
            rows.append({"model": first[0], "task": first[2], "first": first[1], "second": second[1], "seed": seed,
                         "heads_jaccard": stability.jaccard(h1.ravel(), h2.ravel()),
                         "mlps_jaccard": stability.jaccard(m1, m2),
                         "heads_kept_first": int(h1.sum()), "heads_kept_second": int(h2.sum()),
                         "mlps_kept_first": int(m1.sum()), "mlps_kept_second": int(m2.sum())})
        side = _side_by_side(summary, first, second, names)
        if side is not None:
            sections.append((first, second, names, side))
    frame = pd.DataFrame(rows)
    return frame, _markdown(frame, sections)


def _side_by_side(summary: pd.DataFrame, first: GroupKey, second: GroupKey, names: list[str]) -> pd.DataFrame | None:
    def part(key: GroupKey) -> pd.DataFrame:
        rows = summary[(summary["model"] == key[0]) & (summary["variant"] == key[1]) & (summary["task"] == key[2])]
        cells = {}
        for row in rows.itertuples():
            digits = 1 if row.eval.startswith("size") else 3
            text = f"{row.mean:.{digits}f}" + ("" if np.isnan(row.std) else f" ± {row.std:.{digits}f}")
            cells[f"{row.ticket} {row.eval}"] = text
        return pd.Series(cells, dtype=object)

    a, b = part(first), part(second)
    if a.empty or b.empty:
        return None
    return pd.DataFrame({names[0]: a, names[1]: b}).fillna("-")


def _markdown(frame: pd.DataFrame, sections: list) -> str:
    from lottery.report.tables import markdown_table

    intro = ("Runs of the same model, task and settings that differ only in the protocol keys (importance "
             "accumulation, phase change, random-ticket sampling, magnitude exit). Jaccard = |kept in both| / "
             "|kept in either| of the two protocols' good masks on the same fine-tuned model (same seed).")
    lines = ["# Protocol comparison", "", intro]
    if not frame.empty:
        means = frame.groupby(["model", "task", "first", "second"])[["heads_jaccard", "mlps_jaccard"]].agg(["mean", "std", "count"])
        lines += ["", "## Mask agreement (mean ± std over seeds)", ""]

        def mean_std(row: pd.Series, column: str) -> str:  # one seed has no spread
            mean, std = row[(column, "mean")], row[(column, "std")]
            return f"{mean:.2f}" + ("" if np.isnan(std) else f" ± {std:.2f}")

        table = pd.DataFrame({
            "heads Jaccard": [mean_std(r, "heads_jaccard") for _, r in means.iterrows()],
            "MLPs Jaccard": [mean_std(r, "mlps_jaccard") for _, r in means.iterrows()],
            "seeds": [int(r[("heads_jaccard", "count")]) for _, r in means.iterrows()],
        }, index=[" / ".join(map(str, i)) for i in means.index])
        lines.append(markdown_table(table, "model / task / first / second"))
    for first, second, names, side in sections:
        lines += ["", f"## {first[0]} {first[2]}: {first[1]} vs {second[1]}", "", markdown_table(side, "row")]
    return "\n".join(lines) + "\n"
