"""GPU matrix-rate use of a bert-base-sized fine-tune, alone and with K fine-tunes packed on one GPU
(`bench/device_checks.sh bench`; issue 17). Unlike bench/packing.py (which picks
`jobs_per_device=auto` from a plain loop's examples/s), the workers here run the project's own fine-tune.

    python -m bench.matrix_rate model DIR [--sizes bert_base|tiny]      a random BERT + the MiniLM tokenizer
    python -m bench.matrix_rate worker --model DIR --index W --start T0 --seconds D --ks 1,4,8,16 --out F
    python -m bench.matrix_rate report --ks 1,4,8,16 --seconds D --out OUT.json WORKER.json...

All K_max workers start at once. Each runs the project's fine-tune (`pipeline.training.resumable_fit`,
SST-2, the run's recipe) and takes part in the phases from the first whose K exceeds its index:
phase p runs over [T0 + p*D, T0 + (p+1)*D) with K_p workers training (worker 0 alone, then 0-3,
...). A worker trains a few warm-up steps, then waits for its first phase, counts the non-padding
tokens of the steps it starts in each phase (on the GPU: no host synchronisation) and stops at the
end of the last. Phase p's rate = its workers' tokens x 6 x non-embedding parameters / D, its use
= that rate / the GPU's dense bf16 matrix rate (790 TFLOP/s measured on an H200).
Checkpoints are off in the workers (recipe.checkpoint_every_n_steps=10^9): a bert-base checkpoint
every 200 steps would measure the disk, not the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from lottery.io import write_text

H200_BF16_FLOPS = 790e12  # dense bf16 matrix product measured on an H200 (issue 17)
SIZES = {
    "bert_base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "tiny": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128},
}
WARMUP_STEPS = 5


def write_model(folder: Path, sizes: str = "bert_base") -> Path:
    """A randomly initialised BERT of `sizes` (seed 0) with MiniLM's uncased WordPiece tokenizer
    (bert-base-uncased's vocabulary), as a model folder that model.name_or_path can name."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from lottery.models import minilm_path

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2, **SIZES[sizes]))
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(str(folder))
    return folder


def non_embedding_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in f".{name}")


def _phase_callback(index: int, start: float, seconds: float, ks: list[int]):
    import pytorch_lightning as pl

    first = next(p for p, k in enumerate(ks) if index < k)
    bounds = [start + p * seconds for p in range(len(ks) + 1)]

    class Phases(pl.Callback):
        """Warm-up steps, a wait for this worker's first phase, tokens counted per phase."""

        def __init__(self) -> None:
            self.tokens = {p: torch.zeros((), dtype=torch.long) for p in range(first, len(ks))}
            self.steps = dict.fromkeys(self.tokens, 0)
            self.step = 0
            self.late_s = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.step += 1
            if self.step == WARMUP_STEPS + 1:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()  # the warm-up steps are done, not only queued
                wait = bounds[first] - time.time()
                if wait > 0:
                    time.sleep(wait)
                else:
                    self.late_s = -wait  # started its first phase late (slow start-up)
            now = time.time()
            if self.step > WARMUP_STEPS and bounds[0] <= now < bounds[-1]:
                phase = max(p for p in range(len(ks)) if bounds[p] <= now)
                if phase in self.tokens:
                    mask = batch["attention_mask"]
                    self.tokens[phase] = self.tokens[phase].to(mask.device) + mask.sum()
                    self.steps[phase] += 1
            if now >= bounds[-1]:
                trainer.should_stop = True

    return Phases()


def worker(args: argparse.Namespace) -> None:
    from bench.fit_overhead import make_run
    from bench.workloads import RUNTIME
    from pipeline import training

    torch.set_num_threads(1)
    RUNTIME.device = "cuda" if args.device == "cuda" else "cpu"
    RUNTIME.bf16 = args.device == "cuda"
    ks = [int(k) for k in args.ks.split(",")]
    root = Path(tempfile.mkdtemp(prefix=f"pack-{args.index}-"))
    try:
        run = make_run(args.model, 3, 10**9, 64, ["task=sst2", "recipe.checkpoint_every_n_steps=1000000000",
                                                  "trainer.enable_progress_bar=false"], root)
        model = training.pretrained_model(run)
        phases = _phase_callback(args.index, args.start, args.seconds, ks)
        module = training.recipe_module(run, model)
        training.resumable_fit(run, root / "fit", module, "finetune", [phases])
        result = {"index": args.index, "late_s": phases.late_s, "non_embedding_params": non_embedding_parameters(model),
                  "tokens": {str(ks[p]): int(t) for p, t in phases.tokens.items()},
                  "steps": {str(ks[p]): n for p, n in phases.steps.items()}}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_text(Path(args.out), json.dumps(result) + "\n")


def report(args: argparse.Namespace) -> dict:
    """Per K: tokens/s, TFLOP/s and matrix-rate use of the K workers of that phase together."""
    ks = [int(k) for k in args.ks.split(",")]
    workers = [json.loads(Path(path).read_text()) for path in args.files if Path(path).is_file()]
    rows = []
    for k in ks:
        members = [w for w in workers if str(k) in w["tokens"]]
        tokens = sum(w["tokens"][str(k)] for w in members)
        params = members[0]["non_embedding_params"] if members else 0
        flops = 6 * tokens * params / args.seconds
        rows.append({"k": k, "workers_reporting": len(members), "tokens_per_s": tokens / args.seconds,
                     "steps": sum(w["steps"][str(k)] for w in members), "tflops": flops / 1e12,
                     "matrix_rate_use": flops / H200_BF16_FLOPS,
                     "late_workers": sum(1 for w in members if w["late_s"] > 0)})
    result = {"seconds_per_phase": args.seconds, "peak_flops": H200_BF16_FLOPS, "workers": len(workers),
              "formula": "non-pad tokens x 6 x non-embedding parameters / seconds", "phases": rows}
    write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    for entry in rows:
        print(f"[pack] K={entry['k']:>2}: {entry['tokens_per_s']:.0f} tokens/s, {entry['tflops']:.1f} TFLOP/s, "
              f"{100 * entry['matrix_rate_use']:.1f}% of 790 TFLOP/s ({entry['workers_reporting']} workers, "
              f"{entry['late_workers']} late)")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matrix_rate", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("model")
    make.add_argument("folder", type=Path)
    make.add_argument("--sizes", choices=tuple(SIZES), default="bert_base")
    work = commands.add_parser("worker")
    work.add_argument("--model", required=True)
    work.add_argument("--index", type=int, required=True)
    work.add_argument("--start", type=float, required=True, help="T0, seconds since the epoch")
    work.add_argument("--seconds", type=float, required=True)
    work.add_argument("--ks", required=True)
    work.add_argument("--out", required=True)
    work.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    summary = commands.add_parser("report")
    summary.add_argument("--ks", required=True)
    summary.add_argument("--seconds", type=float, required=True)
    summary.add_argument("--out", required=True)
    summary.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "model":
        write_model(args.folder, args.sizes)
    elif args.command == "worker":
        os.environ.setdefault("WANDB_MODE", "offline")
        worker(args)
    else:
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
