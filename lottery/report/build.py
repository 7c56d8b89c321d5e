"""Writing the whole report: tables, each group's figures, the analyses across groups, the protocol
comparison, and the list of what could not be read.

The report is built in a temporary folder beside its target and swapped in whole at the end
(`lottery.io.atomic_directory`), so a report that is killed or fails half-way leaves the previous
one exactly as it was, and no file of an earlier report (a stale `skipped.md`) survives a new one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from lottery.errors import CorruptFileError, LotteryError, ReadOnlyError
from lottery.io import atomic_directory, write_text
from lottery.report import figures
from lottery.report.agreement import protocol_comparison
from lottery.report.discover import NoResultsError, discover, group_runs
from lottery.report.patterns_section import write_patterns
from lottery.report.sections import COLLECTIONS, GROUP_FIGURES
from lottery.report.tables import latex_tables, markdown_tables, summary_table

log = logging.getLogger("lottery")
REPORT_DIRNAME = "report"


class NotAReportError(LotteryError, FileExistsError):
    """The report's folder exists and holds something else (the report would replace it)."""


@dataclass
class ReportOutcome:
    out: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


def _check_writable(out: Path) -> None:
    """The report is built beside `out` and replaces it whole: `out`'s parent must be writable, and
    an existing `out` must be a report (it has a table.md, as every report does) or empty, never a
    folder of other files that replacing it would delete."""
    existing = next((p for p in out.parents if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise ReadOnlyError(f"cannot write the report into {out}: {existing} is read-only; pass --out FOLDER "
                            "to write it elsewhere")
    if out.exists() and not (out.is_dir() and ((out / "table.md").is_file() or not any(out.iterdir()))):
        raise NotAReportError(f"cannot write the report into {out}: it exists and is not an earlier report, and the "
                            "report replaces its folder whole; pass --out with a new or empty folder")


def write_report(directory: str | Path, *, out: str | Path | None = None, seed: int = 0) -> ReportOutcome:
    """Read every results.json under `directory` and write the report into `out` (default
    `directory/report`). `seed` seeds the super-random and super-bad draws."""
    directory = Path(directory)
    outcome = ReportOutcome(Path(out) if out is not None else directory / REPORT_DIRNAME)
    found = discover(directory, exclude=outcome.out)
    outcome.skipped += [(str(path), reason) for path, reason in found.skipped]
    groups = group_runs(found.runs)
    if not groups:
        raise NoResultsError(f"no readable results.json under {directory}: "
                             + "; ".join(f"{path}: {why}" for path, why in outcome.skipped))
    _check_writable(outcome.out)
    with atomic_directory(outcome.out) as staging:
        _write(outcome, staging, directory, groups, seed)
    outcome.written = [outcome.out / path.relative_to(staging) for path in outcome.written]
    return outcome


def _write(outcome: ReportOutcome, out_dir: Path, directory: Path, groups: dict, seed: int) -> None:
    """Every file of the report into `out_dir` (the staging folder)."""
    summary = summary_table(groups)
    outcome.written += [
        write_text(out_dir / "table.md", markdown_tables(summary, groups)),
        write_text(out_dir / "table.csv", summary.to_csv(index=False)),
        write_text(out_dir / "table.tex", latex_tables(summary, groups)),
    ]
    for key, group in groups.items():
        for name in group[0].results.figures:
            if name not in GROUP_FIGURES:
                continue
            stem = out_dir / "figures" / f"{name}_{'_'.join(figures.safe_name(part) for part in key)}"
            try:
                drawn = GROUP_FIGURES[name](key, group, summary)
                parts = drawn if isinstance(drawn, dict) else {"": drawn}
                for suffix, figure in parts.items():
                    target = stem.with_name(f"{stem.name}_{suffix}") if suffix else stem
                    outcome.written += figures.write_figure(figure, target)
            except (CorruptFileError, OSError) as error:
                outcome.skipped.append((f"figure {stem.name}", str(error)))
    for name, collect in COLLECTIONS.items():
        members = {key: group for key, group in groups.items() if name in group[0].results.figures}
        if members:
            try:
                outcome.written += collect(members, out_dir, seed)
            except (CorruptFileError, OSError) as error:
                outcome.skipped.append((name, str(error)))
    written, skipped = write_patterns(directory, out_dir, groups)
    outcome.written += written
    outcome.skipped += skipped
    frame, text = protocol_comparison(groups, summary)
    if not frame.empty:
        outcome.written += [write_text(out_dir / "protocol_comparison.csv", frame.to_csv(index=False)),
                            write_text(out_dir / "protocol_comparison.md", text)]
    if outcome.skipped:
        lines = ["# Skipped", "", "These could not be read or drawn; everything else is in the report.", ""]
        lines += [f"- {what}: {why}" for what, why in outcome.skipped]
        outcome.written.append(write_text(out_dir / "skipped.md", "\n".join(lines) + "\n"))
