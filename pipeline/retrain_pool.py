"""Retraining an experiment's tickets at once (`tickets.retrain_processes`): good, random and bad are
independent fine-tunes, so each can run in its own process, on the one GPU or on its share of the
CPU cores. Each process runs the ticket's `retrained/<kind>` stage exactly as the sequential loop
would (same seed, same resumable fit, same files); the loop then finds the stage finished.

On a CPU every process gets torch's threads / processes; a different number of threads may change
the last bits of a CPU fine-tune, so a run compares equal to a sequential one run with as many
threads per fit (OMP_NUM_THREADS=1 in the tests).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from pipeline.run import Run
from pipeline.settings import RunSettings

# "auto" on a CPU: a process per ticket only where each gets this many cores.
CORES_PER_PROCESS = 4


def retrain_processes(run: Run, pending: int) -> int:
    """How many tickets to retrain at once: tickets.retrain_processes, or for "auto" every pending
    ticket on a GPU and cores // CORES_PER_PROCESS on a CPU; 1 (in this process) for a multi-process
    (DDP) fit, which launches its own processes."""
    wanted = run.settings.tickets.retrain_processes
    if pending < 2 or run.settings.execution.world_size > 1:
        return 1
    if wanted == "auto":
        accelerator = str(run.settings.execution.accelerator)
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        wanted = pending if on_gpu else (os.cpu_count() or 1) // CORES_PER_PROCESS
    return max(1, min(int(wanted), pending))


def _retrain(settings: RunSettings, ticket_type: type, run_dir: Path, masks: Any, kind: str, inputs: dict,
             force: bool, threads: int) -> None:
    """One ticket's retrained stage, in a fresh process."""
    from pipeline.quiet import quiet_libraries
    from pipeline.run import run_of
    from pipeline.training import stage

    quiet_libraries()
    torch.set_num_threads(threads)
    run = run_of(settings)
    stage(run_dir, lambda folder: ticket_type.retrain(run, folder, masks, kind), force=force, inputs=inputs)


def retrain_at_once(run: Run, exp_dir: Path, ticket_type: type, pending: Mapping[str, tuple[Any, dict]],
                    processes: int) -> None:
    """Each pending ticket's `retrained/<kind>` stage ({kind: (masks, inputs)}), `processes` at a time,
    each in a spawned process; the first failure is raised here."""
    threads = max(1, torch.get_num_threads() // processes)
    context = multiprocessing.get_context("spawn")  # no forked CUDA or thread pools
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        futures = [pool.submit(_retrain, run.settings, ticket_type, exp_dir / "retrained" / kind, masks, kind, inputs,
                               run.settings.force, threads) for kind, (masks, inputs) in pending.items()]
        for future in futures:
            future.result()
