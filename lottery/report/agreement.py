"""How much good structured masks agree, each figure beside what chance gives for masks of the same
sizes: across the seeds of a variant (the paper's stability statistics), and between runs on the
same fine-tuned models that differ only in protocol keys (the protocol comparison, decomposed
per key)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from lottery import stability
from lottery.report.discover import GroupKey, Loaded, _flatten
from lottery.report.masks import structured_masks
from lottery.schema import Results

# Every permutation p-value in the report: this many draws from numpy's default_rng(PERMUTATION_SEED),
# so the report is the same file for the same results.
PERMUTATIONS = 10_000
PERMUTATION_SEED = 0
STATISTICS = (("mean_jaccard", "jaccard"), ("iou", "iou"), ("kept_in_all", "kept_in_all"),
              ("krippendorff_alpha", "alpha"))
STABILITY_COLUMNS = ["model", "variant", "task", "component", "n_seeds", "n_elements", "mean_kept",
                     *(name for statistic, short in STATISTICS
                       for name in (statistic, f"{short}_chance", f"{short}_excess", f"{short}_p")),
                     "cochran_q", "cochran_p"]
COMPONENTS = ("heads", "mlps")


def good_masks(group: list[Loaded]) -> dict[str, np.ndarray]:
    """{"heads": [seeds, L*H], "mlps": [seeds, L]}: the group's good structured masks, flat."""
    heads, mlps = zip(*(structured_masks(run) for run in group))
    return {"heads": np.stack([h.ravel() for h in heads]), "mlps": np.stack(mlps)}


def stability_rows(key: GroupKey, group: list[Loaded]) -> list[list[Any]]:
    """Agreement across seeds of the good head masks and good MLP masks of one structured group,
    each statistic with its chance level, excess and permutation p (`stability.agreement_vs_chance`)."""
    rows = []
    for component, masks in good_masks(group).items():
        q, p = stability.cochrans_q(masks)
        chance = stability.agreement_vs_chance(list(masks), PERMUTATIONS, PERMUTATION_SEED)
        values = [chance[statistic][field] for statistic, _ in STATISTICS
                  for field in ("observed", "chance", "excess", "p")]
        rows.append([*key, component, masks.shape[0], masks.shape[1], float(masks.sum(axis=1).mean()),
                     *values, q, p])
    return rows


# ------------------------------------------------------------------------ protocol comparison

def protocol_differences(first: Results, second: Results) -> tuple[str, ...] | None:
    """The protocol keys (names in results.json's ``protocol.keys``) in which two runs differ, when
    nothing else in their settings does apart from the seed; None when something else differs.

    The one place that decides which settings belong to a protocol key: a setting that differs
    between the runs must differ exactly as one of the differing protocol keys does (the same pair
    of values), so no list of setting names or suffixes is needed. When the settings carry their
    protocol keys' paths in one list, this becomes "the differing settings are all protocol paths".
    """
    keys_a, keys_b = first.protocol.get("keys") or {}, second.protocol.get("keys") or {}
    if not keys_a or set(keys_a) != set(keys_b):
        return None
    differing = tuple(sorted(key for key in keys_a if keys_a[key] != keys_b[key]))
    values = {(keys_a[key], keys_b[key]) for key in differing}
    a, b = _flatten(first.settings), _flatten(second.settings)
    for path in sorted((set(a) | set(b)) - {"seed"}):
        if a.get(path) != b.get(path) and (a.get(path), b.get(path)) not in values:
            return None
    return differing


def _is_preset(results: Results) -> bool:
    return results.protocol.get("name") not in (None, "custom")


def protocol_pairs(groups: dict[GroupKey, list[Loaded]]) -> list[tuple[GroupKey, GroupKey, tuple[str, ...]]]:
    """Pairs of structured groups of the same (model, task, mode) whose settings differ only in
    protocol keys: two presets (`paper` first), or a preset and a run flipped from it (labelled
    `custom`, with that preset as its `protocol.preset`): (first, second, the keys that differ)."""
    buckets: dict[tuple, list[GroupKey]] = {}
    for key, group in groups.items():
        results = group[0].results
        if results.pruning == "structured" and results.protocol.get("keys"):
            buckets.setdefault((key[0], key[2], results.mode), []).append(key)
    pairs = []
    for keys in buckets.values():
        keys = sorted(keys, key=lambda k: (not _is_preset(groups[k][0].results),
                                          groups[k][0].results.protocol.get("name") != "paper", k[1]))
        for first, second in itertools.combinations(keys, 2):
            a, b = groups[first][0].results, groups[second][0].results
            if not _is_preset(a) or not (_is_preset(b) or b.protocol.get("preset") == a.protocol.get("name")):
                continue
            differing = protocol_differences(a, b)
            if differing:
                pairs.append((first, second, differing))
    return pairs


def _flips(a: Results, b: Results, keys: tuple[str, ...]) -> str:
    return ", ".join(f"{key}: {a.protocol['keys'][key]} -> {b.protocol['keys'][key]}" for key in keys)


def _noise_floor(masks: np.ndarray) -> tuple[float, float]:
    """Seed-to-seed mean pairwise Jaccard of one group's good masks, and its exact chance level."""
    sizes, n = masks.sum(axis=1), masks.shape[1]
    if len(masks) < 2:
        return float("nan"), float("nan")
    chance = np.mean([stability.chance_jaccard(sizes[i], sizes[j], n)
                      for i, j in itertools.combinations(range(len(masks)), 2)])
    return stability.mean_pairwise_jaccard(masks), float(chance)


