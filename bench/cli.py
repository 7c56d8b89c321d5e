"""`python -m bench [--repeats N] [--quick] [--out DIR] [--good-mask PATH]`."""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import time
from pathlib import Path

import torch
import transformers

from bench import fit_overhead, fits, measurements
from bench import throughput as bench_throughput
from bench.decoder import decoder_steps
from bench.padding import mrpc_padding
from bench.report import markdown_table, write
from bench.workloads import PROJECT_ROOT, RUNTIME, load_model, log, make_batch

DEFAULT_OUT = PROJECT_ROOT / "bench" / "results"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 5; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help="tiny random BERT, 2 repeats: a smoke test of seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--good-mask", default=None, help="structured mask JSON (StructuredMasks.save_json) for the good-size ticket")
    parser.add_argument("--importance-examples", type=int, default=None,
                        help="N of the importance-vs-training pass (default 64; --quick: 2 batches)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 (--quick: 8)")
    parser.add_argument("--seq-len", type=int, default=None, help="default 128 (--quick: 32)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default) | cuda")
    parser.add_argument("--precision", choices=("32", "bf16"), default=None,
                        help="32 = float32; bf16 = bfloat16 autocast as trainer.precision=bf16-mixed (default: 32 on cpu, bf16 on cuda)")
    parser.add_argument("--model", default=None, help="folder of a BERT-layout model (default: the packaged MiniLM)")
    parser.add_argument("--skip-fits", action="store_true",
                        help="leave out the measurements that run whole fits and jobs (9, 10, 12): a faster smoke run")
    parser.add_argument("--only-fine-tunes", action="store_true",
                        help="only measurement 12: the project's fine-tune vs a plain loop (bench/device_checks.sh bench)")
    parser.add_argument("--fine-tune-models", default=None,
                        help="comma-separated models of measurement 12: minilm, tiny or BERT-layout folders "
                             "(default tiny,minilm; --quick: tiny)")
    parser.add_argument("--only-throughput", action="store_true",
                        help="only measurement 13: the project's training and eval rates, saved in throughput.json "
                             "for plan=true (models as --fine-tune-models)")
    parser.add_argument("--fine-tune-examples", default=None,
                        help="TRAIN,DEV examples of STS-B per fine-tune of measurement 12 (default: tiny 2880,512, "
                             "others 256,128; --quick 320,128)")
    return parser.parse_args(argv)


def _order(name: str) -> tuple[int, str]:
    """Rows by their number ("2a." before "10a.")."""
    digits = "".join(itertools.takewhile(str.isdigit, name))
    return (int(digits) if digits else 999, name)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _device_text(args: argparse.Namespace) -> str:
    if args.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(args.device))}, {args.precision}"
    return f"CPU, {args.threads} threads, {args.precision}"


def main(argv=None) -> int:
    args = parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    warmup = 1 if args.quick else 2
    args.batch_size = args.batch_size or (8 if args.quick else 32)
    args.seq_len = args.seq_len or (32 if args.quick else 128)
    args.importance_examples = args.importance_examples or (2 * args.batch_size if args.quick else 64)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here; run without --device (CPU)")
    args.precision = args.precision or ("bf16" if args.device.startswith("cuda") else "32")
    previous_runtime = (RUNTIME.device, RUNTIME.bf16)
    RUNTIME.device, RUNTIME.bf16 = args.device, args.precision == "bf16"
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, repeats, warmup)
    finally:
        torch.set_num_threads(previous_threads)
        RUNTIME.device, RUNTIME.bf16 = previous_runtime


def _run(args: argparse.Namespace, repeats: int, warmup: int) -> int:
    start = time.perf_counter()
    load_before = _load()

    if args.only_throughput:
        return _finish(args, throughput(args, repeats), repeats, warmup, start, load_before)
    if args.only_fine_tunes:  # the files are rewritten after each model, so a timeout keeps the finished ones
        rows = fine_tune_rows(args, repeats, lambda done: _finish(args, list(done), repeats, warmup, start, load_before))
        rows += throughput(args, repeats)
        return _finish(args, rows, repeats, warmup, start, load_before)
    model = load_model(args.quick, args.model)
    batch = make_batch(args.batch_size, args.seq_len)
    log(f"model {'tiny BERT' if args.quick else args.model or 'MiniLM-L6'}, batch {args.batch_size} x {args.seq_len}, "
        f"{_device_text(args)}")

    rows, state = measurements.training_steps(model, batch, repeats, warmup, args.good_mask)
    rows += measurements.importance_pass(state, args.batch_size, args.seq_len, args.importance_examples, repeats, 1)
    rows += measurements.magnitude_steps(model, args.quick, repeats)
    rows += measurements.eval_forward(model, state, batch, repeats, 1)
    rows += mrpc_padding(model, repeats, args.quick, args.model)
    rows += decoder_steps(args.quick, args.batch_size, args.seq_len, repeats, warmup)
    if not args.skip_fits:
        rows += fits.resumable_state(model, args.batch_size, args.seq_len, 4 if args.quick else 8, repeats)
        if not args.device.startswith("cuda"):  # CPU threads only mean something on the CPU
            rows += fits.parallel_jobs(args.threads, args.quick, 10 if args.quick else 4, args.batch_size, args.seq_len,
                                       1 if args.quick else 3)
        rows += fine_tune_rows(args, repeats)
        rows += throughput(args, repeats)
    rows += measurements.make_run_wall_time(args.out)
    return _finish(args, rows, repeats, warmup, start, load_before)


