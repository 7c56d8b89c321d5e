"""Sweeps submitted to a real SLURM (conf/hydra/launcher/slurm.yaml through hydra-submitit-launcher).

Needs a running cluster with an idle node: `bash .ci/slurm/start.sh` starts a one-node one here
(`.ci/run` does it when CI=true or LOTTERY_SLURM=1) and `bash .ci/slurm/stop.sh` stops it.
Without one, these tests are skipped.
"""

import functools
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.helpers import ROOT, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]
PARTITION = os.environ.get("LOTTERY_SLURM_PARTITION", "debug")  # the one .ci/slurm/start.sh creates


@functools.lru_cache(maxsize=1)
def _idle_nodes() -> str:
    """The partition's idle nodes; '' without SLURM (`scontrol ping` fails at once, `sinfo` only after ~10 s)."""
    if shutil.which("sinfo") is None or shutil.which("scontrol") is None:
        return ""
    try:
        if subprocess.run(["scontrol", "ping"], check=False, capture_output=True, timeout=20).returncode != 0:
            return ""
        out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-t", "idle,mix", "-o", "%n"], check=False,
                             capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@pytest.fixture
def slurm_sweep(tmp_path, tiny_glue):
    """Runs a tiny multirun on SLURM in a subprocess; cancels its jobs if the test ends early."""
    if not _idle_nodes():
        pytest.skip(f"no SLURM with an idle node in partition {PARTITION!r} "
                    "(start one with: bash .ci/slurm/start.sh)")
    name = f"lottery-test-{uuid.uuid4().hex[:8]}"

    def sweep(*overrides: str, glue=tiny_glue) -> subprocess.CompletedProcess:
        args = ["-m", "hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", f"hydra.launcher.name={name}",
                "model=tiny", "recipe.max_epochs=1", "recipe.batch_size=16", "recipe.eval_batch_size=32",
                "trainer.enable_progress_bar=false", f"data.glue_dir={glue}", f"paths.root={tmp_path / 'out'}",
                *overrides]
        return run_cli(args, cwd=ROOT, timeout=300, env={"OMP_NUM_THREADS": "1"})

    yield sweep
    subprocess.run(["scancel", "-n", name], check=False, capture_output=True, timeout=30)


def _state(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, check=False,
                          timeout=30).stdout.strip()


def _tail(proc, n: int = 4000) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-n:]}\n--- stderr\n{proc.stderr[-n:]}"


def test_a_sweep_runs_as_a_slurm_job_array_and_returns_every_result(slurm_sweep, tmp_path):
    proc = slurm_sweep("experiment=finetune", "task=rte", "seed=1,2")
    assert proc.returncode == 0, _tail(proc)
    assert "Submitit 'slurm' sweep output dir" in proc.stdout
    root = tmp_path / "out"
    for seed in (1, 2):
        assert list((root / "tiny" / "rte" / f"seed{seed}").glob("finetune-*/metrics.json")), seed
    # Each job ran as a task of one SLURM array: one submitit folder per task, its logs inside.
    folders = sorted(p.name for p in (root / ".submitit").iterdir() if p.is_dir())
    tasks = [name for name in folders if re.fullmatch(r"\d+_\d+", name)]
    assert len(tasks) == 2 and len({name.split("_")[0] for name in tasks}) == 1, folders
    for name in tasks:
        log = "".join(p.read_text() for p in (root / ".submitit" / name).glob("*_log.out"))
        assert "dev metrics of tiny on rte" in log and "Job completed successfully" in log, name


def test_a_failing_slurm_job_fails_the_sweep_with_its_error(slurm_sweep, tmp_path, tiny_glue):
    glue = tmp_path / "glue"
    shutil.copytree(tiny_glue, glue)
    (glue / "CoLA" / "train.tsv").write_text("a malformed row\n")
    proc = slurm_sweep("experiment=finetune", "task=rte,cola", "seed=1", glue=glue)
    assert proc.returncode != 0, _tail(proc)
    assert "GlueDataError" in proc.stderr and "CoLA/train.tsv:1: malformed row" in proc.stderr, _tail(proc)
    assert list((tmp_path / "out" / "tiny" / "rte" / "seed1").glob("finetune-*/metrics.json"))


