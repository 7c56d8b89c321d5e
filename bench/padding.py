"""Measurement 8: one MRPC training epoch with length-grouped dynamic padding vs fixed 128 padding.

Timing a whole epoch of each would take ~7 minutes here, so the epoch is estimated: training-step
time is measured at widths spread over the grouped batches' range (and at 128), interpolated
linearly in the batch width for every batch of the epoch, and summed. The token counts of both
schemes are exact.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from transformers import AutoTokenizer

from bench.measurements import row
from bench.workloads import TrainStep, clone_model, log
from lottery.features import PadCollator, load_tokenized
from lottery.models import minilm_path
from lottery.pipeline.config import SHARED_GLUE
from lottery.samplers import LengthGroupedBatchSampler
from lottery.tasks import get_task

BATCH = 32
PROBES = 6  # widths at which step time is measured


def mrpc_padding(model, repeats: int, quick: bool) -> list[dict]:
    name = "8. MRPC epoch: length-grouped dynamic padding vs fixed 128"
    if quick or not (SHARED_GLUE / "MRPC").is_dir():
        return [row("mrpc_padding", name, None, "not measured (quick mode or no ../shared GLUE)", "information", None)]
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    train = load_tokenized(get_task("mrpc"), "train", tokenizer, 128, SHARED_GLUE, None)
    grouped = list(LengthGroupedBatchSampler(train.lengths, BATCH, seed=1337))
    widths = np.array([max(train.lengths[i] for i in batch) for batch in grouped])
    dynamic, fixed = PadCollator(tokenizer.pad_token_id, False), PadCollator(tokenizer.pad_token_id, False, 128)
    order = np.argsort(widths)
    probes = [grouped[order[int(q * (len(order) - 1))]] for q in np.linspace(0, 1, PROBES)]
    step = TrainStep(clone_model(model), dynamic([train[i] for i in probes[0]]))
    step(fixed([train[i] for i in probes[0]]))  # warm-up
    probe_widths, probe_times = [], []
    for batch in probes:
        features = [train[i] for i in batch]
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
    return time.perf_counter() - start
