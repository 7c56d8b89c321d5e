"""Packing a sweep's jobs onto this machine: K at a time on each GPU, or a CPU share each.

Every job runs in a process of its own (`python -m hydra_plugins.bert_lottery_pack._job`), which
does what Hydra's basic launcher does in-process: compose the job's config and `run_job` it, so its
folder, `.hydra/` files and log are where the basic and joblib launchers put them. A process of
its own means its own CUDA context and thread settings, and a job that crashes takes no other job
with it. Jobs start in the sweep's order as slots free up; each is pinned to one GPU
(`CUDA_VISIBLE_DEVICES`) and gets its share of the CPUs (`OMP_NUM_THREADS`, unless set already).
A failed job fails the sweep after the others have finished (Hydra raises its error).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals

from hydra_plugins.bert_lottery_pack._mps import Mps
from lottery.errors import ConfigError

log = logging.getLogger(__name__)

JOB_MODULE = "hydra_plugins.bert_lottery_pack._job"
MEASUREMENT = Path(__file__).resolve().parents[2] / "bench" / "results" / "packing.json"
MEASUREMENT_FORMAT = "bert-lottery/packing/v1"
STOP_GRACE_S = 15.0  # a stopped pack gives its jobs this long to end on SIGTERM before SIGKILL
POLL_S = 0.1


class JobDied(RuntimeError):
    """A packed job's process ended without reporting a result (killed, out of memory, a crash)."""


@dataclass(frozen=True)
class Plan:
    """Where a pack's jobs run: `gpus` (empty: the CPU), how many at once on each, their threads."""

    gpus: tuple[str, ...]
    per_gpu: int
    concurrent: int  # jobs at once in all
    threads: int | None  # OMP_NUM_THREADS of each job; None: the user's own setting is kept
    mps: str  # auto | true | false

    def describe(self) -> str:
        threads = f"{self.threads} CPU thread(s) each" if self.threads else "OMP_NUM_THREADS as set"
        if not self.gpus:
            return f"{self.concurrent} at a time on the CPU, {threads}"
        return f"up to {self.per_gpu} per GPU on {len(self.gpus)} GPU(s) ({', '.join(self.gpus)}), {threads}"


def available_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by SLURM_CPUS_PER_TASK. The same rule as
    pipeline.threads.available_cpus (a test keeps them equal), which this plugin cannot import:
    the pipeline package pulls in Lightning, seconds of start-up in every process."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cpus, int(slurm)) if slurm.isdigit() and int(slurm) > 0 else cpus


def visible_gpus() -> list[str]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES if set (as CUDA reads it: up to the first
    entry that is not a device), else every GPU that nvidia-smi lists (by UUID), else none."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        gpus = []
        for entry in (part.strip() for part in listed.split(",")):
            if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
                break
            gpus.append(entry)
        return gpus
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=uuid", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().startswith("GPU-")]


