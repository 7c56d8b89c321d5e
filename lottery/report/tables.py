"""The paper's table: mean ± std (Bessel) over seeds of each task's headline metric, per variant.

The long format (`summary_table`, written as table.csv) has one row per (model, variant, task,
ticket, evaluation); `table_sections` pivots it into the paper's layout (row labels x tasks).
Sizes are shown in both definitions: the paper's (kept non-embedding parameters over all
parameters) and the encoder's (kept encoder parameters over the encoder's).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from lottery.report.discover import GroupKey, Loaded
from lottery.schema import EVALUATIONS, row_label

TABLE_COLUMNS = ["model", "variant", "task", "ticket", "eval", "metric", "mean", "std", "n"]
SIZE_ROWS = (("size", "size_pct_all", "size % (paper)"), ("size_encoder", "size_pct", "size % (encoder)"))
# What a ticket costs to run against the full model (Ticket.cost): full / ticket, measured.
COST_ROWS = (("speedup_b1", "speedup_latency_b1", "speed-up, batch 1"),
             ("speedup_b64", "speedup_latency_b64", "speed-up, batch 64"),
             ("flops_ratio", "speedup_flops", "FLOPs full / ticket"))
COST_NOTE = ("speed-up = eval latency of the full model / of the ticket as deployed (structured tickets physically "
             "pruned; magnitude tickets keep their dense shapes), measured in one process on the machine that ran it.")
SIZE_NOTE = ("size % (paper) = kept non-embedding parameters / all parameters of the full model (the paper's size "
             "column, with the model's own embedding count in place of its 0.21); size % (encoder) = kept encoder "
             "parameters / the full encoder's.")


def _metric_of(group: list[Loaded]) -> str:
    metrics = {run.results.table_metric for run in group}
    if len(metrics) > 1:
        raise ValueError(f"runs of one task disagree on the table metric {sorted(metrics)}: {group[0].path}")
    return metrics.pop()


def _ticket_kinds(group: list[Loaded]) -> list[str]:
    return list(dict.fromkeys(kind for run in group for kind in run.results.tickets))


def summary_table(groups: dict[GroupKey, list[Loaded]]) -> pd.DataFrame:
    """Mean, std (ddof=1; nan for one seed) and n over seeds, in long format (TABLE_COLUMNS).

    Rows: `full`/`majority` with eval `dev`, each ticket with eval `pruned`/`retrained` on the
    task's headline metric, and each ticket's two sizes. An evaluation no seed ran has no row.
    """
    rows = []
    for key, group in groups.items():
        metric = _metric_of(group)
        samples = {
            ("full", "dev", metric): [run.results.full.get(metric) for run in group],
            ("majority", "dev", metric): [run.results.majority_baseline.get(metric) for run in group],
        }
        for kind in _ticket_kinds(group):
            tickets = [run.results.tickets.get(kind) for run in group]
            for evaluation in EVALUATIONS:
                samples[(kind, evaluation, metric)] = [
                    (getattr(t, evaluation) or {}).get(metric) if t is not None else None for t in tickets]
            for name, field, _ in SIZE_ROWS:
                samples[(kind, name, field)] = [getattr(t, field) if t is not None else None for t in tickets]
            for name, field, _ in COST_ROWS:
                samples[(kind, name, field)] = [(t.cost or {}).get(field) if t is not None else None for t in tickets]
        for cell, values in samples.items():
            present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
            if present:
                std = float(np.std(present, ddof=1)) if len(present) > 1 else float("nan")
                rows.append([*key, *cell, float(np.mean(present)), std, len(present)])
    frame = pd.DataFrame(rows, columns=["model", "variant", "task", *TABLE_COLUMNS[3:]])
    return frame[TABLE_COLUMNS]


def _prefixes(groups: dict[GroupKey, list[Loaded]]) -> dict[tuple[str, str], str]:
    return {(model, variant): group[0].results.label_prefix for (model, variant, _), group in groups.items()}


def _row_labels(prefix: str, kinds: list[str]) -> dict[tuple[str, str], str]:
    labels = {("full", "dev"): "full", ("majority", "dev"): "majority"}
    labels |= {(kind, e): row_label(prefix, kind, e) for kind in kinds for e in EVALUATIONS}
    labels |= {(kind, name): f"{prefix}-{kind} {label}" for kind in kinds for name, _, label in (*SIZE_ROWS, *COST_ROWS)}
    return labels


def _cell(row: pd.Series, pm: str) -> str:
    digits = 1 if row["eval"].startswith("size") else 2 if row["eval"] in {name for name, _, _ in COST_ROWS} else 3
    text = f"{row['mean']:.{digits}f}"
    return text if math.isnan(row["std"]) else f"{text}{pm}{row['std']:.{digits}f}"


def table_sections(summary: pd.DataFrame, groups: dict[GroupKey, list[Loaded]], pm: str = " ± "
                   ) -> dict[tuple[str, str], pd.DataFrame]:
    """One formatted table per (model, variant): the paper's row labels x tasks, '-' where not run."""
    prefixes = _prefixes(groups)
    sections = {}
    for (model, variant), part in summary.groupby(["model", "variant"], sort=False):
        kinds = list(dict.fromkeys(t for t in part["ticket"] if t not in ("full", "majority")))
        labels = _row_labels(prefixes[(model, variant)], kinds)
        tasks = list(dict.fromkeys(part["task"]))
        table = pd.DataFrame("-", index=list(labels.values()), columns=tasks)
        for _, row in part.iterrows():
            table.loc[labels[(row["ticket"], row["eval"])], row["task"]] = _cell(row, pm)
        sections[(model, variant)] = table
    return sections


