"""The paper's table: mean ± std (Bessel) over seeds of each task's headline metric, per variant,
with the 95% t-interval of the mean; and the paired tests over seeds of its claims.

The long format (`summary_table`, written as table.csv) has one row per (model, variant, task,
ticket, evaluation); `table_sections` pivots it into the paper's layout (row labels x tasks).
Sizes are shown in both definitions: the paper's (kept non-embedding parameters over all
parameters) and the encoder's (kept encoder parameters over the encoder's).

`seed_differences` (differences.csv/.md): good against random and against bad tickets, pruned and
retrained, paired by seed (`lottery.seed_stats.paired_test`), and in words which differences the
seeds support.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from lottery.report.discover import GroupKey, Loaded
from lottery.schema import EVALUATIONS, row_label
from lottery.seed_stats import paired_test, smallest_p, t_interval

TABLE_COLUMNS = ["model", "variant", "task", "ticket", "eval", "metric", "mean", "std", "ci_low", "ci_high", "n"]
SIZE_ROWS = (("size", "size_pct_all", "size % (paper)"), ("size_encoder", "size_pct", "size % (encoder)"))
# What a ticket costs to run against the full model (Ticket.cost): full / ticket, measured.
COST_ROWS = (("speedup_b1", "speedup_latency_b1", "speed-up, batch 1"),
             ("speedup_b64", "speedup_latency_b64", "speed-up, batch 64"),
             ("flops_ratio", "speedup_flops", "FLOPs full / ticket"))
COST_NOTE = ("speed-up = eval latency of the full model / of the ticket as deployed (structured tickets physically "
             "pruned; magnitude tickets keep their dense shapes), measured in one process on the machine that ran it.")
INTERVAL_NOTE = ("[low, high] = 95% t-interval of the mean over seeds (Student's t with n - 1 degrees of freedom; "
                 "none for one seed).")
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


def per_seed_values(group: list[Loaded]) -> dict[tuple[str, str, str], list[float | None]]:
    """{(ticket, eval, metric): one value per run of `group` (in its seed order), None where missing}.

    Rows: `full`/`majority` with eval `dev`, each ticket with eval `pruned`/`retrained` on the
    task's headline metric, each ticket's two sizes and its cost ratios.
    """
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
    return samples


def summary_table(groups: dict[GroupKey, list[Loaded]]) -> pd.DataFrame:
    """Mean, std (ddof=1; nan for one seed), the 95% t-interval of the mean (nan for one seed) and
    n over seeds, in long format (TABLE_COLUMNS), for each row of `per_seed_values`. An evaluation
    no seed ran has no row."""
    rows = []
    for key, group in groups.items():
        for cell, values in per_seed_values(group).items():
            present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
            if present:
                std = float(np.std(present, ddof=1)) if len(present) > 1 else float("nan")
                rows.append([*key, *cell, float(np.mean(present)), std, *t_interval(present), len(present)])
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
    """mean ± std, and for a score row (full, pruned, retrained) its interval [low, high]."""
    digits = 1 if row["eval"].startswith("size") else 2 if row["eval"] in {name for name, _, _ in COST_ROWS} else 3
    text = f"{row['mean']:.{digits}f}"
    if math.isnan(row["std"]):
        return text
    text = f"{text}{pm}{row['std']:.{digits}f}"
    scored = row["eval"] in EVALUATIONS or row["ticket"] == "full"
    return f"{text} [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]" if scored else text


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
        "fine-tuned model, re = mask applied to the pre-trained model, then fine-tuned. " + INTERVAL_NOTE + " "
        + SIZE_NOTE + " " + COST_NOTE + " Which differences between tickets the seeds support: differences.md.",
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
              "% " + INTERVAL_NOTE, "% " + SIZE_NOTE]
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


# ----------------------------------------------------------------- differences between tickets

DIFFERENCE_COLUMNS = ["model", "variant", "task", "eval", "comparison", "metric", "n", "mean_diff", "std_diff",
                      "ci_low", "ci_high", "seeds_good_higher", "p_two_sided", "p_one_sided",
                      "smallest_p_two_sided", "smallest_p_one_sided"]
COMPARED = (("good", "random"), ("good", "bad"))  # the paper's claims: good above random and bad, pruned
ALPHA = 0.05


def seed_differences(groups: dict[GroupKey, list[Loaded]]) -> pd.DataFrame:
    """Good minus random and good minus bad, pruned and retrained, paired by seed (DIFFERENCE_COLUMNS):
    mean, std and 95% t-interval of the per-seed differences, how many seeds have good higher, and
    the exact sign-flip p-values, two-sided and one-sided for good > other."""
    rows = []
    for (model, variant, task), group in groups.items():
        values = per_seed_values(group)
        metric = _metric_of(group)
        for evaluation in EVALUATIONS:
            for first, second in COMPARED:
                a, b = values.get((first, evaluation, metric)), values.get((second, evaluation, metric))
                if a is None or b is None:
                    continue
                test = paired_test(a, b)
                if test["n"] == 0:
                    continue
                higher = sum(1 for x, y in zip(a, b) if x is not None and y is not None and float(x) > float(y))
                rows.append({"model": model, "variant": variant, "task": task, "eval": evaluation,
                             "comparison": f"{first} - {second}", "metric": metric, "n": test["n"],
                             "mean_diff": test["mean_diff"], "std_diff": test["std_diff"], "ci_low": test["ci_low"],
                             "ci_high": test["ci_high"], "seeds_good_higher": higher,
                             "p_two_sided": test["p_two_sided"], "p_one_sided": test["p_greater"],
                             "smallest_p_two_sided": test["smallest_p_two_sided"],
                             "smallest_p_one_sided": test["smallest_p_one_sided"]})
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _difference_cell(row: pd.Series) -> str:
    text = f"{row['mean_diff']:+.3f}"
    if not math.isnan(row["ci_low"]):
        text += f" [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
    return f"{text}; {row['seeds_good_higher']}/{row['n']} seeds; p2 {_p(row['p_two_sided'])}, p1 {_p(row['p_one_sided'])}"


def _verdicts(part: pd.DataFrame) -> list[str]:
    """In words: per comparison, the tasks where the seeds support good > other (one-sided), where
    they support a difference (two-sided), and where they do not."""
    lines = []
    for (evaluation, comparison), rows in part.groupby(["eval", "comparison"], sort=False):
        other = comparison.split(" - ")[1]
        one = [f"{r.task} (p = {_p(r.p_one_sided)})" for r in rows.itertuples() if r.p_one_sided < ALPHA]
        two = [f"{r.task} (p = {_p(r.p_two_sided)})" for r in rows.itertuples() if r.p_two_sided < ALPHA]
        rest = [f"{r.task} (one-sided p = {_p(r.p_one_sided)}, n = {r.n})" for r in rows.itertuples()
                if not r.p_one_sided < ALPHA]
        text = f"- good > {other}, {evaluation}: "
        text += (f"supported at {ALPHA} one-sided on {', '.join(one)}" if one
                 else f"not supported at {ALPHA} one-sided on any task")
        if two:
            text += f"; a difference in either direction also two-sided on {', '.join(two)}"
        if rest and one:
            text += f"; not supported on {', '.join(rest)}"
        elif rest:
            text += f" ({', '.join(rest)})"
        lines.append(text + ".")
    return lines


def differences_markdown(frame: pd.DataFrame) -> str:
    """differences.md: the paired tests per (model, variant), with the floor on p that the number of
    seeds sets and, in words, which differences the seeds support."""
    seeds = sorted(set(frame["n"])) if not frame.empty else []
    floors = ", ".join(f"{n} seeds: two-sided {smallest_p(n):.4g}, one-sided {smallest_p(n, 'greater'):.4g}"
                       for n in seeds)
    lines = [
        "# Differences between tickets, paired by seed",
        "",
        ("Per task: good minus random and good minus bad tickets on the table metric, pruned and retrained, "
        "paired by seed (the same fine-tuned model). Each cell: mean difference [95% t-interval of the mean]; "
        "in how many seeds good is higher; p2 = two-sided and p1 = one-sided (good > other, the direction the "
        "paper claims for pruned tickets) p-values of an exact sign-flip permutation test over the seeds (all "
        "2^n sign patterns of the per-seed differences)."),
        "",
        (f"With n seeds the smallest p this test can give is 2/2^n two-sided and 1/2^n one-sided ({floors or 'no pairs'})."
        " With 5 seeds that is 2/32 = 0.0625 two-sided: no two-sided test of 5 seeds can reach 0.05, whatever the "
        "differences. The one-sided p is stated as one-sided; it reaches 1/32 = 0.031 only when good is higher in "
        "every seed. No correction for the number of tests."),
    ]
    for (model, variant), part in frame.groupby(["model", "variant"], sort=False):
        columns = list(dict.fromkeys(part["task"]))
        labels = list(dict.fromkeys(f"{r.comparison} {r.eval}" for r in part.itertuples()))
        table = pd.DataFrame("-", index=labels, columns=columns)
        for _, row in part.iterrows():
            table.loc[f"{row['comparison']} {row['eval']}", row["task"]] = _difference_cell(row)
        lines += ["", f"## {model} — {variant}", "", markdown_table(table), "",
                  f"What the seeds support (one-sided unless said; alpha {ALPHA}):", "", *_verdicts(part)]
    return "\n".join(lines) + "\n"
