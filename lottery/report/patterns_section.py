"""The attention-pattern section: `experiment=patterns` runs (patterns.json) joined with the good
tickets of the structured runs of the same model, task and seeds.

Per (model, structured variant, task): the share of each pattern type among all heads, among the
good tickets' survivors (pooled over seeds) and among the super-survivors (kept in every seed),
for the pre-trained model (its types are the same for every seed, so every seed's good ticket
counts) and the fine-tuned model (each classified seed's types for that seed's survivors), as a
figure and a CSV; per (model, task) a grid of example maps per type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lottery.errors import CorruptFileError
from lottery.io import read_json, write_text
from lottery.patterns import TYPES, AttentionFeatures, type_counts, types_of
from lottery.patterns_figures import type_examples_figure, type_shares_figure
from lottery.report import figures
from lottery.report.discover import GroupKey, Loaded
from lottery.report.masks import structured_masks

PATTERNS_FILE = "patterns.json"


def find_patterns(directory: Path, exclude: Path) -> tuple[dict[tuple[str, str], dict[int, dict]], list[tuple[str, str]]]:
    """{(model, task): {seed: patterns.json content (+ "_folder")}} and the unreadable files."""
    found: dict[tuple[str, str], dict[int, dict]] = {}
    skipped = []
    excluded = exclude.resolve()
    for path in sorted(directory.rglob(PATTERNS_FILE)):
        if excluded in path.resolve().parents:
            continue
        try:
            data = read_json(path)
            found.setdefault((data["model"], data["task"]), {})[int(data["seed"])] = {**data, "_folder": path.parent}
        except (CorruptFileError, KeyError, TypeError, ValueError) as error:
            skipped.append((str(path), f"not a patterns.json ({error})"))
    return found, skipped


def same_finetune(patterns: dict | None, run: Loaded) -> bool:
    """Whether `patterns` classified the fine-tuned model that `run`'s tickets were found in (the
    same seed on another recipe, data or precision is another model)."""
    if patterns is None or "finetune_settings" not in patterns:
        return False
    settings = run.results.settings
    mode = settings.get("mode")
    return patterns["finetune_settings"] == {key: value for key, value in settings.items() if key not in ("mode", mode)}


def shares(patterns: dict[int, dict], group: list[Loaded]) -> dict[str, dict[str, list[str]]]:
    """{"pre-trained" | "fine-tuned": {"all heads" | "good survivors" | "super-survivors": [types]}}.

    The pre-trained model's types do not depend on the seed (the same weights read on the same dev
    examples in file order), so that panel counts the good tickets of every seed in the group,
    typed by one patterns.json; the fine-tuned panel only the seeds whose fine-tuned model was
    classified, and only where that is the model the seed's ticket was found in. Super-survivors
    are the heads kept by the good tickets of every seed in the group.
    """
    if not group or not patterns:
        return {}
    masks = {run.results.seed: structured_masks(run)[0] for run in group}
    super_mask = np.logical_and.reduce([mask > 0 for mask in masks.values()]).astype(int)
    pretrained = patterns[min(patterns)]["pretrained"]["types"]
    panels = {"pre-trained": {
        "all heads": [t for row in pretrained for t in row] * len(masks),
        "good survivors": [t for mask in masks.values() for t in types_of(pretrained, mask)],
        "super-survivors": types_of(pretrained, super_mask),
    }}
    tuned = {run.results.seed: patterns[run.results.seed]["finetuned"]["types"] for run in group
             if same_finetune(patterns.get(run.results.seed), run)}
    if tuned:
        panels["fine-tuned"] = {
            "all heads": [t for types in tuned.values() for row in types for t in row],
            "good survivors": [t for seed, types in tuned.items() for t in types_of(types, masks[seed])],
            "super-survivors": [t for types in tuned.values() for t in types_of(types, super_mask)],
        }
    return panels


def shares_table(panels: dict[str, dict[str, list[str]]]) -> pd.DataFrame:
    rows = []
    for panel, sets in panels.items():
        for name, types in sets.items():
            counts = type_counts(types)
            total = sum(counts.values())
            rows.append({"model_state": panel, "heads": name, "n": total,
                         **{t: (counts[t] / total if total else float("nan")) for t in TYPES}})
    return pd.DataFrame(rows)


def example_grid(patterns: dict[int, dict], which: str = "finetuned") -> figures.Figure | None:
    seed = min(patterns)
    data = patterns[seed]
    maps_file = Path(data["_folder"]) / f"maps_{which}.npz"
    if not maps_file.is_file():
        return None
    with np.load(maps_file) as stored:
        maps = [stored[f"map_{i}"] for i in range(sum(1 for k in stored.files if k.startswith("map_")))]
    # dtype=float: a block share stored as null (no sentence pairs, e.g. CoLA) is NaN again.
    features = AttentionFeatures(**{name: np.asarray(data[which]["features"][name], dtype=float) for name in
                                    ("vertical", "diagonal", "block", "concentration")}, maps=maps)
    figure = type_examples_figure(features, data[which]["types"])
    figure.suptitle(f"{data['task']} — {data['model']}, {which.replace('finetuned', 'fine-tuned')} (seed {seed}): "
                    "example attention maps per pattern type", fontsize=10)
    return figure


def write_patterns(directory: Path, out: Path, groups: dict[GroupKey, list[Loaded]]) -> tuple[list[Path], list]:
    found, skipped = find_patterns(directory, out)
    written: list[Path] = []
    for (model, task), per_seed in found.items():
        grid = example_grid(per_seed)
        if grid is not None:
            written += figures.write_figure(grid, out / "figures" / f"pattern_examples_{figures.safe_name(model)}_"
                                                                  f"{figures.safe_name(task)}")
        for key, group in groups.items():
            if (key[0], key[2]) != (model, task) or group[0].results.pruning != "structured":
                continue
            panels = shares(per_seed, group)
            if not panels:
                continue
            name = "_".join(figures.safe_name(part) for part in key)
            seeds = sorted(run.results.seed for run in group)
            tuned = sorted(run.results.seed for run in group if same_finetune(per_seed.get(run.results.seed), run))
            figure = type_shares_figure(panels, title=f"{task} — {model}, {key[1]}: attention pattern types of all heads "
                                                      f"and of good-ticket survivors (seeds {', '.join(map(str, seeds))}; "
                                                      f"fine-tuned maps: {', '.join(map(str, tuned)) or 'none'})")
            written += figures.write_figure(figure, out / "figures" / f"pattern_shares_{name}")
            written.append(write_text(out / "patterns" / f"shares_{name}.csv", shares_table(panels).to_csv(index=False)))
    return written, skipped