def section_note(summary: pd.DataFrame, model: str, variant: str) -> str:
    part = summary[(summary["model"] == model) & (summary["variant"] == variant) & (summary["ticket"] == "full")]
    return "; ".join(f"{r.task}: {r.metric}, {r.n} seed{'s' if r.n != 1 else ''}" for r in part.itertuples())


def markdown_table(frame: pd.DataFrame, index_name: str = "") -> str:
    """A GitHub-flavoured Markdown table, index first (pandas' to_markdown needs tabulate)."""
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(frame.index, frame.values)]
    return "\n".join(lines)


def markdown_tables(summary: pd.DataFrame, groups: dict[GroupKey, list[Loaded]]) -> str:
    lines = [
        "# Results",
        "",
        "Mean ± std (Bessel) over seeds of each task's headline metric on dev (the paper's: STS-B Pearson; pruning "
        "drove on the Pearson/Spearman mean); one seed shows the mean only, '-' = not run. pr = mask applied to the "
        "fine-tuned model, re = mask applied to the pre-trained model, then fine-tuned. " + SIZE_NOTE + " " + COST_NOTE,
    ]
    for (model, variant), table in table_sections(summary, groups).items():
        lines += ["", f"## {model} — {variant}", "", markdown_table(table), "",
                  f"Metrics and seeds: {section_note(summary, model, variant)}."]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", text)


def latex_tables(summary: pd.DataFrame, groups: dict[GroupKey, list[Loaded]]) -> str:
    """The headline table as plain LaTeX tabulars (no packages needed), one per (model, variant)."""
    blocks = ["% Generated by python -m lottery.report: mean $\\pm$ std over seeds on dev.",
              "% " + SIZE_NOTE]
    for (model, variant), table in table_sections(summary, groups, pm=" $\\pm$ ").items():
        columns = " & ".join(_latex_escape(c) for c in table.columns)
        rows = [f"{_latex_escape(label)} & " + " & ".join(row) + r" \\"
                for label, row in zip(table.index, table.values)]
        caption = f"{model}, {variant} ({section_note(summary, model, variant)})"
        blocks.append("\n".join([
            r"\begin{table}[ht]", r"\centering", rf"\caption{{{_latex_escape(caption)}}}",
            r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\hline", rf" & {columns} \\", r"\hline",
            *rows, r"\hline", r"\end{tabular}", r"\end{table}",
        ]))
    return "\n\n".join(blocks) + "\n"
