"""How many training jobs one GPU should run at once: `python -m bench.packing --device cuda`.

For each K (--ks, default 1,4,8,16), K processes train the same model (default a bert-base-shaped
BERT with random weights; --model minilm | tiny | a folder) on batches the shape of a GLUE
fine-tune (32 x 128 tokens, bf16 autocast on a GPU), under CUDA MPS when it starts (as
`hydra/launcher=pack` runs them). After a warm-up they start together and train for --seconds;
the total examples/s of the K processes is the throughput of K. The chosen K is the smallest whose
throughput is within 5% of the highest (more jobs than that cost memory and gain nothing). A K whose
processes fail (out of memory) ends the series.

Writes bench/results/packing.json (--out FOLDER for another folder), which
`hydra.launcher.jobs_per_device=auto` reads on a GPU of the same model:
    {"format": "bert-lottery/packing/v1", "device": "<GPU name>", "jobs_per_device": K,
     "throughput": {"1": examples/s, ...}, "speedup": {"1": 1.0, ...}, ...}
`--device cpu` runs the same on the CPU (one thread each): a smoke test of the script.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.workloads import PROJECT_ROOT, log
from hydra_plugins.bert_lottery_pack._core import MEASUREMENT, MEASUREMENT_FORMAT
from hydra_plugins.bert_lottery_pack._mps import Mps
from lottery.io import write_json

WITHIN = 0.05  # the chosen K: the smallest within 5% of the best throughput

WORKER = """
import sys, time, pathlib, torch
from bench.workloads import RUNTIME, TrainStep, load_model, make_batch
device, model_name, batch_size, seq_len, seconds, folder, index = sys.argv[1:8]
RUNTIME.device, RUNTIME.bf16 = device, device.startswith("cuda")
if model_name == "bert-base":
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2)).to(device).train()
else:
    model = load_model(model_name == "tiny", None if model_name in ("tiny", "minilm") else model_name)
step = TrainStep(model, make_batch(int(batch_size), int(seq_len), seed=int(index)))
for _ in range(3):
    step()  # warm-up (float(loss) waits for the device)
folder = pathlib.Path(folder)
(folder / f"ready{index}").touch()
while not (folder / "go").exists():
    time.sleep(0.01)
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < float(seconds):
    step()
    steps += 1
print(steps * int(batch_size) / (time.perf_counter() - start))
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.packing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) | cpu (a smoke test)")
    parser.add_argument("--ks", default="1,4,8,16", help="jobs at once to measure (default 1,4,8,16)")
    parser.add_argument("--model", default="bert-base",
                        help="bert-base (random weights; default) | minilm | tiny | a folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per K (default 20)")
    parser.add_argument("--out", type=Path, default=MEASUREMENT.parent, help=f"default {MEASUREMENT.parent}")
    return parser.parse_args(argv)


def throughput(k: int, args: argparse.Namespace, env: dict[str, str]) -> float | None:
    """Total examples/s of k processes training at once; None when any of them failed."""
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as folder:
        command = [sys.executable, "-c", WORKER, args.device, args.model, str(args.batch_size), str(args.seq_len),
                   str(args.seconds), folder]
        workers = [subprocess.Popen([*command, str(i)], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for i in range(k)]
        try:
            while len(list(Path(folder).glob("ready*"))) < k:
                if any(worker.poll() is not None for worker in workers):
                    break
                time.sleep(0.05)
            Path(folder, "go").touch()
            outputs = [worker.communicate() for worker in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
    failed = [err for worker, (_, err) in zip(workers, outputs) if worker.returncode != 0]
    if failed:
        log(f"K={k}: {len(failed)} of {k} processes failed: {failed[0].strip().splitlines()[-1:]}")
        return None
    return sum(float(out.strip().splitlines()[-1]) for out, _ in outputs)


def choose(measured: dict[int, float]) -> int:
    best = max(measured.values())
    return min(k for k, value in measured.items() if value >= (1 - WITHIN) * best)


def main(argv=None) -> int:
    args = parse_args(argv)
    ks = sorted({int(k) for k in args.ks.split(",")})
    import torch

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here (--device cpu for a smoke test)")
        name = torch.cuda.get_device_name()
    else:
        name = "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    mps, env, mps_note = None, dict(os.environ), "not on a GPU"
    if name != "cpu":
        gpu = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
        mps = Mps(Path(tempfile.mkdtemp(prefix="bench-mps-logs-")), gpus=(gpu,))
        started, why = mps.start()
        mps_note = "on" if started else f"off: {why}"
        env = {**env, "CUDA_VISIBLE_DEVICES": "0" if started else gpu, **mps.client_env()}  # one GPU
    measured: dict[int, float] = {}
    try:
        for k in ks:
            if name == "cpu":
                env["OMP_NUM_THREADS"] = "1"  # a smoke test: no threads that wait on each other
            value = throughput(k, args, env)
            if value is None:
                break
            measured[k] = value
            log(f"K={k}: {value:.1f} examples/s together ({value / measured[ks[0]]:.2f}x K={ks[0]})")
    finally:
        if mps is not None:
            mps.stop()
    if not measured:
        raise SystemExit("no K could be measured")
    best = choose(measured)
    record = {
        "format": MEASUREMENT_FORMAT, "device": name, "jobs_per_device": best,
        "rule": f"the smallest K within {WITHIN:.0%} of the highest total throughput",
        "throughput": {str(k): round(v, 2) for k, v in measured.items()},
        "speedup": {str(k): round(v / measured[min(measured)], 3) for k, v in measured.items()},
        "model": args.model, "batch_size": args.batch_size, "seq_len": args.seq_len, "seconds": args.seconds,
        "precision": "bf16-mixed" if name != "cpu" else "32", "mps": mps_note, "torch": torch.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    path = write_json(args.out / "packing.json", record)
    log(f"jobs_per_device={best} on {name}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
