"""Measurement 13: the project's training and evaluation rates on this device, saved for `plan=true`.

For each model, the project's fine-tune (`pipeline.training.resumable_fit`, one epoch of STS-B, the
run's recipe and precision) and its dev evaluation (`pipeline.training.evaluate`) are timed
separately, `repeats` times after one warm-up, and the medians expressed in the plan's FLOPs
(`lottery.throughput`: 6 x non-embedding parameters x non-padding tokens to train, 2 x to
evaluate). The rates go into bench/results/throughput.json under the device's name (the GPU's, or
the CPU's model name with the threads), one entry per model and precision, written atomically; a
plan on that device projects each stage's time from the entry of the model closest in size.
"""

from __future__ import annotations

import copy
import datetime
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.measurements import row
from bench.workloads import RUNTIME, log
from lottery.cost import device_name
from lottery.throughput import format_flops, non_embedding_parameter_count, record_rate, stage_flops

THROUGHPUT_FILE = "throughput.json"


def examples_for(model: str, quick: bool) -> tuple[int, int]:
    """STS-B (train, dev) examples timed: enough steps that the rate is steady, little CPU time."""
    if quick:
        return 320, 128
    if model == "tiny":
        return 2880, 512
    return (5749, 1500) if RUNTIME.device.startswith("cuda") else (512, 256)


def measure(model: str, train_examples: int, eval_examples: int, repeats: int) -> dict:
    """Seconds, tokens and FLOPs per second of the project's one-epoch fine-tune and dev
    evaluation of `model` (minilm | tiny | a BERT-layout folder)."""
    from bench.fit_overhead import make_run
    from pipeline import training

    root = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    try:
        run = make_run(model, 1, train_examples, eval_examples, [], root)
        data = training.datamodule(run)
        data.setup()  # tokenised once, outside the timed fits
        train_tokens = int(sum(data.splits["train"].lengths))
        eval_tokens = int(sum(sum(data.splits[split].lengths) for split in run.task.eval_splits))
        start = training.pretrained_model(run).to(RUNTIME.device)
        params = non_embedding_parameter_count(start)
        fits, evaluations = [], []
        for index in range(repeats + 1):  # the first is a warm-up
            folder = root / f"fit{index}"
            module = training.recipe_module(run, copy.deepcopy(start))
            began = time.perf_counter()
            training.resumable_fit(run, folder, module, "finetune")
            fitted = time.perf_counter()
            training.evaluate(run, module, folder, "finetune-eval")
            done = time.perf_counter()
            if index:
                fits.append(fitted - began)
                evaluations.append(done - fitted)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    train_s, eval_s = statistics.median(fits), statistics.median(evaluations)
    return {"params": params, "train_tokens": train_tokens, "eval_tokens": eval_tokens,
            "train_s": train_s, "eval_s": eval_s, "train_examples": train_examples, "eval_examples": eval_examples,
            "train_tokens_per_s": train_tokens / train_s, "eval_tokens_per_s": eval_tokens / eval_s,
            "train_flops_per_s": stage_flops("train", params, train_tokens) / train_s,
            "eval_flops_per_s": stage_flops("eval", params, eval_tokens) / eval_s}


def device_label() -> str:
    """The name the plan looks rates up by (`pipeline.plan.current_device`)."""
    return device_name(torch.device(RUNTIME.device))


def throughput_rows(models: list[str], out: Path, quick: bool, precision: str, repeats: int) -> list[dict]:
    """Measure each model and save its rates in `out`/throughput.json; one table row per model."""
    rows = []
    device = device_label()
    threads = None if RUNTIME.device.startswith("cuda") else torch.get_num_threads()
    for index, model in enumerate(models):
        label = {"tiny": "tiny BERT", "minilm": "MiniLM-L6"}.get(model, Path(model).name)
        train, dev = examples_for(model, quick)
        log(f"throughput of {label}: {repeats} x (one epoch of {train} STS-B examples, then {dev} dev) on {device}")
        measured = measure(model, train, dev, repeats)
        entry = {"model": label, "precision": precision, "threads": threads,
                 "date": datetime.date.today().isoformat(), "quick": quick, **measured}
        path = record_rate(out / THROUGHPUT_FILE, device, entry)
        rows.append(row(
            f"throughput_{model if model in ('tiny', 'minilm') else index}",
            f"13. throughput of the project's fine-tune and evaluation, {label} ({measured['params']:,} "
            f"non-embedding parameters), saved in {path.name} for plan=true",
            measured["train_flops_per_s"],
            f"train {format_flops(measured['train_flops_per_s'])}/s ({measured['train_tokens_per_s']:.0f} tokens/s), "
            f"eval {format_flops(measured['eval_flops_per_s'])}/s ({measured['eval_tokens_per_s']:.0f} tokens/s)",
            "information", None, device=device, **entry))
    return rows
