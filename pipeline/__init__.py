"""The experiment pipeline: the entry point's side, where Lightning, Hydra and W&B live.

`train(cfg)` checks the settings, then runs one (model, task, seed) through the configured
experiment mode's stages (`pipeline.modes`). The algorithms in `lottery` never import this package.
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.quiet import quiet_libraries
from pipeline.run import make_run
from pipeline.threads import share_cpus


def train(cfg: DictConfig) -> dict:
    """Run the configured experiment; returns its metrics (fine-tune) or results (experiments)."""
    quiet_libraries()
    run = make_run(cfg)
    if run.settings.plan:
        from pipeline.plan import SWEEP, plan_run

        lines, total = plan_run(run)
        SWEEP.add(total.flops, total.seconds)
        print("\n".join(lines), flush=True)
        return {}
    share_cpus()
    return run.mode.run(run)
