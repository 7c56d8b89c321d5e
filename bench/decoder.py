"""Measurement 11: masks and physical pruning on a decoder with grouped-query attention.

A small random Qwen2 classifier (4 layers, hidden 256, 8 query heads in 4 key/value groups,
SwiGLU MLP 1024; quick: the tests' tiny one), training steps as in measurements 1 and 2:

11a. masked (all gates 1) / unmasked training step                         target <= 1.05
11b. physically pruned / masked training step, half the KV groups and half the MLPs
                                                                           target <= 1.2 x FLOPs ratio
"""

from __future__ import annotations

from bench.measurements import _timing_details, row
from bench.timing import interleaved
from bench.workloads import RUNTIME, TrainStep, clone_model, log, make_batch, random_structured_mask
from lottery.cost import masks_flops
from lottery.masks import StructuredMasks
from lottery.models import model_shape, tiny_model
from lottery.pruning import prune_structure

DECODER = {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 8, "num_key_value_heads": 4,
           "intermediate_size": 1024}


def decoder_steps(quick: bool, batch_size: int, seq_len: int, repeats: int, warmup: int) -> list[dict]:
    model = (tiny_model("qwen2", seed=0) if quick else tiny_model("qwen2", seed=0, **DECODER)).to(RUNTIME.device)
    config = model.config
    shape = model_shape(model)
    batch = make_batch(batch_size, seq_len)
    batch = {key: value for key, value in batch.items() if key != "token_type_ids"}
    masked = clone_model(model)
    gates = StructuredMasks.for_model(masked)
    gates.attach(masked)
    ones = StructuredMasks.for_model(masked)
    half = random_structured_mask(*shape, head_fraction=0.5, mlps_kept=max(1, round(shape[0] / 2)), seed=0)
    pruned = prune_structure(clone_model(model), half)
    steps = {"plain": TrainStep(model, batch), "masked": TrainStep(masked, batch), "pruned": TrainStep(pruned, batch)}

    def masked_with(masks):
        def run():
            gates.set(masks.head, masks.mlp)
            steps["masked"]()
        return run

    workloads = {"decoder_unmasked": steps["plain"], "decoder_masked_ones": masked_with(ones),
                 "decoder_masked_half": masked_with(half), "decoder_pruned_half": steps["pruned"]}
    layers, units = shape
    log(f"decoder (Qwen2, {layers} layers, {config.num_attention_heads} query heads in {units} KV groups): "
        f"{len(workloads)} workloads x ({warmup} warm-up + {repeats}) rounds")
    times = interleaved(workloads, repeats, warmup, label="decoder")
    ratio = times.ratio("decoder_masked_ones", "decoder_unmasked")
    rows = [row("decoder_masked_overhead", "11a. decoder with GQA (Qwen2): masked (all gates 1) / unmasked training step",
                ratio, f"{ratio:.3f}", "<= 1.05", ratio <= 1.05,
                **_timing_details(times, "decoder_masked_ones", "decoder_unmasked"))]
    full_flops = masks_flops(config, ones.head.tolist(), ones.mlp.tolist(), seq_len)
    flops_ratio = masks_flops(config, half.head.tolist(), half.mlp.tolist(), seq_len) / full_flops
    ratio = times.ratio("decoder_pruned_half", "decoder_masked_half")
    bound = 1.2 * flops_ratio
    rows.append(row(
        "decoder_pruned_vs_masked", f"11b. decoder with GQA: pruned / masked training step, {half.num_heads_kept}/"
        f"{layers * units} KV groups + {half.num_mlps_kept}/{layers} MLPs", ratio,
        f"{ratio:.3f} = {ratio / flops_ratio:.2f} x FLOPs ratio {flops_ratio:.3f}", f"<= 1.2 x FLOPs ratio = {bound:.3f}",
        ratio <= bound, flops_ratio=flops_ratio, **_timing_details(times, "decoder_pruned_half", "decoder_masked_half"),
    ))
    return rows

