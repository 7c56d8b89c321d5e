"""Each job's share of the CPUs, so parallel jobs never oversubscribe them.

Torch starts as many intra-op threads as the machine has cores, in every process. Two jobs of a
joblib sweep (or several SLURM tasks on one node) would then each run 2x the cores' threads that
wait on each other: measured here, a MiniLM fine-tune sharing 2 cores with two other processes
ran about 8x slower than alone. A job uses: the CPUs it may run on (affinity), capped by
SLURM_CPUS_PER_TASK, divided by the joblib launcher's parallel jobs. OMP_NUM_THREADS, if set,
wins: the user decided. The pack launcher (hydra_plugins/bert_lottery_pack) divides the same CPUs
by the jobs it runs at once and starts each job with that OMP_NUM_THREADS.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("lottery")


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine (the joblib launcher's n_jobs)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
    except (ImportError, ValueError):  # not under Hydra
        return 1
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    return available_cpus() if n_jobs < 0 else max(1, n_jobs)


def available_cpus() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cpus, int(slurm)) if slurm.isdigit() and int(slurm) > 0 else cpus


def cpu_share() -> int | None:
    """Threads this job should use, or None when OMP_NUM_THREADS says it already."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, available_cpus() // parallel_jobs())


def share_cpus() -> None:
    threads = cpu_share()
    if threads is not None and threads != torch.get_num_threads():
        log.info("using %d CPU thread(s) (%d CPUs available, %d parallel job(s))", threads, available_cpus(),
                 parallel_jobs())
        torch.set_num_threads(threads)
