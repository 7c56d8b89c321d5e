"""The pack launcher (`hydra/launcher=pack`, hydra_plugins/bert_lottery_pack): jobs K at a time per
GPU (or a CPU share each), each in its own process, pinned, under CUDA MPS when it starts.

Most checks run a small Hydra app whose jobs only record where and when they ran
(tests/pack_app), with fake `nvidia-cuda-mps-control` and `nvidia-smi` on PATH where GPUs are
pretended; the `e2e` ones run real lottery sweeps on the tiny model.
"""

import dataclasses
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hydra_plugins.bert_lottery_pack import _core, _mps
from lottery.errors import ConfigError
from pipeline import threads
from tests.helpers import ROOT, finetune_dir, run_cli

APP = ROOT / "tests" / "pack_app" / "app.py"
PACK_DEFAULTS = ("hydra.launcher.jobs_per_device", "hydra.launcher.cpu_jobs")

FAKE_MPS = """#!/usr/bin/env bash
# Records what it was asked; `-d` fails when FAKE_MPS_FAIL is set.
if [ "$1" = "-d" ]; then
  echo "start pipe=$CUDA_MPS_PIPE_DIRECTORY logs=$CUDA_MPS_LOG_DIRECTORY gpus=$CUDA_VISIBLE_DEVICES" >> "$FAKE_MPS_LOG"
  if [ -n "$FAKE_MPS_FAIL" ]; then echo "$FAKE_MPS_FAIL" >&2; exit 1; fi
  exit 0
fi
read -r command
echo "$command pipe=$CUDA_MPS_PIPE_DIRECTORY" >> "$FAKE_MPS_LOG"
"""
FAKE_SMI = """#!/usr/bin/env bash
# Two GPUs of model $FAKE_GPU_NAME.
case "$*" in
  *uuid*) printf 'GPU-aaaa\\nGPU-bbbb\\n' ;;
  *name*) echo "$FAKE_GPU_NAME" ;;
esac
"""


@pytest.fixture
def fake_gpu_tools(tmp_path):
    """A folder with fake nvidia-cuda-mps-control and nvidia-smi, and the environment that uses them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("nvidia-cuda-mps-control", FAKE_MPS), ("nvidia-smi", FAKE_SMI)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "mps.log"
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_MPS_LOG": str(log),
            "FAKE_GPU_NAME": "NVIDIA H200"}


def run_app(out: Path, *overrides: str, env: dict | None = None, launcher: str = "pack_base",
            timeout: int = 120) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    environment.update({"PYTHONPATH": str(ROOT), **(env or {})})
    out.mkdir(parents=True, exist_ok=True)
    if launcher == "pack_base":  # two at a time unless the test says otherwise
        given = {override.split("=")[0] for override in overrides}
        overrides = [f"{key}=2" for key in PACK_DEFAULTS if key not in given] + list(overrides)
    return subprocess.run([sys.executable, str(APP), "-m", f"hydra/launcher={launcher}", f"out={out}", *overrides],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout, check=False)


def records(out: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in out.glob("job*.json")), key=lambda r: r["job"])


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that hold one instant; a job seen at one instant only (a log of one line)
    counts at that instant, so a start sorts before an end at the same time."""
    events = sorted([(start, 0, 1) for start, _ in intervals] + [(end, 1, -1) for _, end in intervals])
    running = peak = 0
    for _, _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def _tail(proc, n: int = 3000) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-n:]}\n--- stderr\n{proc.stderr[-n:]}"


