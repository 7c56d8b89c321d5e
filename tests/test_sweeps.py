"""Hydra multirun sweeps end to end, in subprocesses through the basic launcher: the smoke sweep
and its report, a sweep killed midway and rerun, and a failing job among good ones."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import CONF, ROOT, experiment_dir, finetune_dir, run_cli

# One intra-op thread per process: the tiny model gains nothing from more, and on a busy 2-core
# machine OpenMP threads that wait on each other make a job several times slower.
ENV = {"OMP_NUM_THREADS": "1"}
SHORT = ["model=tiny", "recipe.max_epochs=1", "recipe.batch_size=16", "recipe.eval_batch_size=32",
         "trainer.enable_progress_bar=false"]


def _tail(proc, n: int = 4000) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-n:]}\n--- stderr\n{proc.stderr[-n:]}"


@pytest.mark.e2e
def test_smoke_sweep_runs_every_job_and_the_report_reads_them(tmp_path, tiny_glue):
    root = tmp_path / "out"
    proc = run_cli(["-m", "+sweep=smoke", "seed=1", f"data.glue_dir={tiny_glue}", f"paths.root={root}"],
                   cwd=ROOT, env=ENV, timeout=420)
    assert proc.returncode == 0, _tail(proc)
    assert "Launching 4 jobs locally" in proc.stdout  # {rte, stsb} x {structured, magnitude}
    for task in ("rte", "stsb"):
        for variant in ("structured-paper", "magnitude-paper"):
            assert (experiment_dir(root, task, variant, seed=1) / "results.json").is_file(), (task, variant)
    # Each (task, seed) was fine-tuned once, by its structured job; its magnitude job reused it.
    for task in ("rte", "stsb"):
        finetuned = finetune_dir(root, task, seed=1) / "metrics.json"
        assert f"reusing finished result {finetuned}" in proc.stdout + proc.stderr, task

    report = subprocess.run([sys.executable, "-m", "lottery.report", str(root)], check=False, cwd=ROOT,
                            capture_output=True, text=True, timeout=180, env={**os.environ, **ENV})
    assert report.returncode == 0, _tail(report)
    for name in ("table.md", "table.csv", "table.tex"):
        assert (root / "report" / name).stat().st_size > 0, name
    table = (root / "report" / "table.md").read_text()
    assert "rte" in table and "stsb" in table
    assert list((root / "report" / "figures").glob("*.png"))


@pytest.mark.e2e
def test_a_sweep_killed_midway_redoes_only_its_unfinished_jobs(tmp_path, tiny_glue):
    root = tmp_path / "out"
    args = ["-m", "experiment=finetune", "task=rte", "seed=1,2", *SHORT, f"data.glue_dir={tiny_glue}",
            f"paths.root={root}"]
    first, second = (root / "tiny" / "rte" / f"seed{seed}" for seed in (1, 2))

    def done(seed_dir):
        return list(seed_dir.glob("finetune-*/metrics.json"))

    sweep = subprocess.Popen([sys.executable, "-m", "lottery", *args], cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "WANDB_MODE": "offline", **ENV})
    try:
        deadline = time.monotonic() + 240
        while not done(first):  # the first job is done: kill the sweep (the second job has started)
            assert sweep.poll() is None, f"the sweep ended (exit {sweep.returncode}) before its first job finished"
            assert time.monotonic() < deadline, "the first job did not finish in time"
            time.sleep(0.05)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    assert sweep.returncode == -signal.SIGKILL
    assert not done(second)
    first_done = done(first)[0]
    stamp = first_done.stat().st_mtime_ns

    rerun = run_cli(args, cwd=ROOT, env=ENV)
    assert rerun.returncode == 0, _tail(rerun)
    log = rerun.stdout + rerun.stderr
    assert f"reusing finished result {first_done}" in log  # the finished job only read its result
    assert "reusing finished result " + str(second) not in log
    assert first_done.stat().st_mtime_ns == stamp
    assert done(second)  # the unfinished one did its work


@pytest.mark.e2e
def test_a_failing_job_fails_the_sweep_and_the_others_finish(tmp_path, tiny_glue):
    glue = tmp_path / "glue"
    shutil.copytree(tiny_glue, glue)
    (glue / "CoLA" / "train.tsv").write_text("a malformed row\n")
    root = tmp_path / "out"
    proc = run_cli(["-m", "experiment=finetune", "task=cola,rte", "seed=1", *SHORT, f"data.glue_dir={glue}",
                    f"paths.root={root}"], cwd=ROOT, env=ENV)
    assert proc.returncode != 0, _tail(proc)
    assert re.search(r"Error executing job with overrides: \[[^]]*'task=cola'", proc.stderr), _tail(proc)
    assert "GlueDataError" in proc.stderr and "CoLA/train.tsv:1: malformed row" in proc.stderr
    assert list((root / "tiny" / "rte" / "seed1").glob("finetune-*/metrics.json"))  # ran after the failure
    assert not list((root / "tiny" / "cola" / "seed1").glob("finetune-*/metrics.json"))


@pytest.mark.parametrize("sweep", ["smoke", "paper"])
def test_the_sweep_files_compose_and_hold_their_grid(sweep):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+sweep={sweep}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params.experiment == "structured,magnitude"  # the experiment group, swept like any other
    if sweep == "paper":
        assert len(params.task.split(",")) == 9 and params.seed == "1337,42,86,71,166"
    else:
        assert params.task == "rte,stsb" and len(params.seed.split(",")) == 2
        assert cfg.model.id == "tiny" and cfg.data.train_limit <= 128 and cfg.recipe.max_epochs == 1
