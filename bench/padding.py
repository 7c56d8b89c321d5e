"""Measurement 8: one MRPC training epoch with length-grouped dynamic padding vs fixed 128 padding.

Timing a whole epoch of each would take ~7 minutes here, so the epoch is estimated: training-step
time is measured at widths spread over the grouped batches' range (and at 128), interpolated
linearly in the batch width for every batch of the epoch, and summed. The token counts of both
schemes are exact.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from bench.measurements import row
from bench.timing import synchronize
from bench.workloads import RUNTIME, TrainStep, clone_model, log
from lottery.features import PadCollator, load_tokenized
from lottery.models import minilm_path
from lottery.samplers import EpochBatchSampler
from lottery.tasks import get_task
from pipeline.config import SHARED_GLUE

BATCH = 32
PROBES = 6  # widths at which step time is measured


def mrpc_padding(model, repeats: int, quick: bool, model_path: str | Path | None = None) -> list[dict]:
    """`model_path`: where the tokenizer lives (default the packaged MiniLM). GLUE comes from
    $GLUE_DIR, else ../shared/data/glue."""
    name = "8. MRPC epoch: length-grouped dynamic padding vs fixed 128"
    glue = Path(os.environ.get("GLUE_DIR") or SHARED_GLUE)
    if quick or not (glue / "MRPC").is_dir():
        return [row("mrpc_padding", name, None, f"not measured (quick mode or no MRPC under {glue})", "information", None)]
    tokenizer = AutoTokenizer.from_pretrained(str(model_path or minilm_path()))
    train = load_tokenized(get_task("mrpc"), "train", tokenizer, 128, glue, None)
    grouped = list(EpochBatchSampler(train.lengths, BATCH, seed=1337))
    widths = np.array([max(train.lengths[i] for i in batch) for batch in grouped])
    dynamic_cpu, fixed_cpu = PadCollator(tokenizer.pad_token_id, False), PadCollator(tokenizer.pad_token_id, False, 128)

    def dynamic(features):
        return RUNTIME.to_device(dynamic_cpu(features))

    def fixed(features):
        return RUNTIME.to_device(fixed_cpu(features))

    order = np.argsort(widths)
    probes = [grouped[order[int(q * (len(order) - 1))]] for q in np.linspace(0, 1, PROBES)]
    step = TrainStep(clone_model(model), dynamic([train[i] for i in probes[0]]))
    step(fixed([train[i] for i in probes[0]]))  # warm-up
    probe_widths, probe_times = [], []
    for batch in probes:
        features = [train[i] for i in batch]
        step(dynamic(features))  # warm-up at this width (a GPU picks kernels per new shape)
        times = [_timed(step, dynamic(features)) for _ in range(max(1, repeats // 2))]
        probe_widths.append(max(len(f["input_ids"]) for f in features))
        probe_times.append(statistics.median(times))
        log(f"  MRPC step at width {probe_widths[-1]}: {probe_times[-1]:.2f} s")
    full = statistics.median(_timed(step, fixed([train[i] for i in probes[-1]])) for _ in range(max(1, repeats // 2)))
    grouped_epoch = float(np.interp(widths, probe_widths, probe_times).sum())
    fixed_epoch = full * len(grouped)
    tokens = float(sum(w * len(b) for w, b in zip(widths, grouped, strict=True))) / (128 * len(train))
    speedup = fixed_epoch / grouped_epoch
    return [row("mrpc_padding", name, speedup,
                f"{speedup:.2f}x faster (epoch ~{grouped_epoch:.0f} s vs ~{fixed_epoch:.0f} s; "
                f"{100 * tokens:.0f}% of the fixed-128 tokens)", "information", None,
                grouped_epoch_s=grouped_epoch, fixed_epoch_s=fixed_epoch, token_fraction=tokens,
                probe_widths=probe_widths, probe_times_s=probe_times)]


def _timed(step: TrainStep, batch) -> float:
    start = time.perf_counter()
    step(batch)
    synchronize()
    return time.perf_counter() - start
