"""What a ticket costs to run: parameters, analytic encoder FLOPs, and measured latency.

FLOPs are read from the model's actual (pruned) shapes, so a physically pruned ticket is costed
as it runs; the formula is in `layer_flops`, generalised to every family in `family_layer_flops`. Latency is wall
clock on whatever device the model sits on, with torch's current intra-op thread count
(`torch.get_num_threads()`, recorded by `ticket_cost`); the full model and the ticket are timed
interleaved, in the same process, on the same random batch, so that machine load affects both
alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from lottery.errors import ConfigError
from lottery.models import encoder_layers, forward_inputs, model_family
from lottery.pruning import pruned_structure


def layer_flops(seq_len: int, hidden: int, head_dim: int, intermediate: int, heads_kept: int, mlp_kept: int) -> int:
    """Forward matmul FLOPs of one transformer layer for one sequence.

    Per sequence of T tokens, per layer, with hidden size d, head size d_h, h heads kept, FFN size f
    and m = 1 if the layer's MLP is kept (0 if pruned); one multiply-add = 2 FLOPs:

        q, k, v projections      3 * 2 * T * d * (h * d_h)
        attention output proj.   2 * T * (h * d_h) * d
        scores Q K^T             h * 2 * T * T * d_h
        context  P V             h * 2 * T * T * d_h
        FFN (two dense layers)   m * 2 * (2 * T * d * f)

    summed over layers. Embeddings, LayerNorm, softmax, GELU, dropout, pooler and classifier are not
    counted (not encoder matmuls). The backward pass costs about twice the forward for every matmul,
    so a training step's encoder FLOPs scale by the same ratio; only ratios are used.
    The projection and FFN terms match `torch.utils.flop_counter.FlopCounterMode` exactly on MiniLM,
    full and pruned (it does not count CPU SDPA, so the attention terms are added by hand).
    """
    t, d, inner = seq_len, hidden, heads_kept * head_dim
    projections = 3 * 2 * t * d * inner + 2 * t * inner * d
    attention = heads_kept * 2 * (2 * t * t * head_dim)
    ffn = mlp_kept * 2 * (2 * t * d * intermediate)
    return projections + attention + ffn


def encoder_flops(
    seq_len: int,
    hidden: int,
    head_dim: int,
    intermediate: int,
    heads_kept: Sequence[int],
    mlps_kept: Sequence[int],
) -> int:
    """Forward matmul FLOPs of the encoder for one sequence (multiply by the batch size for a batch)."""
    return sum(
        layer_flops(seq_len, hidden, head_dim, intermediate, int(h), int(m)) for h, m in zip(heads_kept, mlps_kept, strict=True)
    )


def family_layer_flops(seq_len: int, unit_weights: int, query_heads: int, head_dim: int, mlp_weights: int) -> int:
    """`layer_flops` for any family, from what one layer holds: `unit_weights` weights of the
    attention projections applied to every token (q, k, v and output; a fused Wqkv; a decoder's
    q_proj, k_proj, v_proj, o_proj), `query_heads` query heads of size `head_dim` (a KV group
    holds several), `mlp_weights` weights of the MLP's linears (BERT: 2 * d * f; a SwiGLU MLP:
    3 * d * f; ModernBERT's gated Wi: 2 * d * f plus Wo's d * f):

        projections   2 * T * unit_weights
        attention     query_heads * 2 * (2 * T * T * head_dim)
        MLP           2 * T * mlp_weights

    For BERT it is `layer_flops` exactly. DeBERTa's relative-position terms (its position
    projections, applied to the 2k relative embeddings, and the c2p / p2c scores) are not counted.
    """
    t = seq_len
    return 2 * t * unit_weights + query_heads * 2 * (2 * t * t * head_dim) + 2 * t * mlp_weights


def masks_flops(config, head_mask, mlp_mask, seq_len: int) -> int:
    """FLOPs of the encoder that keeps the 1-gates of `head_mask` [L, units] and `mlp_mask` [L]."""
    family = model_family(config)
    units = [int(sum(int(v) for v in row)) for row in head_mask]
    per_unit, per_mlp = family.unit_weight_count(config), family.mlp_weight_count(config)
    heads, head_dim = family.heads_per_unit(config), family.head_dim(config)
    return sum(family_layer_flops(seq_len, u * per_unit, u * heads, head_dim, int(m) * per_mlp)
               for u, m in zip(units, mlp_mask, strict=True))


def flops_per_example(model: nn.Module, seq_len: int = 128) -> int:
    """Forward matmul FLOPs of the model's encoder, as it is now (pruned or not), for one sequence:
    from the actual shapes of each layer's token-wise attention projections and MLP linears."""
    family = model_family(model)
    config = model.config
    structure = pruned_structure(model)
    token_wise = [linear.path for linear in family.unit_linears(config) if linear.token_wise]
    total = 0
    for layer, units in zip(encoder_layers(model), structure["heads"], strict=True):
        unit_weights = sum(layer.get_submodule(path).weight.numel() for path in token_wise)
        mlp_weights = sum(linear.weight.numel() for linear in family.mlp_modules(layer))
        total += family_layer_flops(seq_len, unit_weights, len(units) * family.heads_per_unit(config),
                                    family.head_dim(config), mlp_weights)
    return total


