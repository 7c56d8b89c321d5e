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
