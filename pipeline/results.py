"""Building, writing and printing an experiment's `results.json` (schema: `lottery.schema`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lottery.baselines import majority_baseline
from lottery.io import read_json_or_none, to_jsonable, write_text
from lottery.model_card import base_model_metadata, model_card
from lottery.models import minilm_path
from lottery.pass_rule import degenerate_warning
from lottery.schema import RESULTS_FILENAME, Results, SearchSummary, row_label, write_results
from pipeline.run import Run
from pipeline.training import datamodule

log = logging.getLogger("lottery")


def majority_of(run: Run) -> dict[str, float]:
    """The constant predictor's dev metrics (majority label of train; of dev without train)."""
    data = datamodule(run)
    data.setup()
    dev = {split: data.labels_of(split) for split in run.task.eval_splits}
    train = data.labels_of("train") if "train" in data.splits else dev[run.task.eval_splits[0]]
    return majority_baseline(run.task, train, dev)


def new_results(run: Run, full_metrics: dict, num_layers: int, num_heads: int, search: SearchSummary) -> Results:
    """The header of a mode's results: who, which settings, the full model and the majority baseline."""
    majority = majority_of(run)
    warning = degenerate_warning(search.full_score, majority.get(run.task.pruning_metric, 0.0),
                                 run.settings.search.threshold)
    if warning:
        log.warning(warning)
    mode = run.mode
    return Results(
        model=run.settings.model.id, task=run.task.name, seed=run.seed, mode=mode.name, variant=run.variant,
        group=run.group, settings=run.identity, protocol=run.protocol, pruning=mode.pruning, label_prefix=mode.label_prefix,
        figures=list(mode.figures), metric=run.task.pruning_metric, table_metric=run.task.headline_metric,
        metrics=list(run.task.all_metrics), num_layers=num_layers, num_heads=num_heads, full=full_metrics,
        majority_baseline=majority, search=search.to_dict(), warning=warning, label_names=list(run.task.labels) or None,
        precision=run.settings.execution.numerics(),
    )


def table_lines(results: Results) -> list[str]:
    """The paper's rows for one run: full, majority, and each ticket pruned / retrained."""
    metric, headline = results.metric, results.table_metric

    def cell(metrics: dict | None, key: str) -> str:
        return "-" if not metrics or metrics.get(key) is None else f"{metrics[key]:.4f}"

    columns = [headline] if headline == metric else [headline, metric]
    title = (f"{results.model} / {results.task} / seed {results.seed} / {results.variant} "
             f"(protocol {results.protocol['name']}; pruning drives on {metric})")
    lines = [title, "",
             "| row | " + " | ".join(columns) + " | size % (encoder) | size % (paper) |",
             "|---|" + "---|" * (len(columns) + 2),
             "| full | " + " | ".join(cell(results.full, c) for c in columns) + " | 100.0 | - |",
             "| majority baseline | " + " | ".join(cell(results.majority_baseline, c) for c in columns) + " | - | - |"]
    for kind, ticket in results.tickets.items():
        for evaluation in ("pruned", "retrained"):
            scores = getattr(ticket, evaluation)
            lines.append(f"| {row_label(results.label_prefix, kind, evaluation)} | "
                         + " | ".join(cell(scores, c) for c in columns)
                         + f" | {ticket.size_pct:.1f} | {ticket.size_pct_all:.1f} |")
    return lines


def finish(run: Run, results: Results) -> dict:
    """Write `results.json` (unless it already holds exactly this), print the table, log it to W&B."""
    path = run.experiment_dir / RESULTS_FILENAME
    data = _as_json(results.to_dict())
    if read_json_or_none(path) != data:
        write_results(path, results)
        from pipeline.wandb_results import log_results

        log_results(run, results, run.experiment_dir)
    write_model_cards(run, results)
    log.info("\n".join(["results:", *table_lines(results)]))
    log.info("results written to %s", path)
    return data


def write_model_cards(run: Run, results: Results) -> None:
    """A README.md model card in each retrained ticket's model folder (rewritten only when it changed)."""
    model = run.settings.model
    base_model = model.hub_id or model.name_or_path
    local = None if model.random_init else (model.name_or_path or minilm_path())
    metadata = base_model_metadata(local) if local is not None and Path(str(local)).is_dir() else {}
    for kind in results.tickets:
        folder = run.experiment_dir / "retrained" / kind / "model"
        if not folder.is_dir():
            continue
        card = model_card(results, kind, None if base_model is None else str(base_model), **metadata)
        path = folder / "README.md"
        if not path.is_file() or path.read_text() != card:
            write_text(path, card)


def _as_json(data: dict) -> dict:
    return json.loads(json.dumps(to_jsonable(data)))
