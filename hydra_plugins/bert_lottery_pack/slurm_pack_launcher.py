"""`hydra/launcher=slurm` with `hydra.launcher.jobs_per_device=K`: one SLURM job per group of
K x gpus_per_node experiments, which runs them packed on its node's GPUs as `hydra/launcher=pack`
does (K per GPU, each in its own process, under CUDA MPS when it starts). A sweep of 90 experiments
with K=6 on nodes of 1 GPU asks for 15 GPU jobs, not 90. Without GPUs (gpus_per_node null or 0) a
group is cpu_jobs experiments (or cpus_per_task), one CPU share each.

With `jobs_per_device: null` this is hydra-submitit-launcher's SlurmLauncher unchanged: one
experiment per task of a SLURM job array (the way to run DDP across the GPUs of a node).

A group that SLURM preempts or that reaches its time limit is requeued whole (submitit's
checkpoint): its finished experiments are reused and the others resume from their checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

PACK_KEYS = ("jobs_per_device", "gpus", "cpu_jobs", "mps")


class SlurmPackLauncher(SlurmLauncher):
    def __init__(self, **params: Any) -> None:
        pack = {key: params.pop(key) for key in PACK_KEYS if key in params}
        super().__init__(**params)
        self.pack = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                     for key, value in pack.items()}

    @property
    def packing(self) -> bool:
        return self.pack.get("jobs_per_device") is not None

    def group_size(self) -> int:
        """Experiments per SLURM job: K per GPU of the node, or the node's CPU jobs."""
        from hydra_plugins.bert_lottery_pack._core import _positive

        gpus = self.params.get("gpus_per_node") or 0
        per_gpu = self.pack.get("jobs_per_device")
        if per_gpu == "auto":
            from lottery.errors import ConfigError

            raise ConfigError("hydra/launcher=slurm needs an integer hydra.launcher.jobs_per_device (auto measures "
                              "the GPU at hand, and the submitting machine has none of the nodes' GPUs)")
        per_gpu = _positive(per_gpu, "jobs_per_device")
        if gpus:
            return per_gpu * _positive(gpus, "gpus_per_node")
        cpu_jobs = self.pack.get("cpu_jobs")
        return _positive(cpu_jobs if cpu_jobs is not None else (self.params.get("cpus_per_task") or 1),
                         "cpu_jobs")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if not self.packing:
            return super().launch(job_overrides, initial_job_idx)
        import submitit

        assert self.config is not None
        size = self.group_size()
        executor = submitit.AutoExecutor(cluster="slurm", folder=self.params["submitit_folder"],
                                         slurm_max_num_timeout=self.params["max_num_timeout"])
        base = set(OmegaConf.structured(BaseQueueConf).keys())  # as submitit's launcher names them
        parameters = {key if key in base else f"slurm_{key}": value for key, value in self.params.items()
                      if key not in ("submitit_folder", "max_num_timeout")}
        executor.update_parameters(**{**parameters, "tasks_per_node": 1, "nodes": 1})  # one pack per SLURM job
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        count = len(job_overrides)
        groups = [list(range(start, min(start + size, count))) for start in range(0, count, size)]
        log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
        log.info("Packing %d jobs into %d SLURM job(s) of up to %d experiments (%s per GPU x %s GPU(s) per node)",
                 len(job_overrides), len(groups), size, self.pack.get("jobs_per_device"),
                 self.params.get("gpus_per_node") or 0)
        for number, group in enumerate(groups):
            for i in group:
                log.info("\t#%d (SLURM job %d): %s", initial_job_idx + i, number,
                         " ".join(filter_overrides(job_overrides[i])))
        state = Singleton.get_state()
        jobs = executor.map_array(self, [[list(job_overrides[i]) for i in group] for group in groups],
                                  [initial_job_idx + group[0] for group in groups], [state] * len(groups))
        return [result for job in jobs for result in job.results()[0]]

    def __call__(self, *args: Any) -> Any:
        """What a SLURM job runs: a packed group, or (not packing) one experiment as submitit's launcher.
        Preempted or timed out, submitit requeues the same call (`checkpoint`): finished experiments
        are reused, the others resume from their checkpoints."""
        return self.run_group(*args) if self.packing else super().__call__(*args)

    def run_group(self, overrides: list[list[str]], first_idx: int, singleton_state: dict) -> list[JobReturn]:
        """On the node: this group's experiments, packed on the GPUs that SLURM gave it."""
        from hydra_plugins.bert_lottery_pack import _core

        Singleton.set_state(singleton_state)
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        plan = _core.make_plan(self.pack, len(overrides))
        log.info("Packing %d jobs on this node: %s", len(overrides), plan.describe())
        return _core.run_jobs(hydra_context=self.hydra_context, config=self.config, task_function=self.task_function,
                              job_overrides=overrides, initial_job_idx=first_idx, plan=plan,
                              mps_log_root=sweep_dir / ".mps", ignore_signals=(preemption_signal(),))


def preemption_signal() -> str:
    """The signal SLURM sends before a time limit or preemption (submitit's, USR2 by default): the
    launcher handles it (requeue), so its packed jobs ignore it."""
    from submitit.core.job_environment import JobEnvironment

    return f"SIG{JobEnvironment.USR_SIG}"
