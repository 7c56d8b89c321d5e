"""An experiment's results as one W&B run: the ticket table, the good mask's figure, and the
tickets' mask files as an artifact, in the W&B group its stages log to."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from lottery.schema import EVALUATIONS, Results
from pipeline.loggers import wandb_group
from pipeline.run import Run


def log_results(run: Run, results: Results, exp_dir: Path) -> None:
    settings = (run.settings.loggers or {}).get("wandb")
    if not settings:
        return
    import wandb

    from lottery.report.discover import Loaded
    from lottery.report.sections import GROUP_FIGURES

    wandb_run = wandb.init(
        project=settings["project"], entity=settings["entity"], mode=settings["mode"], dir=str(run.settings.paths.root),
        group=wandb_group(run), name=f"seed{results.seed}-results", job_type="results",
        config=asdict(run.settings), tags=list(settings["tags"]),
    )
    try:
        metrics = results.metrics
        rows = [["full", "-", *[results.full.get(m) for m in metrics], 100.0, None]]
        for kind, ticket in results.tickets.items():
            for evaluation in EVALUATIONS:
                scores = getattr(ticket, evaluation) or {}
                rows.append([kind, evaluation, *[scores.get(m) for m in metrics], ticket.size_pct, ticket.size_pct_all])
                for name, value in scores.items():
                    wandb_run.summary[f"{kind}/{evaluation}/{name}"] = value
        logged = {"results/table": wandb.Table(columns=["ticket", "eval", *metrics, "size_pct", "size_pct_all"],
                                               data=rows)}
        group = [Loaded(results, exp_dir / "results.json")]
        key = (results.model, results.variant, results.task)
        for name in results.figures:
            if name.endswith("heatmap") and name in GROUP_FIGURES:
                logged[f"results/{name}"] = wandb.Image(GROUP_FIGURES[name](key, group, None))
        wandb_run.log(logged)
        artifact = wandb.Artifact(f"masks-{results.model}-{results.task}-{results.variant}-seed{results.seed}",
                                  type="masks", metadata={"tickets": list(results.tickets)})
        artifact.add_dir(str(exp_dir / "tickets"))
        wandb_run.log_artifact(artifact)
    finally:
        wandb.finish()