# ----- the launcher on this machine's CPUs -----
@pytest.mark.e2e
def test_jobs_run_k_at_a_time_each_with_its_cpu_share_in_the_basic_launchers_folders(tmp_path):
    packed, basic = tmp_path / "packed", tmp_path / "basic"
    proc = run_app(packed, "job=0,1,2,3", "sleep=0.5", "meet=2")
    assert proc.returncode == 0, _tail(proc)
    jobs = records(packed)
    assert [r["job"] for r in jobs] == [0, 1, 2, 3] and len({r["pid"] for r in jobs}) == 4  # a process each
    assert [r["met"] for r in jobs[:2]] == [2, 2]  # the first two ran at once
    assert most_at_once([(r["start"], r["end"]) for r in jobs]) <= 2  # never more
    share = str(max(1, _core.available_cpus() // 2))
    assert {(r["OMP_NUM_THREADS"], r["CUDA_VISIBLE_DEVICES"]) for r in jobs} == {(share, "")}

    # Hydra's files of each job lie where the basic launcher puts them, with the same content.
    # (one at a time, they cannot meet: `meet` is the one setting that differs)
    assert run_app(basic, "job=0,1,2,3", "sleep=0.5", "meet=0", launcher="basic").returncode == 0

    def bookkeeping(out):
        return {p.relative_to(out): "".join(line.replace(str(out), "OUT") for line in p.read_text().splitlines(True)
                                            if "meet" not in line)
                for p in (out / "multirun").rglob("*") if p.name in ("overrides.yaml", "config.yaml", "app.log")}

    got = bookkeeping(packed)
    assert got == bookkeeping(basic) and len(got) == 12  # per job: .hydra/config.yaml, .hydra/overrides.yaml, app.log


@pytest.mark.e2e
def test_a_failing_job_fails_the_sweep_after_the_others_finish(tmp_path):
    proc = run_app(tmp_path, "job=0,1,2", "fail=0", "hydra.launcher.cpu_jobs=1")
    assert proc.returncode != 0, _tail(proc)
    assert re.search(r"Error executing job with overrides: \[[^]]*'job=0'", proc.stderr), _tail(proc)
    assert "ValueError: job 0 fails on purpose" in proc.stderr
    assert [r["job"] for r in records(tmp_path)] == [0, 1, 2]  # the later jobs still ran


@pytest.mark.e2e
def test_a_job_whose_process_dies_fails_the_sweep_and_spares_the_others(tmp_path):
    proc = run_app(tmp_path, "job=0,1,2", "die=1", "sleep=0.5")
    assert proc.returncode != 0, _tail(proc)
    assert re.search(r"Error executing job with overrides: \[[^]]*'job=1'", proc.stderr), _tail(proc)
    assert "JobDied: job #1: its process ended without a result (killed by SIGKILL)" in proc.stderr
    assert [r["job"] for r in records(tmp_path)] == [0, 1, 2]


# ----- GPUs (pretended) and MPS -----
@pytest.mark.e2e
def test_jobs_are_pinned_k_per_gpu_under_an_mps_daemon_that_the_pack_starts_and_stops(tmp_path, fake_gpu_tools):
    proc = run_app(tmp_path, "job=0,1,2,3,4,5", "sleep=0.5", "meet=4", "hydra.launcher.gpus=[2,3]",
                   "hydra.launcher.jobs_per_device=2", env=fake_gpu_tools)
    assert proc.returncode == 0, _tail(proc)
    mps_log = Path(fake_gpu_tools["FAKE_MPS_LOG"]).read_text().splitlines()
    start, pipe = mps_log[0], mps_log[0].split()[1].removeprefix("pipe=")
    assert start.startswith("start ") and start.endswith(" gpus=2,3")  # the daemon sees exactly the pack's GPUs
    assert f"logs={tmp_path / 'multirun' / '.mps' / socket.gethostname()}-" in start
    assert mps_log[1:] == [f"get_server_list pipe={pipe}", f"quit pipe={pipe}"]
    assert not Path(pipe).exists()  # its pipe folder is gone with it
    jobs = records(tmp_path)
    assert {r["CUDA_MPS_PIPE_DIRECTORY"] for r in jobs} == {pipe}
    # Under MPS the clients number the daemon's GPUs from 0: two jobs at a time on each.
    assert [r["met"] for r in jobs[:4]] == [4, 4, 4, 4]  # four at once
    assert sorted({r["CUDA_VISIBLE_DEVICES"] for r in jobs}) == ["0", "1"]
    for gpu in ("0", "1"):  # a freed slot takes the next job, so the split need not be 3 + 3
        on_gpu = [(r["start"], r["end"]) for r in jobs if r["CUDA_VISIBLE_DEVICES"] == gpu]
        assert most_at_once(on_gpu) <= 2, gpu  # never more than two on a GPU
    assert f"CUDA MPS on (pipe folder {pipe}" in proc.stdout


@pytest.mark.e2e
def test_without_mps_the_jobs_get_the_gpu_ids_themselves_and_the_users_omp_num_threads(tmp_path, fake_gpu_tools):
    # gpus=auto without CUDA_VISIBLE_DEVICES: every GPU that nvidia-smi lists, by UUID
    env = {**fake_gpu_tools, "FAKE_MPS_FAIL": "MPS is not supported here", "OMP_NUM_THREADS": "3"}
    proc = run_app(tmp_path, "job=0,1,2,3", "hydra.launcher.jobs_per_device=2", env=env)
    assert proc.returncode == 0, _tail(proc)
    assert "CUDA MPS did not start (nvidia-cuda-mps-control -d exited 1: MPS is not supported here)" in proc.stdout
    jobs = records(tmp_path)
    assert sorted(r["CUDA_VISIBLE_DEVICES"] for r in jobs) == ["GPU-aaaa", "GPU-aaaa", "GPU-bbbb", "GPU-bbbb"]
    assert {r["CUDA_MPS_PIPE_DIRECTORY"] for r in jobs} == {None}
    assert {r["OMP_NUM_THREADS"] for r in jobs} == {"3"}  # set by the user: kept


@pytest.mark.e2e
def test_sigterm_stops_the_running_jobs_and_the_mps_daemon(tmp_path, fake_gpu_tools):
    environment = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, "PYTHONPATH": str(ROOT),
                   **fake_gpu_tools}
    sweep = subprocess.Popen([sys.executable, str(APP), "-m", "hydra/launcher=pack_base", f"out={tmp_path}",
                              "job=0,1,2", "sleep=120", "hydra.launcher.gpus=[0]", "hydra.launcher.jobs_per_device=2",
                              "hydra.launcher.cpu_jobs=2"],
                             cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        pids, lines = [], []
        deadline = time.monotonic() + 60
        while len(pids) < 2:
            line = sweep.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
            if " started on GPU 0 (pid " in line:
                pids.append(int(line.rsplit("(pid ", 1)[1].rstrip(")\n")))
        time.sleep(1.0)
        sweep.send_signal(signal.SIGTERM)  # to the launcher only
        rest, _ = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    assert sweep.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    assert "stopping 2 running job(s)" in rest
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "job #2 started" not in rest and records(tmp_path) == []
    assert Path(fake_gpu_tools["FAKE_MPS_LOG"]).read_text().splitlines()[-1].startswith("quit ")


def test_an_mps_daemon_left_by_a_killed_pack_is_stopped_by_the_next(tmp_path, fake_gpu_tools, monkeypatch):
    monkeypatch.setenv("PATH", fake_gpu_tools["PATH"])
    monkeypatch.setenv("FAKE_MPS_LOG", fake_gpu_tools["FAKE_MPS_LOG"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    pipe = tmp_path / "old-pipe"
    pipe.mkdir()
    record = tmp_path / "mps" / f"{socket.gethostname()}-{dead.pid}" / _mps.PIPE_RECORD
    record.parent.mkdir(parents=True)
    record.write_text(str(pipe))
    alive = tmp_path / "mps" / f"{socket.gethostname()}-{os.getpid()}" / _mps.PIPE_RECORD  # a running pack's
    alive.parent.mkdir()
    alive.write_text(str(tmp_path))
    _mps.stop_orphans(tmp_path / "mps")
    assert Path(fake_gpu_tools["FAKE_MPS_LOG"]).read_text().splitlines() == [f"quit pipe={pipe}"]
    assert not record.exists() and not pipe.exists() and alive.exists()


def test_mps_true_fails_when_mps_cannot_start(tmp_path, fake_gpu_tools, monkeypatch):
    for name in ("PATH", "FAKE_MPS_LOG"):
        monkeypatch.setenv(name, fake_gpu_tools[name])
    monkeypatch.setenv("FAKE_MPS_FAIL", "no MPS")
    plan = _core.Plan(gpus=("0",), per_gpu=2, concurrent=2, threads=1, mps="true")
    with pytest.raises(ConfigError, match="mps=true but CUDA MPS did not start: .*exited 1: no MPS"), \
            _core.mps_for(plan, tmp_path):
        pass
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with _core.mps_for(dataclasses.replace(plan, mps="auto"), tmp_path) as env:
        assert env == {}  # no nvidia-cuda-mps-control at all: the jobs run without MPS


# ----- reading the settings against the machine -----
def test_visible_gpus_read_cuda_visible_devices_as_cuda_does(monkeypatch, tmp_path):
    for listed, gpus in (("0,1", ["0", "1"]), ("", []), ("GPU-ab12, 3", ["GPU-ab12", "3"]), ("1,-1,2", ["1"]),
                         ("NoDevFiles", [])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
        assert _core.visible_gpus() == gpus, listed
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: no GPU
    assert _core.visible_gpus() == []


def test_the_plan_shares_the_cpus_and_checks_the_settings(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    monkeypatch.setattr(_core, "available_cpus", lambda: 8)
    cpu = _core.make_plan({"gpus": [], "cpu_jobs": None, "jobs_per_device": 6}, n_jobs=20)
    assert (cpu.gpus, cpu.concurrent, cpu.threads) == ((), 8, 1)
    assert _core.make_plan({"gpus": [], "cpu_jobs": 3, "jobs_per_device": 6}, n_jobs=20).threads == 2
    assert _core.make_plan({"gpus": [], "cpu_jobs": 3, "jobs_per_device": 6}, n_jobs=2).threads == 4
    gpu = _core.make_plan({"gpus": [0, 1], "jobs_per_device": 3, "mps": True}, n_jobs=20)
    assert (gpu.gpus, gpu.per_gpu, gpu.concurrent, gpu.threads, gpu.mps) == (("0", "1"), 3, 6, 1, "true")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _core.make_plan({"gpus": [0], "jobs_per_device": 3}, n_jobs=20).threads is None
    for bad, message in (({"gpus": [0], "jobs_per_device": 0}, "jobs_per_device must be a positive integer"),
                         ({"gpus": [], "cpu_jobs": "two"}, "cpu_jobs must be a positive integer"),
                         ({"gpus": "all", "jobs_per_device": 2}, "gpus must be auto or a list"),
                         ({"gpus": [0], "jobs_per_device": 2, "mps": "maybe"}, "mps must be auto, true or false")):
        with pytest.raises(ConfigError, match=message):
            _core.make_plan(bad, n_jobs=4)


def test_the_plugin_counts_cpus_as_the_pipeline_does(monkeypatch):
    for slurm in (None, "1", "999"):
        if slurm is None:
            monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
        else:
            monkeypatch.setenv("SLURM_CPUS_PER_TASK", slurm)
        assert _core.available_cpus() == threads.available_cpus(), slurm


def test_jobs_per_device_auto_reads_the_measurement_of_this_gpu_model(tmp_path, fake_gpu_tools, monkeypatch):
    monkeypatch.setenv("PATH", fake_gpu_tools["PATH"])
    monkeypatch.setenv("FAKE_GPU_NAME", "NVIDIA H200")
    saved = tmp_path / "packing.json"
    with pytest.raises(ConfigError, match=r"needs a packing measurement .* `python -m bench.packing"):
        _core.measured_jobs_per_device(["0"], saved)
    saved.write_text(json.dumps({"format": _core.MEASUREMENT_FORMAT, "device": "NVIDIA H200", "jobs_per_device": 8}))
    assert _core.measured_jobs_per_device(["0"], saved) == 8
    monkeypatch.setenv("FAKE_GPU_NAME", "NVIDIA A100-SXM4-80GB")
    with pytest.raises(ConfigError, match="measured on NVIDIA H200, these GPUs are NVIDIA A100-SXM4-80GB"):
        _core.measured_jobs_per_device(["0"], saved)
    saved.write_text("{}")
    with pytest.raises(ConfigError, match="is not a packing measurement"):
        _core.measured_jobs_per_device(["0"], saved)


# ----- real sweeps (e2e): the tiny model, 4 magnitude experiments on 2 fine-tunes, 2 at a time -----
JOB = ["experiment=magnitude", "task=rte", "model=tiny", "recipe.max_epochs=1", "recipe.batch_size=16",
       "recipe.eval_batch_size=32", "recipe.checkpoint_every_n_steps=1", "magnitude.max_steps=3",
       "tickets.kinds=[good]", "tickets.cost=false", "trainer.enable_progress_bar=false"]
# Seed-major: the two protocols of a seed (one fine-tune) are jobs 0 and 1, then 2 and 3.
SWEEP = ["hydra/launcher=pack", "hydra.launcher.cpu_jobs=2", "protocol=paper,clean", *JOB]
SKIPPED = {"logs", ".hydra", "checkpoints", ".cache", "multirun"}
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", re.MULTILINE)


def result_files(root: Path) -> dict[Path, bytes]:
    """Every file the experiments keep, but logs, checkpoints and Hydra's bookkeeping."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not SKIPPED & set(p.relative_to(root).parts) and not p.name.startswith((".lock", ".running"))}


def job_logs(root: Path) -> dict[int, str]:
    """Each job's own log (Hydra's, in its sweep folder), by job number."""
    return {int(p.parent.name.rsplit("-", 1)[1]): p.read_text() for p in (root / "multirun").rglob("cli.log")}


@pytest.fixture(scope="module")
def alone(tmp_path_factory, tiny_glue):
    """The four experiments, each run alone, one after the other, in this process (one thread, as the jobs)."""
    from pipeline import train
    from tests.helpers import compose_config

    root = tmp_path_factory.mktemp("alone")
    threads_before, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        for seed in (1, 2):
            for protocol in ("paper", "clean"):
                train(compose_config([*JOB, f"seed={seed}", f"protocol={protocol}", f"data.glue_dir={tiny_glue}",
                                      f"paths.root={root}"]))
    finally:
        torch.set_num_threads(threads_before)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = omp
    return root


@pytest.mark.e2e
def test_packed_experiments_overlap_share_their_fine_tune_and_equal_the_same_runs_alone(tmp_path, tiny_glue, alone):
    root = tmp_path / "out"
    proc = run_cli(["-m", "seed=1,2", *SWEEP, f"data.glue_dir={tiny_glue}", f"paths.root={root}"], cwd=ROOT,
                   env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, _tail(proc)
    assert "Packing 4 jobs: 2 at a time on the CPU" in proc.stdout
    logs = job_logs(root)
    assert sorted(logs) == [0, 1, 2, 3]
    spans = []
    for text in logs.values():
        stamps = [datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f").timestamp() for s in STAMP.findall(text)]
        spans.append((min(stamps), max(stamps)))
    assert most_at_once(spans) == 2  # two jobs at a time, never more
    # The two protocols of a seed ran at once and needed the same fine-tune: one trained it, the other
    # waited on its lock and reused it.
    for seed, pair in ((1, (0, 1)), (2, (2, 3))):
        done = finetune_dir(root, "rte", seed=seed) / "metrics.json"
        assert sorted(logs[job].count(f"reusing finished result {done}") for job in pair) == [0, 1], seed
    expected, got = result_files(alone), result_files(root)
    assert sorted(got) == sorted(expected)
    assert [str(p) for p in expected if got[p] != expected[p]] == []
    assert {".json", ".npz", ".safetensors"} <= {p.suffix for p in expected}  # scores, masks and weights compared


@pytest.mark.e2e
def test_a_packed_sweep_killed_with_sigkill_resumes_to_the_same_files(tmp_path, tiny_glue, alone):
    root = tmp_path / "out"
    args = ["-m", *SWEEP, "seed=1", f"data.glue_dir={tiny_glue}", f"paths.root={root}"]  # the two protocols of seed 1
    sweep = subprocess.Popen([sys.executable, "-m", "lottery", *args], cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"})
    trigger = root / "tiny" / "rte" / "seed1"
    try:
        deadline = time.monotonic() + 240
        while not list(trigger.glob("magnitude-*/search/step_01.json")):  # a packed job is mid-search
            assert sweep.poll() is None, f"the sweep ended (exit {sweep.returncode}) before the kill"
            assert time.monotonic() < deadline, "no job reached its search in time"
            time.sleep(0.02)
        os.killpg(sweep.pid, signal.SIGKILL)  # the launcher and every job
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    assert len(list(root.glob("tiny/rte/seed1/magnitude-*/results.json"))) < 2

    rerun = run_cli(args, cwd=ROOT, env={"OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, _tail(rerun)
    expected = {path: data for path, data in result_files(alone).items() if "seed1" in path.parts}
    got = result_files(root)
    assert sorted(got) == sorted(expected)
    assert [str(p) for p in expected if got[p] != expected[p]] == []


# ----- the measurement behind jobs_per_device=auto (bench/packing.py) -----
def test_the_chosen_k_is_the_smallest_within_5_percent_of_the_best():
    from bench.packing import choose

    assert choose({1: 100.0, 4: 250.0, 8: 290.0, 16: 300.0}) == 8  # 290 >= 0.95 x 300
    assert choose({1: 100.0, 4: 80.0}) == 1
    assert choose({1: 100.0, 4: 300.0, 8: 200.0}) == 4


@pytest.mark.e2e
def test_the_packing_bench_writes_what_jobs_per_device_auto_reads(tmp_path, fake_gpu_tools, monkeypatch):
    done = subprocess.run([sys.executable, "-m", "bench.packing", "--device", "cpu", "--model", "tiny", "--ks", "2",
                           "--seconds", "0.3", "--batch-size", "4", "--seq-len", "16", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "packing.json").read_text())
    assert record["jobs_per_device"] == 2 and float(record["throughput"]["2"]) > 0
    monkeypatch.setenv("PATH", fake_gpu_tools["PATH"])
    monkeypatch.setenv("FAKE_GPU_NAME", "cpu")  # what a GPU run would have recorded as its device
    assert _core.measured_jobs_per_device(["0"], tmp_path / "packing.json") == 2