def parameter_count(model: nn.Module) -> int:
    """All parameters (each shared tensor once), embeddings and task head included."""
    return sum(parameter.numel() for parameter in model.parameters())


def encoder_parameter_count(model: nn.Module) -> int:
    """Parameters of the transformer layers only: the part that pruning heads and MLPs shrinks."""
    return sum(parameter.numel() for parameter in encoder_layers(model).parameters())


def random_batch(model: nn.Module, batch_size: int, seq_len: int = 128, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of random token ids without padding, on the model's device (the content does not
    change the cost of a dense forward pass); only the inputs the model's forward takes."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, int(model.config.vocab_size), (batch_size, seq_len), generator=generator)
    device = next(model.parameters()).device
    return forward_inputs(model, {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids, device=device),
        "token_type_ids": torch.zeros_like(input_ids, device=device),
    })


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_rounds(models: dict[str, nn.Module], batch_size: int, seq_len: int, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Forward-pass seconds of each model on the same random batch: `warmup` untimed rounds, then
    `repeats` rounds in which every model runs once (order reversed every other round, so neither
    always runs right after the other)."""
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    batches = {name: random_batch(model, batch_size, seq_len) for name, model in models.items()}
    training = {name: model.training for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    try:
        for model in models.values():
            model.eval()
        with torch.inference_mode():
            for round_index in range(warmup + repeats):
                order = list(models) if round_index % 2 == 0 else list(reversed(models))
                for name in order:
                    device = batches[name]["input_ids"].device
                    _synchronize(device)
                    start = time.perf_counter()
                    models[name](**batches[name])
                    _synchronize(device)
                    if round_index >= warmup:
                        times[name].append(time.perf_counter() - start)
    finally:
        for name, model in models.items():
            model.train(training[name])
    return times


def measure_latency(model: nn.Module, batch_size: int, seq_len: int = 128, repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of one forward pass on a random batch [batch_size, seq_len].

    Eval mode (restored afterwards) under `torch.inference_mode`, with torch's current number of
    intra-op threads (`torch.get_num_threads()`; set it before calling to compare like with like).
    """
    return statistics.median(_timed_rounds({"model": model}, batch_size, seq_len, repeats, warmup)["model"])


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def ticket_cost(
    full_model: nn.Module,
    pruned_model: nn.Module,
    batch_sizes: Sequence[int] = (1, 64),
    seq_len: int = 128,
    repeats: int = 10,
    warmup: int = 2,
) -> dict:
    """Parameters, FLOPs and latency of a full model and its (physically pruned) ticket.

    Returns a JSON-friendly dict: the settings (seq_len, threads, repeats, warmup, device), per
    model ("full", "pruned") params, encoder_params, flops_per_example and latency_s {batch size:
    median seconds per batch}, and speedup (full / pruned) of each; a speed-up is None where the
    ticket's count is 0 (nothing left to run).
    """
    models = {"full": full_model, "pruned": pruned_model}
    result: dict = {
        "seq_len": seq_len,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "warmup": warmup,
        "device": str(next(full_model.parameters()).device),
    }
    for name, model in models.items():
        result[name] = {
            "params": parameter_count(model),
            "encoder_params": encoder_parameter_count(model),
            "flops_per_example": flops_per_example(model, seq_len),
            "latency_s": {},
        }
    for batch_size in batch_sizes:
        times = _timed_rounds(models, int(batch_size), seq_len, repeats, warmup)
        for name in models:
            result[name]["latency_s"][str(batch_size)] = statistics.median(times[name])
    full, pruned = result["full"], result["pruned"]
    result["speedup"] = {
        "params": _ratio(full["params"], pruned["params"]),
        "encoder_params": _ratio(full["encoder_params"], pruned["encoder_params"]),
        "flops": _ratio(full["flops_per_example"], pruned["flops_per_example"]),
        "latency": {size: _ratio(full["latency_s"][size], pruned["latency_s"][size]) for size in full["latency_s"]},
    }
    return result
