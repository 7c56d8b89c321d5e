"""Fault injection: `kill -9` at several points of every stage, in the first and in a later epoch,
then the same command again, gives byte-identical metrics, masks, weights and results to a run that
was never interrupted.

Each experiment runs as a real `python -m lottery` process on the tiny model with a slice of the
real SST-2 (20 batches an epoch, long enough that a kill lands inside a stage). A watcher waits for
a file that proves the run is where it should be killed (a checkpoint, and for a later epoch a
checkpoint whose epoch is past the first; a search iteration; a magnitude step), then SIGKILLs the
whole process group (the DDP ranks too), and the command is started again. The uninterrupted runs
are shared by every comparison.
"""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from pipeline.config import SHARED_GLUE
from tests.helpers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.real_glue("SST-2")]

# tickets.cost=false: latency is a measurement, never the same twice; everything else must be.
# 640 examples in batches of 32: 20 steps an epoch (10 per rank under DDP), a checkpoint every 5.
BASE = ["model=tiny", "task=sst2", "seed=7", "tickets.cost=false", f"data.glue_dir={SHARED_GLUE}", "data.train_limit=640",
        "data.eval_limit=200", "recipe.max_epochs=2", "recipe.max_length=48", "recipe.checkpoint_every_n_steps=5",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=5"]
EXPERIMENTS = {
    "structured": ["experiment=structured", "structured.head_fraction=0.25", "tickets.kinds=[good,random]"],
    "magnitude": ["experiment=magnitude", "magnitude.fraction=0.3", "tickets.kinds=[good,bad]"],
    "imp": ["experiment=imp", "imp.fraction=0.3", "imp.rounds=3", "imp.epochs_per_round=1",
            "search.threshold=0.5", "tickets.kinds=[good]", "tickets.retrain=false"],
    "ddp": ["trainer=ddp_sim"],  # the fine-tune of 2 processes (its own folder: another execution)
}


STEPS_PER_EPOCH = 20


def past_the_first_epoch(steps: int = STEPS_PER_EPOCH):
    """A test that a checkpoint holds all of the first epoch's `steps` optimizer steps, so the run
    is in a later epoch (a checkpoint taken on the first epoch's last batch counts: resuming one
    skipped the second epoch, so none is taken there now)."""

    def test(path: Path) -> bool:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"] >= steps
        except (OSError, RuntimeError, KeyError):  # renamed away between the glob and the load
            return False

    return test


later_epoch = past_the_first_epoch()


# Where to kill each experiment: (what, glob under the seed folder, test on the file found). The
# fine-tune is shared, so only the structured chain kills the single-process one.
KILL_POINTS = {
    "structured": [("fine-tune in epoch 1", "finetune-*/checkpoints/last.ckpt", None),
                   ("fine-tune in epoch 2", "finetune-*/checkpoints/last.ckpt", later_epoch),
                   ("search after its first iterations", "structured-*/search/iter_001.json", None),
                   ("retraining in epoch 1", "structured-*/retrained/good/checkpoints/last.ckpt", None),
                   ("retraining in epoch 2", "structured-*/retrained/good/checkpoints/last.ckpt", later_epoch)],
    "magnitude": [("magnitude search mid-way", "magnitude-*/search/step_02.json", None),
                  ("magnitude retraining in epoch 1", "magnitude-*/retrained/good/checkpoints/last.ckpt", None),
                  ("magnitude retraining in epoch 2", "magnitude-*/retrained/good/checkpoints/last.ckpt", later_epoch)],
    "imp": [("IMP in round 1", "imp-*/search/checkpoints/last.ckpt", None),
            ("IMP in round 2", "imp-*/search/checkpoints/last.ckpt", later_epoch)],
    "ddp": [("2-process DDP fine-tune in epoch 2", "finetune-*/checkpoints/last.ckpt",
             past_the_first_epoch(STEPS_PER_EPOCH // 2))],  # each rank takes half the batches
}
ENV = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
SKIPPED = {"logs", ".hydra", "checkpoints", ".cache"}


def command(root: Path, experiment: str) -> list[str]:
    return [sys.executable, "-m", "lottery", *BASE, *EXPERIMENTS[experiment], f"paths.root={root}"]


def run(root: Path, experiment: str) -> None:
    done = subprocess.run(command(root, experiment), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def run_and_kill(root: Path, experiment: str, trigger: str, test=None) -> bool:
    """Start the experiment, SIGKILL it once a file matching `trigger` (a glob) exists and passes
    `test`; False if the process ended first."""
    seed_dir = root / "tiny" / "sst2" / "seed7"
    process = subprocess.Popen(command(root, experiment), cwd=ROOT, env=ENV, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if any(test is None or test(path) for path in seed_dir.glob(trigger)):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True
            if process.poll() is not None:
                return False
            time.sleep(0.02)
        raise AssertionError(f"{trigger} did not appear in time")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def result_files(root: Path) -> dict[Path, bytes]:
    """Every file a finished run keeps, but logs and Hydra's bookkeeping (checked separately)."""
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not SKIPPED & set(relative.parts) and not path.name.startswith((".lock", ".running")):
            files[relative] = path.read_bytes()
    return files


def uninterrupted(root: Path) -> None:
    for experiment in EXPERIMENTS:
        run(root, experiment)


def killed_and_rerun(root: Path) -> list[str]:
    """The experiments killed at each of their points and started again until they finished; the
    points that were hit."""
    kills = []
    for experiment, points in KILL_POINTS.items():
        for what, trigger, test in points:
            if run_and_kill(root, experiment, trigger, test):
                kills.append(what)
        run(root, experiment)
    return kills


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(uninterrupted root, killed root, kill points hit). The uninterrupted runs go in a second
    thread while the killed ones run here: each is one single-threaded process at a time, so the two
    chains share 2 cores instead of waiting for each other (the files do not depend on timing)."""
    reference, killed = tmp_path_factory.mktemp("uninterrupted"), tmp_path_factory.mktemp("killed")
    with ThreadPoolExecutor(max_workers=1) as pool:
        finished = pool.submit(uninterrupted, reference)
        kills = killed_and_rerun(killed)
        finished.result()
    return reference, killed, kills


@pytest.fixture(scope="module")
def reference(runs):
    return runs[0]


@pytest.fixture(scope="module")
def killed(runs):
    return runs[1], runs[2]


def test_every_kill_point_was_hit(killed):
    _, kills = killed
    assert kills == [what for points in KILL_POINTS.values() for what, _, _ in points]


def test_killed_runs_end_byte_identical_to_uninterrupted_ones(reference, killed):
    root, _ = killed
    expected, got = result_files(reference), result_files(root)
    assert sorted(got) == sorted(expected)
    differing = [str(path) for path in expected if expected[path] != got[path]]
    assert not differing, differing
    kinds = {path.suffix for path in expected}
    assert {".json", ".npz", ".safetensors"} <= kinds  # metrics, masks and weights were compared
    assert len(list(reference.glob("tiny/sst2/seed7/finetune-*/model/model.safetensors"))) == 2  # one and 2 processes
    assert not list(root.rglob(".*.tmp")), "temporary files of killed writers survived the reruns"


def test_training_logs_keep_the_rows_from_before_the_kill(reference, killed):
    root, _ = killed
    logs = sorted(p.relative_to(reference) for p in reference.rglob("logs/finetune/metrics.csv"))
    assert logs
    for relative in logs:
        assert (root / relative).read_text() == (reference / relative).read_text(), relative