def test_a_packed_slurm_sweep_runs_groups_of_experiments_as_one_slurm_job_each(slurm_sweep, tmp_path):
    # No GPU on the test node: a group is cpu_jobs experiments, run 2 at a time by the pack on the node.
    proc = slurm_sweep("experiment=finetune", "task=rte", "seed=1,2,3", "hydra.launcher.jobs_per_device=2",
                       "hydra.launcher.cpu_jobs=2")
    assert proc.returncode == 0, _tail(proc)
    assert "Packing 3 jobs into 2 SLURM job(s) of up to 2 experiments" in proc.stdout
    root = tmp_path / "out"
    for seed in (1, 2, 3):
        assert list((root / "tiny" / "rte" / f"seed{seed}").glob("finetune-*/metrics.json")), seed
        assert list((root / "multirun" / "tiny" / "rte" / f"seed{seed}").glob("finetune-*/.hydra/overrides.yaml")), seed
    tasks = sorted(p.name for p in (root / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(tasks) == 2, tasks  # one SLURM array task per group
    logs = {name: "".join(p.read_text() for p in (root / ".submitit" / name).glob("*_log.*")) for name in tasks}
    assert sum("Packing 2 jobs on this node: 2 at a time on the CPU" in log for log in logs.values()) == 1, logs
    assert all("Job completed successfully" in log for log in logs.values()), logs


def test_a_packed_slurm_job_signalled_before_its_time_limit_is_requeued_and_resumes(tmp_path, tiny_glue):
    """SLURM's warning signal (USR2, signal_delay_s before the limit) reaches the pack: it requeues
    its SLURM job and stops its experiments; the requeued job resumes them from their checkpoints."""
    if not _idle_nodes():
        pytest.skip(f"no SLURM with an idle node in partition {PARTITION!r} (start one with: bash .ci/slurm/start.sh)")
    name = f"lottery-test-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "out"
    # 48 examples in batches of 16: 3 steps an epoch. A checkpoint every 2 steps (one every 3 would
    # always fall on an epoch's last batch, where none is taken: pipeline/checkpoints.py StepCheckpoint).
    args = [sys.executable, "-m", "lottery", "-m", "hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", f"hydra.launcher.name={name}",
            "hydra.launcher.jobs_per_device=2", "hydra.launcher.cpu_jobs=2", "experiment=finetune", "task=rte",
            "seed=1,2", "model=tiny", "recipe.max_epochs=12", "recipe.batch_size=16", "recipe.checkpoint_every_n_steps=2",
            "trainer.enable_progress_bar=false", f"data.glue_dir={tiny_glue}", f"paths.root={root}"]
    sweep = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while len(list(root.glob("tiny/rte/seed*/finetune-*/checkpoints/last.ckpt"))) < 2:
            assert sweep.poll() is None and time.monotonic() < deadline, "no checkpoint of both experiments in time"
            time.sleep(0.5)
        job = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True,
                             timeout=30).stdout.split()
        assert len(job) == 1, job  # the two experiments are one SLURM job
        subprocess.run(["scancel", "--signal=USR2", job[0]], check=True, timeout=30)
        while _state(job[0]) != "PENDING":  # requeued, with a begin time minutes ahead (SLURM's): start it now
            assert sweep.poll() is None and time.monotonic() < deadline, "the job was not requeued in time"
            time.sleep(0.5)
        subprocess.run(["scontrol", "update", f"JobId={job[0]}", "StartTime=now"], check=True, timeout=30)
        output, _ = sweep.communicate(timeout=400)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
        subprocess.run(["scancel", "-n", name], check=False, capture_output=True, timeout=30)
    assert sweep.returncode == 0, output[-4000:]
    logs = "".join(p.read_text() for p in (root / ".submitit").rglob("*_log.out"))
    assert "Requeued job" in logs and "stopping 2 running job(s)" in logs, logs[-4000:]
    for seed in (1, 2):
        finetune = next((root / "tiny" / "rte" / f"seed{seed}").glob("finetune-*"))
        assert (finetune / "metrics.json").is_file()
        assert f"resuming finetune from {finetune}/checkpoints/last.ckpt" in logs, seed
