"""An experiment's results as one W&B run: the ticket table, the good mask's heatmap, and the
tickets' mask files as an artifact, in the (model, task, mode) group its stages log to."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from lottery.pipeline.common import Run


def log_results(run: Run, results: dict, exp_dir: Path) -> None:
    settings = run.cfg.logger.get("wandb")
    if not settings:
        return
    import matplotlib

    matplotlib.use("Agg")
    import wandb

    from lottery.report import magnitude_heatmap, mode_name, structured_heatmap

    mode = results["pruning"]
    wandb_run = wandb.init(
        project=settings.project, entity=settings.entity, mode=settings.mode, dir=str(run.cfg.paths.root),
        group=f"{results['model']}-{results['task']}-{mode}", name=f"seed{results['seed']}-results",
        job_type="results", config=OmegaConf.to_container(run.cfg, resolve=True), tags=list(settings.tags),
    )
    try:
        metrics = results["metrics"]
        rows = [["full", "-", *[results["full"].get(m) for m in metrics], 100.0]]
        for kind, ticket in results["tickets"].items():
            for evaluation in ("pruned", "retrained"):
                scores = ticket.get(evaluation) or {}
                rows.append([kind, evaluation, *[scores.get(m) for m in metrics], ticket["size_pct"]])
                for name, value in scores.items():
                    wandb_run.summary[f"{kind}/{evaluation}/{name}"] = value
        draw = structured_heatmap if results["mode"] == "structured" else magnitude_heatmap
        figure = draw(results["model"], mode_name(results), results["task"], [results])
        wandb_run.log({"results/table": wandb.Table(columns=["ticket", "eval", *metrics, "size_pct"], data=rows),
                       "results/good_mask": wandb.Image(figure)})
        artifact = wandb.Artifact(f"masks-{results['model']}-{results['task']}-{mode}-seed{results['seed']}",
                                  type="masks", metadata={"tickets": list(results["tickets"])})
        artifact.add_dir(str(exp_dir / "tickets"))
        wandb_run.log_artifact(artifact)
    finally:
        wandb.finish()