def throughput(args: argparse.Namespace, repeats: int) -> list[dict]:
    """Measurement 13 (bench.throughput) for the fine-tune models; saved in --out/throughput.json."""
    from pipeline.config import default_glue_dir

    glue = os.environ.get("GLUE_DIR") or default_glue_dir()
    models = (args.fine_tune_models or ("tiny" if args.quick else "tiny,minilm")).split(",")
    if not glue or not (Path(glue) / "STS-B").is_dir():
        return [measurements.row("throughput", "13. throughput", None, f"not measured (no STS-B under {glue})",
                                 "information", None)]
    return bench_throughput.throughput_rows(models, args.out, args.quick, args.precision, 1 if args.quick else repeats)


FINE_TUNE_TARGETS = {"tiny": 1.25}  # every other model: 1.10 (issue 17)
GPU_LEVERS = {"adamw=fused": ["speed.adamw=fused"],
              "Rich bar, drawn every batch": ["+callbacks.progress_bar.rich=true", "callbacks.progress_bar.min_interval_s=0"]}


def fine_tune_rows(args: argparse.Namespace, repeats: int, after_each=None) -> list[dict]:
    """Measurement 12 for each model: the project's fine-tune / a plain loop (bench.fit_overhead),
    with every speed setting off as a variant; on the tiny model (CPU) each setting off in turn, on
    a GPU the settings that matter there. `after_each(rows)` is called after each model."""
    from pipeline.config import default_glue_dir

    glue = os.environ.get("GLUE_DIR") or default_glue_dir()
    models = (args.fine_tune_models or ("tiny" if args.quick else "tiny,minilm")).split(",")
    if not glue or not (Path(glue) / "STS-B").is_dir():
        return [measurements.row(f"fine_tune_vs_plain_{i}", f"12. fine-tune / plain loop, {name}", None,
                                 f"not measured (no STS-B under {glue})", "information", None)
                for i, name in enumerate(models)]
    on_gpu = args.device.startswith("cuda")
    rows = []
    letters = iter("abcdefghijklmnop")
    for index, name in enumerate(models):
        label = {"tiny": "tiny BERT", "minilm": "MiniLM-L6"}.get(name, Path(name).name)
        if args.fine_tune_examples:
            train, dev = (int(v) for v in args.fine_tune_examples.split(","))
        else:
            train, dev = (96, 32) if args.quick else (2880, 512) if name == "tiny" else (256, 128)
        variants = {"all_off": fit_overhead.ALL_OFF}
        if not args.quick:
            variants.update(GPU_LEVERS if on_gpu and name != "tiny" else fit_overhead.EACH_OFF if name == "tiny" else {})
        epochs = 1 if args.quick else 3  # --quick checks the plumbing, in seconds
        details, times, _ = fit_overhead.fine_tunes(name, epochs, train, dev, repeats, variants)
        target = None if args.quick else FINE_TUNE_TARGETS.get(name, 1.10)
        rows.append(fit_overhead.fit_vs_plain_row(
            f"fine_tune_vs_plain_{name if name in ('tiny', 'minilm') else index}",
            f"12{next(letters)}. fine-tune (resumable fit + dev eval) / plain PyTorch loop, {label}, "
            f"{details['steps']} steps", details, times, target))
        if len(variants) > 1:
            rows.append(fit_overhead.levers_row(
                f"speed_settings_{name if name in ('tiny', 'minilm') else index}",
                f"12{next(letters)}. {label} fine-tune with one speed setting off (or on, for fused) / with the defaults",
                details, times))
        if after_each is not None:
            after_each(rows)
    return rows


def _finish(args: argparse.Namespace, rows: list[dict], repeats: int, warmup: int, start: float,
            load_before: str) -> int:
    rows.sort(key=lambda r: _order(r["measurement"]))

    result = {
        "meta": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "model": "tiny random BERT (quick)" if args.quick else (args.model or "all-MiniLM-L6-v2"),
            "quick": args.quick,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "threads": torch.get_num_threads(),
            "device": _device_text(args),
            "precision": args.precision,
            "repeats": repeats,
            "warmup": warmup,
            "importance_examples": args.importance_examples,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "load_before": load_before,
            "load_after": _load(),
            "wall_s": time.perf_counter() - start,
        },
        "rows": rows,
    }
    json_path, md_path = write(result, args.out)
    log(f"wrote {json_path} and {md_path} in {result['meta']['wall_s']:.0f} s")
    print(markdown_table(rows, args.quick))
    return 0
