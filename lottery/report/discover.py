"""Finding a sweep's results.json files and grouping them into the variants the report averages.

Runs are grouped by (model, task, variant): a variant is the runs' settings apart from the seed
(the `group` hash every results.json records), named by its readable `variant` ("structured-
paper"). Two groups of one (model, task) with the same readable name but different settings (a
sweep over a learning rate, say) get the differing settings appended to the name, so different
settings are never averaged together. A file that cannot be read is skipped, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lottery.errors import CorruptFileError, LotteryError
from lottery.schema import RESULTS_FILENAME, Results, read_results

GLUE_ORDER = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
# Settings that always differ between tasks or say nothing about the variant.
_LABEL_IGNORED = ("task", "seed", "data.files")

GroupKey = tuple[str, str, str]  # (model, variant label, task)


class NoResultsError(LotteryError, FileNotFoundError):
    """The folder given to the report holds no results.json."""


@dataclass
class Loaded:
    """One results.json and where it lies (mask files are relative to its folder)."""

    results: Results
    path: Path

    @property
    def folder(self) -> Path:
        return self.path.parent


@dataclass
class Discovery:
    runs: list[Loaded] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def discover(directory: str | Path, exclude: Path | None = None) -> Discovery:
    """Every readable results.json under `directory` (recursively, skipping `exclude`)."""
    root = Path(directory)
    if not root.is_dir():
        raise NoResultsError(f"{root} is not a folder; give the output folder of a sweep")
    excluded = exclude.resolve() if exclude is not None else None
    paths = sorted(p for p in root.rglob(RESULTS_FILENAME)
                   if excluded is None or excluded not in p.resolve().parents)
    if not paths:
        raise NoResultsError(
            f"no {RESULTS_FILENAME} found under {root.resolve()}. A sweep writes one {RESULTS_FILENAME} per run "
            f"(model, task, experiment, seed) into that run's experiment folder: point the report at the folder "
            f"that holds the runs, or run the sweep first.")
    found = Discovery()
    seen: dict[tuple, Path] = {}
    for path in paths:
        try:
            results = read_results(path)
        except (CorruptFileError, OSError) as error:
            found.skipped.append((path, str(error)))
            continue
        identity = (results.model, results.task, results.group, results.seed)
        if identity in seen:
            found.skipped.append((path, f"the same run (model, task, settings, seed) as {seen[identity]}"))
            continue
        seen[identity] = path
        found.runs.append(Loaded(results, path))
    return found


def task_order(task: str) -> tuple[int, str]:
    return (GLUE_ORDER.index(task) if task in GLUE_ORDER else len(GLUE_ORDER), task)


def _flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(settings, dict):
        flat: dict[str, Any] = {}
        for key, value in settings.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: settings}


def _differences(groups: list[Results]) -> dict[str, str]:
    """For groups sharing a readable name: group hash -> "key=value, ..." of the settings that differ."""
    flat = {r.group: {k: v for k, v in _flatten(r.settings).items()
                      if not any(k == p or k.startswith(p + ".") for p in _LABEL_IGNORED)} for r in groups}
    keys = sorted({k for values in flat.values() for k in values})
    differing = [k for k in keys if len({repr(values.get(k)) for values in flat.values()}) > 1]
    return {group: ", ".join(f"{k}={values.get(k)}" for k in differing) for group, values in flat.items()}


def group_runs(runs: Iterable[Loaded]) -> dict[GroupKey, list[Loaded]]:
    """Runs per (model, variant label, task), in table order, each list sorted by seed."""
    by_group: dict[tuple[str, str, str], list[Loaded]] = {}
    for run in runs:
        r = run.results
        by_group.setdefault((r.model, r.task, r.group), []).append(run)
    names: dict[tuple[str, str, str], list[Results]] = {}
    for (model, task, _), members in by_group.items():
        names.setdefault((model, task, members[0].results.variant), []).append(members[0].results)
    labels = {}
    for (model, task, variant), groups in names.items():
        suffixes = _differences(groups) if len(groups) > 1 else {groups[0].group: ""}
        for result in groups:
            labels[(model, task, result.group)] = variant + (f" [{suffixes[result.group]}]" if suffixes[result.group] else "")
    grouped: dict[GroupKey, list[Loaded]] = {}
    for (model, task, group), members in by_group.items():
        grouped[(model, labels[(model, task, group)], task)] = sorted(members, key=lambda run: run.results.seed)
    order = sorted(grouped, key=lambda key: (key[0], key[1], task_order(key[2])))
    return {key: grouped[key] for key in order}
