"""The `results.json` every experiment writes (one schema for structured and magnitude runs) and
the table printed at the end of a run."""

from __future__ import annotations

import logging
from pathlib import Path

from lottery.baselines import majority_baseline
from lottery.io import write_json
from lottery.pipeline.common import Run, datamodule
from lottery.pipeline.wandb_results import log_results
from lottery.search import warn_if_degenerate

log = logging.getLogger("lottery")

TICKET_ROWS = (("pruned", "pr"), ("retrained", "re"))


def majority_of(run: Run) -> dict[str, float]:
    """The constant predictor's dev metrics (majority label of train; of dev without train)."""
    data = datamodule(run)
    data.setup()
    dev = {split: data.labels_of(split) for split in run.task.eval_splits}
    has_train = "train" in data.splits
    train = data.labels_of("train") if has_train else dev[run.task.eval_splits[0]]
    return majority_baseline(run.task, train, dev)


def majority_and_warning(run: Run, full_score: float, threshold: float) -> tuple[dict[str, float], str | None]:
    """The majority baseline, and a warning (logged) when threshold x full does not clear it."""
    majority = majority_of(run)
    warning = warn_if_degenerate(full_score, majority.get(run.task.pruning_metric, 0.0), threshold)
    if warning:
        log.warning(warning)
    return majority, warning


def results_header(run: Run, mode: str, full_metrics: dict, majority: dict) -> dict:
    cfg = run.cfg
    return {
        "model": str(cfg.model.id), "task": run.task.name, "seed": run.seed, "mode": mode,
        "pruning": str(cfg.pruning.mode), "schedule": str(cfg.pruning.get("schedule", "paper")),
        "search_split": str(cfg.search.split), "metric": run.task.pruning_metric,
        "metrics": list(run.task.all_metrics), "majority_baseline": majority, "full": full_metrics,
        "tickets": {},
    }


def table_lines(results: dict) -> list[str]:
    """The paper's rows for one run: full, majority, and each ticket pruned / retrained."""
    metric = results["metric"]
    prefix = "s" if results["mode"] == "structured" else "m"

    def cell(metrics: dict | None) -> str:
        return "-" if not metrics or metrics.get(metric) is None else f"{metrics[metric]:.4f}"

    lines = [(f"{results['model']} / {results['task']} / seed {results['seed']} / {results['pruning']} "
             f"(metric: {metric})"), "", "| row | score | size % |", "|---|---|---|",
             f"| full | {cell(results['full'])} | 100.0 |",
             f"| majority baseline | {cell(results['majority_baseline'])} | - |"]
    for kind, ticket in results["tickets"].items():
        for key, short in TICKET_ROWS:
            lines.append(f"| {prefix}-{kind} {short} | {cell(ticket.get(key))} | {ticket['size_pct']:.1f} |")
    return lines


def print_table(results: dict) -> None:
    print("\n".join(["", *table_lines(results), ""]), flush=True)


def finish(run: Run, exp_dir: Path, results: dict) -> dict:
    """Write `results.json`, print the table, and log it to W&B when the W&B logger is on."""
    write_json(exp_dir / "results.json", results)
    print_table(results)
    log_results(run, results, exp_dir)
    return results