def protocol_comparison(groups: dict[GroupKey, list[Loaded]], summary: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per pair of `protocol_pairs` and shared seed: the Jaccard of the two runs' good head (and MLP)
    masks on the same fine-tuned model, its chance level (`chance_jaccard` of their sizes), excess
    and permutation p; and each group's noise floor (its seeds' mean pairwise Jaccard). Returns the
    per-seed frame and a Markdown text that summarises each pair over its seeds (one key flipped
    from a preset first) and sets the two tables' rows side by side."""
    rows, sections, summaries = [], [], []
    for first, second, keys in protocol_pairs(groups):
        a, b = groups[first][0].results, groups[second][0].results
        by_seed = [{run.results.seed: run for run in groups[k]} for k in (first, second)]
        seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
        if not seeds:
            continue
        floors = {c: (_noise_floor(good_masks(groups[first])[c]), _noise_floor(good_masks(groups[second])[c]))
                  for c in COMPONENTS}
        pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {c: [] for c in COMPONENTS}
        for seed in seeds:
            (h1, m1), (h2, m2) = structured_masks(by_seed[0][seed]), structured_masks(by_seed[1][seed])
            row = {"model": first[0], "task": first[2], "first": first[1], "second": second[1],
                   "keys": ",".join(keys), "flipped": _flips(a, b, keys), "seed": seed}
            for component, (x, y) in (("heads", (h1.ravel(), h2.ravel())), ("mlps", (m1, m2))):
                pairs[component].append((x, y))
                result = stability.paired_jaccard_vs_chance([(x, y)], PERMUTATIONS, PERMUTATION_SEED)
                row |= {f"{component}_jaccard": result["observed"], f"{component}_chance": result["chance"],
                        f"{component}_excess": result["excess"], f"{component}_p": result["p"],
                        f"{component}_kept_first": int(x.sum()), f"{component}_kept_second": int(y.sum()),
                        f"{component}_noise_first": floors[component][0][0],
                        f"{component}_noise_second": floors[component][1][0]}
            rows.append(row)
        pooled = {c: stability.paired_jaccard_vs_chance(pairs[c], PERMUTATIONS, PERMUTATION_SEED) for c in COMPONENTS}
        summaries.append({"model": first[0], "task": first[2], "first": first[1], "second": second[1],
                          "keys": keys, "flipped": _flips(a, b, keys), "seeds": len(seeds),
                          "single": len(keys) == 1 and _is_preset(a), "pooled": pooled, "floors": floors})
        side = _side_by_side(summary, first, second, [first[1], second[1]])
        if side is not None:
            sections.append((first, second, side))
    return pd.DataFrame(rows), _markdown(summaries, sections)


def _side_by_side(summary: pd.DataFrame, first: GroupKey, second: GroupKey, names: list[str]) -> pd.DataFrame | None:
    def part(key: GroupKey) -> pd.Series:
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


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _against_chance(result: dict[str, float]) -> str:
    return f"{result['observed']:.2f} (chance {result['chance']:.2f}, {result['excess']:+.2f}, p {_p(result['p'])})"


def _floor(values: tuple[float, float]) -> str:
    observed, chance = values
    return "-" if math.isnan(observed) else f"{observed:.2f} (chance {chance:.2f})"


def _summary_table(summaries: list[dict]) -> str:
    from lottery.report.tables import markdown_table

    table = pd.DataFrame({
        "heads Jaccard": [_against_chance(s["pooled"]["heads"]) for s in summaries],
        "heads noise floor (first; second)": [f"{_floor(s['floors']['heads'][0])}; {_floor(s['floors']['heads'][1])}"
                                              for s in summaries],
        "MLPs Jaccard": [_against_chance(s["pooled"]["mlps"]) for s in summaries],
        "MLPs noise floor (first; second)": [f"{_floor(s['floors']['mlps'][0])}; {_floor(s['floors']['mlps'][1])}"
                                             for s in summaries],
        "seeds": [s["seeds"] for s in summaries],
    }, index=[f"{s['model']} / {s['task']} / {s['first']} vs {s['second']} / {s['flipped']}" for s in summaries])
    return markdown_table(table, "model / task / first vs second / keys flipped")


def _markdown(summaries: list[dict], sections: list) -> str:
    from lottery.report.tables import markdown_table

    intro = (
        "Runs of the same model, task, fine-tuned models (seeds) and settings that differ only in protocol keys. "
        "Jaccard = |kept in both| / |kept in either| of the two runs' good masks on the same fine-tuned model, "
        "mean over the seeds they share; chance = the same for independent random masks of the same sizes "
        "(exact); p = one-sided permutation p-value that the masks agree at least as much as such random masks "
        f"({PERMUTATIONS} draws). Noise floor = the mean pairwise Jaccard of one run's good masks across its "
        "seeds (different fine-tunes), with its chance level. Reading: Jaccard 1 = the key does not change the "
        "good masks; near the noise floor = it changes them as much as another fine-tuning seed does; near "
        "chance = the two masks are as unrelated as random ones.")
    lines = ["# Protocol comparison", "", intro]
    single = [s for s in summaries if s["single"]]
    other = [s for s in summaries if not s["single"]]
    if single:
        lines += ["", "## One protocol key flipped from a preset", "",
                  "The change in the good masks that each key makes alone (`+sweep=protocol_keys`).", "",
                  _summary_table(single)]
    if other:
        lines += ["", "## Several keys at once", "", _summary_table(other)]
    if not summaries:
        lines += ["", "No two runs of the same fine-tuned models differ only in protocol keys."]
    for first, second, side in sections:
        lines += ["", f"## {first[0]} {first[2]}: {first[1]} vs {second[1]}", "", markdown_table(side, "row")]
    return "\n".join(lines) + "\n"
