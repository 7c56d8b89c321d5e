"""The benchmark's measurements; each returns table rows (dicts) for `bench.report`.

1. masked (all gates 1) vs unmasked training step                          target <= 1.05
2. physically pruned ticket vs the masked full model (same gates), training
   step, against their encoder FLOPs ratio (`bench.flops`), at (a) 50% of
   heads and 50% of MLPs kept (seeded) and (b) the good ticket's size      target time <= 1.2 x FLOPs ratio
3. importance pass (gate_gradients over N/32 batches) vs training pass      target <= 1.2
4. training step with WeightMasks (~50% sparsity) re-applied after the
   optimizer step vs a plain training step                                 target <= 1.15
5. one global_magnitude_step (10% of remaining) over all eligible weights   MiniLM < 1 s, bert-base < 5 s
6. eval forward of the pruned good-size ticket vs the full model           information
7. `make run` wall time, recorded by hand in make_run_wall_time.json       information
8. an MRPC epoch with length-grouped dynamic padding vs fixed 128 (bench.padding)  information
9, 10. the exact-resume state's cost, and parallel jobs sharing the cores (bench.fits)
11. masks and pruning on a decoder with grouped-query attention (bench.decoder)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from bench.flops import masks_flops
from bench.timing import interleaved
from bench.workloads import (
    PROJECT_ROOT,
    RUNTIME,
    TrainStep,
    clone_model,
    find_good_mask,
    log,
    make_batch,
    random_structured_mask,
)
from lottery.importance import gate_gradients
from lottery.magnitude import WeightMasks, eligible_parameters, global_magnitude_step
from lottery.masks import StructuredMasks
from lottery.models import model_shape
from lottery.pruning import prune_structure

BERT_BASE = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}
QUICK_BERT_BASE = {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512}


def row(key, name, value, display, target, passed, **details) -> dict:
    return {"id": key, "measurement": name, "value": value, "display": display, "target": target, "passed": passed, "details": details}


def _cpu_note(times, numerator: str, denominator: str) -> str:
    return f" (cpu-time ratio {times.ratio(numerator, denominator, 'cpu'):.3f})"


def _timing_details(times, numerator: str, denominator: str) -> dict:
    return {
        "cpu_time_ratio": times.ratio(numerator, denominator, "cpu"),
        "median_s": {n: times.median(n) for n in (numerator, denominator)},
        "median_cpu_s": {n: times.median(n, "cpu") for n in (numerator, denominator)},
        **times.to_dict(numerator, denominator),
    }


def _mask_text(masks: StructuredMasks) -> str:
    layers, heads = masks.shape
    return f"{masks.num_heads_kept}/{layers * heads} heads, {masks.num_mlps_kept}/{layers} MLPs"


def training_steps(model, batch, repeats: int, warmup: int, good_mask: str | None) -> tuple[list[dict], dict]:
    """Measurements 1, 2 and 4 in one interleaved loop; returns rows and the models for later use."""
    config = model.config
    shape = model_shape(model)
    seq_len = batch["input_ids"].shape[1]

    masked = clone_model(model)
    gates = StructuredMasks.for_model(masked)
    gates.attach(masked)
    ones = StructuredMasks.for_model(masked)

    half = random_structured_mask(*shape, head_fraction=0.5, mlps_kept=round(shape[0] / 2), seed=0)
    good = find_good_mask(shape, good_mask)
    tickets = {"half": half, "good": good.masks}
    pruned = {name: prune_structure(clone_model(model), masks) for name, masks in tickets.items()}

    magnitude = clone_model(model)
    params = eligible_parameters(magnitude)
    weight_masks = global_magnitude_step(params, WeightMasks.ones_like(params), 0.5)
    weight_masks.apply_(magnitude)

    plain_step = TrainStep(model, batch)
    masked_step = TrainStep(masked, batch)
    pruned_steps = {name: TrainStep(m, batch) for name, m in pruned.items()}
    magnitude_step = TrainStep(magnitude, batch, after=lambda: weight_masks.apply_(magnitude))

    def masked_with(masks):
        def run():
            gates.set(masks.head, masks.mlp)
            masked_step()
        return run

    # Each compared pair is listed side by side, so it runs back to back in most rounds: the closer
    # in time, the more alike the background load.
    workloads = {
        "magnitude_enforced": magnitude_step,
        "unmasked": plain_step,
        "masked_ones": masked_with(ones),
        "masked_half": masked_with(half),
        "pruned_half": pruned_steps["half"],
        "masked_good": masked_with(good.masks),
        "pruned_good": pruned_steps["good"],
    }
    log(f"training steps: {len(workloads)} workloads x ({warmup} warm-up + {repeats}) rounds")
    times = interleaved(workloads, repeats, warmup, label="train")

    rows = []
    ratio = times.ratio("masked_ones", "unmasked")
    rows.append(row(
        "masked_overhead", "1. training step: masked (all gates 1) / unmasked", ratio,
        f"{ratio:.3f}{_cpu_note(times, 'masked_ones', 'unmasked')}", "<= 1.05", ratio <= 1.05,
        **_timing_details(times, "masked_ones", "unmasked"),
    ))
    full_flops = masks_flops(config, ones.head.tolist(), ones.mlp.tolist(), seq_len)
    labels = {"half": "2a. pruned / masked training step, 50% heads + 50% MLPs", "good": "2b. pruned / masked training step, good-ticket size"}
    for name, masks in tickets.items():
        flops_ratio = masks_flops(config, masks.head.tolist(), masks.mlp.tolist(), seq_len) / full_flops
        ratio = times.ratio(f"pruned_{name}", f"masked_{name}")
        bound = 1.2 * flops_ratio
        source = "seeded random (seed 0)" if name == "half" else good.source
        rows.append(row(
            f"pruned_vs_masked_{name}", f"{labels[name]} [{_mask_text(masks)}; {source}]", ratio,
            f"{ratio:.3f} = {ratio / flops_ratio:.2f} x FLOPs ratio {flops_ratio:.3f}"
            f"{_cpu_note(times, f'pruned_{name}', f'masked_{name}')}",
            f"<= 1.2 x FLOPs ratio = {bound:.3f}", ratio <= bound,
            flops_ratio=flops_ratio, time_over_flops=ratio / flops_ratio, mask_source=source, mask=masks.to_dict(),
            **_timing_details(times, f"pruned_{name}", f"masked_{name}"),
        ))
    ratio = times.ratio("magnitude_enforced", "unmasked")
    rows.append(row(
        "magnitude_enforced", f"4. training step with WeightMasks.apply_ ({weight_masks.sparsity():.0%} sparse) / plain",
        ratio, f"{ratio:.3f}{_cpu_note(times, 'magnitude_enforced', 'unmasked')}", "<= 1.15", ratio <= 1.15,
        sparsity=weight_masks.sparsity(), **_timing_details(times, "magnitude_enforced", "unmasked"),
    ))
    state = {"masked": masked, "gates": gates, "ones": ones, "masked_step": masked_step,
             "pruned_good": pruned["good"], "good": good, "full_flops": full_flops}
    return rows, state


def importance_pass(state: dict, batch_size: int, seq_len: int, examples: int, repeats: int, warmup: int) -> list[dict]:
    """Measurement 3: gate_gradients over N/32 batches vs N/32 training steps, same model and data."""
    masked, gates, ones, step = state["masked"], state["gates"], state["ones"], state["masked_step"]
    gates.set(ones.head, ones.mlp)
    batches = [make_batch(batch_size, seq_len, seed=100 + i) for i in range(max(1, examples // batch_size))]

    def importance():
        with RUNTIME.autocast():
            for batch in batches:
                gate_gradients(masked, gates, batch)

    def training():
        for batch in batches:
            step(batch)

    times = interleaved({"importance": importance, "training": training}, repeats, warmup, label="importance")
    ratio = times.ratio("importance", "training")
    n = len(batches) * batch_size
    return [row(
        "importance_vs_training", f"3. importance pass / training pass over N={n} ({len(batches)} batches)",
        ratio, f"{ratio:.3f}{_cpu_note(times, 'importance', 'training')}", "<= 1.2", ratio <= 1.2,
        examples=n, **_timing_details(times, "importance", "training"),
    )]


def eval_forward(model, state: dict, batch, repeats: int, warmup: int) -> list[dict]:
    """Measurement 6: eval-mode forward (inference_mode) of the pruned good-size ticket vs the full model."""
    pruned, good = state["pruned_good"], state["good"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def forward(m):
        def run():
            with torch.inference_mode(), RUNTIME.autocast():
                m(**inputs)
        return run

    model.eval()
    pruned.eval()
    times = interleaved({"full": forward(model), "pruned": forward(pruned)}, repeats, warmup, label="eval")
    model.train()
    pruned.train()
    ratio = times.ratio("pruned", "full")
    seq_len = batch["input_ids"].shape[1]
    flops_ratio = masks_flops(model.config, good.masks.head.tolist(), good.masks.mlp.tolist(), seq_len) / state["full_flops"]
    return [row(
        "eval_pruned_vs_full", f"6. eval forward: pruned good-size ticket / full [{_mask_text(good.masks)}]", ratio,
        f"{ratio:.3f} (FLOPs ratio {flops_ratio:.3f}; full {times.median('full'):.2f} s){_cpu_note(times, 'pruned', 'full')}",
        "information", None, flops_ratio=flops_ratio, **_timing_details(times, "pruned", "full"),
    )]


def magnitude_steps(model, quick: bool, repeats: int) -> list[dict]:
    """Measurement 5: one global_magnitude_step(10% of remaining), as in the paper's search.

    Each timed call prunes from the previous call's masks (a fresh WeightMasks each time, as in the
    search, so no cached counts); a first call from all-ones masks on a copy is the warm-up. The
    MiniLM and bert-base-sized calls alternate.
    """
    sizes = QUICK_BERT_BASE if quick else BERT_BASE
    log(f"building a random bert-base-sized classifier {sizes}")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        big = BertForSequenceClassification(BertConfig(num_labels=2, **sizes)).to(RUNTIME.device)
    log(f"  built in {time.perf_counter() - start:.1f} s")
    chains = {}
    for name, m in (("minilm", model), ("bert_base", big)):
        params = eligible_parameters(m)
        global_magnitude_step(params, WeightMasks.ones_like(params), 0.1)  # warm-up
        chains[name] = {"params": params, "masks": WeightMasks.ones_like(params)}

    def step(name):
        def run():
            chain = chains[name]
            chain["masks"] = global_magnitude_step(chain["params"], chain["masks"], 0.1)
        return run

    times = interleaved({"minilm": step("minilm"), "bert_base": step("bert_base")}, repeats, 0, label="magnitude step")
    total = {name: sum(p.numel() for p in chain["params"].values()) for name, chain in chains.items()}
    small = "tiny BERT (quick)" if quick else "MiniLM"
    big_name = "bert-base stand-in (quick: 2 layers, hidden 128)" if quick else "bert-base-sized (random)"
    rows = []
    for name, label, limit in (("minilm", small, 1.0), ("bert_base", big_name, 5.0)):
        seconds = times.median(name)
        rows.append(row(
            f"magnitude_step_{name}", f"5{'a' if name == 'minilm' else 'b'}. global_magnitude_step 10%, {label}, "
            f"{total[name] / 1e6:.1f}M weights", seconds, f"{seconds:.3f} s (cpu {times.median(name, 'cpu'):.3f} s)",
            f"< {limit:g} s", seconds < limit, weights=total[name], median_s={name: seconds},
            median_cpu_s={name: times.median(name, "cpu")}, **times.to_dict(name),
        ))
    return rows


def make_run_wall_time(out_dir: Path) -> list[dict]:
    """Measurement 7: `make run` wall time from make_run_wall_time.json, recorded by hand, if any."""
    for folder in dict.fromkeys([Path(out_dir), PROJECT_ROOT / "bench" / "results"]):
        path = folder / "make_run_wall_time.json"
        if path.is_file():
            try:
                record = json.loads(path.read_text())
                seconds = float(record["seconds"])
            except (ValueError, KeyError, TypeError) as error:
                return [row("make_run_wall_time", "7. make run wall time", None, f"unreadable {path.name}: {error}", "information", None)]
            extra = ", ".join(f"{k} {record[k]}" for k in ("command", "date") if record.get(k))
            return [row("make_run_wall_time", "7. make run wall time", seconds,
                        f"{seconds:.0f} s ({seconds / 60:.1f} min{'; ' + extra if extra else ''})", "information", None,
                        record=record, path=str(path))]
    return [row("make_run_wall_time", "7. make run wall time", None, "not recorded", "information", None)]