def gpu_names(gpus: Sequence[str]) -> set[str]:
    """The model names of `gpus` (nvidia-smi), or an empty set when nvidia-smi cannot tell."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return set()
    try:
        out = subprocess.run([smi, f"--id={','.join(gpus)}", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.strip() for line in out.stdout.splitlines() if line.strip()} if out.returncode == 0 else set()


def measured_jobs_per_device(gpus: Sequence[str], path: Path = MEASUREMENT) -> int:
    """`jobs_per_device: auto`: the best K of the packing measurement saved for this GPU model."""
    how = ("run `python -m bench.packing --device cuda` on this GPU to measure it, or set "
           "hydra.launcher.jobs_per_device=K")
    if not path.is_file():
        raise ConfigError(f"hydra.launcher.jobs_per_device=auto needs a packing measurement ({path} is missing): {how}")
    try:
        record = json.loads(path.read_text())
        device, best = record["device"], int(record["jobs_per_device"])
        assert record["format"] == MEASUREMENT_FORMAT and best >= 1
    except (ValueError, KeyError, TypeError, AssertionError):
        raise ConfigError(f"{path} is not a packing measurement of this bert-lottery: {how}") from None
    names = gpu_names(gpus)
    if names != {device}:
        raise ConfigError(f"hydra.launcher.jobs_per_device=auto: {path} was measured on {device}, these GPUs are "
                          f"{', '.join(sorted(names)) or 'of unknown model'}: {how}")
    log.info("jobs_per_device=auto: %d, measured on %s (%s)", best, device, path)
    return best


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"hydra.launcher.{key} must be a positive integer, got {value!r}")
    return value


def make_plan(settings: dict[str, Any], n_jobs: int) -> Plan:
    """Reads the launcher's settings (PackSettings) against this machine."""
    mps = str(settings.get("mps", "auto")).lower()
    if mps not in ("auto", "true", "false"):
        raise ConfigError(f"hydra.launcher.mps must be auto, true or false, got {settings.get('mps')!r}")
    chosen = settings.get("gpus", "auto")
    if chosen == "auto":
        gpus = visible_gpus()
    elif isinstance(chosen, (list, tuple)):
        gpus = [str(gpu) for gpu in chosen]
    else:
        raise ConfigError(f"hydra.launcher.gpus must be auto or a list of GPU ids (e.g. [0,1]; [] for none), "
                          f"got {chosen!r}")
    if gpus:
        per_gpu = settings.get("jobs_per_device")
        per_gpu = measured_jobs_per_device(gpus) if per_gpu == "auto" else _positive(per_gpu, "jobs_per_device")
        concurrent = min(n_jobs, per_gpu * len(gpus))
    else:
        cpu_jobs = settings.get("cpu_jobs")
        per_gpu = 0
        concurrent = min(n_jobs, available_cpus() if cpu_jobs is None else _positive(cpu_jobs, "cpu_jobs"))
    threads = None if os.environ.get("OMP_NUM_THREADS") else max(1, available_cpus() // max(1, concurrent))
    return Plan(gpus=tuple(gpus), per_gpu=per_gpu, concurrent=max(1, concurrent), threads=threads, mps=mps)


@contextmanager
def mps_for(plan: Plan, log_root: Path):
    """CUDA MPS for the plan's GPUs while the block runs (when it applies); yields its clients' env."""
    if not plan.gpus or plan.mps == "false" or (plan.mps == "auto" and plan.concurrent <= len(plan.gpus)):
        yield {}
        return
    mps = Mps(log_root, gpus=plan.gpus)
    started, why = mps.start()
    if not started:
        if plan.mps == "true":
            raise ConfigError(f"hydra.launcher.mps=true but CUDA MPS did not start: {why}")
        log.warning("CUDA MPS did not start (%s): the packed jobs time-slice the GPU instead", why)
        yield {}
        return
    log.info("CUDA MPS on (pipe folder %s, logs %s)", mps.pipe_dir, mps.log_dir)
    try:
        yield mps.client_env()
    finally:
        mps.stop()


IGNORE_SIGNALS = "BERT_LOTTERY_PACK_IGNORE_SIGNALS"  # signals (names, comma-separated) that a job ignores


def job_env(plan: Plan, slot_gpu: int | None, mps_env: dict[str, str]) -> dict[str, str]:
    """The environment of a job that runs on GPU number `slot_gpu` of the plan (None: the CPU)."""
    env = {**os.environ, **mps_env}
    if slot_gpu is None:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU: hide any GPU
    else:
        # Under MPS the daemon sees exactly the plan's GPUs and numbers them from 0 for its clients.
        env["CUDA_VISIBLE_DEVICES"] = str(slot_gpu) if mps_env else plan.gpus[slot_gpu]
    if plan.threads is not None:
        env["OMP_NUM_THREADS"] = str(plan.threads)
    return env


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_packed(commands: Sequence[Sequence[str]], plan: Plan, mps_env: dict[str, str], names: Sequence[str],
               extra_env: dict[str, str] | None = None) -> list[int]:
    """Runs every command, `plan.concurrent` at a time, each on the least busy GPU; their exit codes.

    Any exception here (an interrupt, SIGTERM) stops the running jobs (SIGTERM, then SIGKILL after
    STOP_GRACE_S) before it propagates.
    """
    pending = deque(range(len(commands)))
    codes: list[int | None] = [None] * len(commands)
    running: dict[subprocess.Popen, tuple[int, int | None, float]] = {}
    load: Counter = Counter()
    try:
        while pending or running:
            while pending and len(running) < plan.concurrent:
                index = pending.popleft()
                gpu = min(range(len(plan.gpus)), key=lambda g: load[g]) if plan.gpus else None
                env = {**job_env(plan, gpu, mps_env), **(extra_env or {})}
                proc = subprocess.Popen(list(commands[index]), env=env)
                running[proc] = (index, gpu, time.monotonic())
                load[gpu] += 1
                where = "the CPU" if gpu is None else f"GPU {plan.gpus[gpu]}"
                log.info("%s started on %s (pid %d)", names[index], where, proc.pid)
            time.sleep(POLL_S)
            for proc in [p for p in running if p.poll() is not None]:
                index, gpu, started = running.pop(proc)
                load[gpu] -= 1
                codes[index] = proc.returncode
                log.info("%s ended after %.1f s (%s)", names[index], time.monotonic() - started,
                         _exit_text(proc.returncode))
    finally:
        _stop(running)
    return [int(code) for code in codes]


def _stop(running: dict[subprocess.Popen, Any]) -> None:
    live = [proc for proc in running if proc.poll() is None]
    if not live:
        return
    log.warning("stopping %d running job(s)", len(live))
    for proc in live:
        proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in live:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def stop_on_sigterm():
    """SIGTERM (`timeout`, `kill`, a scheduler) ends the pack as an interrupt does: its jobs and
    its MPS daemon are stopped first."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def read_result(path: Path, code: int, overrides: Sequence[str], name: str) -> JobReturn:
    if path.is_file():
        try:
            return pickle.loads(path.read_bytes())
        except Exception as error:  # noqa: BLE001  (any unpickling failure: the job is failed, not the sweep)
            why = f"its result could not be read back ({type(error).__name__}: {error})"
    else:
        why = f"its process ended without a result ({_exit_text(code)}): see the job's log in its folder"
    return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=JobDied(f"{name}: {why}"))


def run_jobs(*, hydra_context, config, task_function, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
             plan: Plan, mps_log_root: Path, ignore_signals: Sequence[str] = ()) -> list[JobReturn]:
    """Runs the jobs of one sweep batch as packed processes; their JobReturns in order.

    `ignore_signals`: signals meant for this launcher (a scheduler's warning before a time limit)
    that the jobs ignore rather than die of."""
    import cloudpickle  # submitit's dependency; pickles the task function by value, as loky does
    from hydra.core.singleton import Singleton

    nums = [initial_job_idx + i for i in range(len(job_overrides))]
    names = [f"job #{num}" for num in nums]
    with tempfile.TemporaryDirectory(prefix="lottery-pack-") as tmp:
        sweep = Path(tmp) / "sweep.pkl"
        sweep.write_bytes(cloudpickle.dumps({
            "hydra_context": hydra_context, "config": config, "task_function": task_function,
            "singleton_state": Singleton.get_state(), "overrides": [list(o) for o in job_overrides], "nums": nums}))
        results = [Path(tmp) / f"job{num}.pkl" for num in nums]
        commands = [[sys.executable, "-m", JOB_MODULE, str(sweep), str(i), str(results[i])] for i in range(len(nums))]
        with stop_on_sigterm(), mps_for(plan, mps_log_root) as mps_env:
            codes = run_packed(commands, plan, mps_env, names, {IGNORE_SIGNALS: ",".join(ignore_signals)})
        return [read_result(results[i], codes[i], job_overrides[i], names[i]) for i in range(len(nums))]


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """The pack launcher's `launch`: this machine's GPUs (or CPUs) run the batch."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plan = make_plan(launcher.settings, len(job_overrides))
    log.info("Packing %d jobs: %s; sweep output dir: %s", len(job_overrides), plan.describe(), sweep_dir)
    for i, overrides in enumerate(job_overrides):
        log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
    return run_jobs(hydra_context=launcher.hydra_context, config=launcher.config, task_function=launcher.task_function,
                    job_overrides=job_overrides, initial_job_idx=initial_job_idx, plan=plan,
                    mps_log_root=sweep_dir / ".mps")
