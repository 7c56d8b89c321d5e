"""The attention-pattern section: `experiment=patterns` runs (patterns.json) joined with the good
tickets of the structured runs of the same model, task and seeds.

Per (model, structured variant, task): the type shares of the good tickets' surviving heads against
their pruned heads, per seed and pooled over seeds, each beside what random masks of the same size
give (`lottery.patterns_stats.survivor_type_contrast`: one permutation of the heads shared by all
seeds, so a head that recurs in every seed counts once), for the pre-trained model (its types are
the same for every seed, so every seed's good ticket counts) and the fine-tuned model (each
classified seed's types for that seed's survivors), as a figure, a CSV and a Markdown text; per
(model, task) a grid of example maps per type. Where the model is not a masked-language-model
checkpoint (all-MiniLM-L6-v2, a random initialisation), the outputs say that its "pre-trained"
attention is not BERT-base's (`pretraining_note`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lottery.errors import CorruptFileError
from lottery.io import read_json, write_text
from lottery.patterns import TYPES, AttentionFeatures
from lottery.patterns_figures import type_contrast_figure, type_examples_figure
from lottery.patterns_stats import TypeContrast, survivor_type_contrast
from lottery.report import figures
from lottery.report.agreement import PERMUTATION_SEED, PERMUTATIONS
from lottery.report.discover import GroupKey, Loaded
from lottery.report.masks import structured_masks
from lottery.report.tables import markdown_table
from lottery.schema import Results

# Models whose pre-trained weights are not a masked-language-model checkpoint, by model id.
NOT_MLM_CHECKPOINTS = {
    "minilm": ("all-MiniLM-L6-v2 (sentence-transformers), a sentence-embedding model trained contrastively on top "
               "of MiniLM"),
}
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


def pretraining_note(results: Results) -> str | None:
    """Where the pre-trained patterns are not those of an MLM checkpoint like bert-base, say so."""
    model = results.settings.get("model") or {}
    if model.get("random_init"):
        what = "a randomly initialised model"
    elif results.model in NOT_MLM_CHECKPOINTS:
        what = NOT_MLM_CHECKPOINTS[results.model]
    elif "sentence-transformers/" in str(model.get("name_or_path") or ""):
        what = f"{model['name_or_path']}, a sentence-embedding model"
    else:
        return None
    return (f"Pre-trained panel: the model ({results.model}) is {what}, not a masked-language-model checkpoint like "
            "bert-base-uncased: its \"pre-trained\" attention is not BERT-base's, and the paper's pre-trained "
            "patterns cannot be compared with it.")


def panels(patterns: dict[int, dict], group: list[Loaded]) -> dict[str, tuple[list[int], list, list[np.ndarray]]]:
    """{"pre-trained" | "fine-tuned": (seeds, each seed's types [L][H], each seed's good head mask)}.

    The pre-trained model's types do not depend on the seed (the same weights read on the same dev
    examples in file order), so that panel pairs one patterns.json's types with the good ticket of
    every seed in the group; the fine-tuned panel only the seeds whose fine-tuned model was
    classified, and only where that is the model the seed's ticket was found in.
    """
    if not group or not patterns:
        return {}
    masks = {run.results.seed: structured_masks(run)[0] for run in group}
    pretrained = patterns[min(patterns)]["pretrained"]["types"]
    found = {"pre-trained": (list(masks), [pretrained] * len(masks), list(masks.values()))}
    tuned = [run.results.seed for run in group if same_finetune(patterns.get(run.results.seed), run)]
    if tuned:
        found["fine-tuned"] = (tuned, [patterns[seed]["finetuned"]["types"] for seed in tuned],
                               [masks[seed] for seed in tuned])
    return found


def contrasts(patterns: dict[int, dict], group: list[Loaded], permutations: int = PERMUTATIONS
              ) -> dict[str, TypeContrast]:
    """Survivors against pruned heads per panel of `panels`."""
    return {panel: survivor_type_contrast(types, masks, seeds=seeds, permutations=permutations, seed=PERMUTATION_SEED)
            for panel, (seeds, types, masks) in panels(patterns, group).items()}


CONTRAST_COLUMNS = ["model_state", "seed", "type", "survivors_share", "pruned_share", "difference", "null_low",
                    "null_high", "p", "n_survivors", "n_pruned"]


def contrast_table(found: dict[str, TypeContrast]) -> pd.DataFrame:
    """Long format (CONTRAST_COLUMNS): per panel, each seed's and the pooled ("pooled") rows per type."""
    rows = []
    for panel, c in found.items():
        for index, seed in enumerate(c.seeds):
            for t, name in enumerate(TYPES):
                rows.append([panel, seed, name, c.survivors_share[index, t], c.pruned_share[index, t],
                             c.difference[index, t], c.null_low[index, t], c.null_high[index, t], c.p[index, t],
                             int(c.kept[index]), int(c.pruned[index])])
        for t, name in enumerate(TYPES):
            rows.append([panel, "pooled", name, c.pooled_survivors_share[t], c.pooled_pruned_share[t],
                         c.pooled_difference[t], c.pooled_null_low[t], c.pooled_null_high[t], c.pooled_p[t],
                         int(c.kept.sum()), int(c.pruned.sum())])
    return pd.DataFrame(rows, columns=CONTRAST_COLUMNS)


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def contrast_markdown(key: GroupKey, found: dict[str, TypeContrast], note: str | None) -> str:
    model, variant, task = key
    lines = [f"# Attention patterns of surviving and pruned heads: {task}, {model}, {variant}", "",
             ("Share of each pattern type among the good tickets' surviving heads and among their pruned heads; "
             "difference = survivors - pruned, per seed and pooled (mean over seeds); 95% null = the range of the "
             f"difference under random masks of the same sizes ({PERMUTATIONS} permutations of the heads, one "
             "permutation shared by all seeds so that a head recurring in every seed counts once); p two-sided."), ""]
    if note:
        lines += [f"**Note.** {note}", ""]
    for panel, c in found.items():
        table = pd.DataFrame({
            "survivors": [_share(v) for v in c.pooled_survivors_share],
            "pruned": [_share(v) for v in c.pooled_pruned_share],
            "difference (pooled)": [f"{d:+.3f}" if not math.isnan(d) else "-" for d in c.pooled_difference],
            "95% null": [f"[{lo:+.3f}, {hi:+.3f}]" if not math.isnan(lo) else "-"
                         for lo, hi in zip(c.pooled_null_low, c.pooled_null_high, strict=True)],
            "p": [_share(v) if math.isnan(v) or v >= 0.01 else f"{v:.1e}" for v in c.pooled_p],
            **{f"seed {seed}": [f"{d:+.2f} (p {_share(p)})" if not math.isnan(d) else "-"
                                for d, p in zip(c.difference[i], c.p[i], strict=True)]
               for i, seed in enumerate(c.seeds)},
        }, index=list(TYPES))
        kept = ", ".join(f"{int(k)}/{int(k + q)}" for k, q in zip(c.kept, c.pruned, strict=True))
        lines += [f"## {panel} (survivors per seed: {kept})", "", markdown_table(table, "type"), ""]
    return "\n".join(lines)


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
            found = contrasts(per_seed, group)
            if not found:
                continue
            name = "_".join(figures.safe_name(part) for part in key)
            seeds = sorted(run.results.seed for run in group)
            tuned = found["fine-tuned"].seeds if "fine-tuned" in found else []
            note = pretraining_note(group[0].results)
            figure = type_contrast_figure(found, title=f"{task} — {model}, {key[1]}: attention pattern types of "
                                                       f"surviving vs pruned heads of good tickets (seeds "
                                                       f"{', '.join(map(str, seeds))}; fine-tuned maps: "
                                                       f"{', '.join(map(str, tuned)) or 'none'})", note=note)
            written += figures.write_figure(figure, out / "figures" / f"pattern_shares_{name}")
            written.append(write_text(out / "patterns" / f"shares_{name}.csv", contrast_table(found).to_csv(index=False)))
            written.append(write_text(out / "patterns" / f"shares_{name}.md", contrast_markdown(key, found, note)))
    return written, skipped
