"""What a ticket costs to run: parameters, analytic encoder FLOPs, and measured latency.

FLOPs are read from the model's actual (pruned) shapes, so a physically pruned ticket is costed
as it runs; the formula is in `layer_flops`, generalised to every family in `family_layer_flops`.

Latency is measured where the model is to run: `model_cost(model, device, precision=...)` moves
it to `device` (the run's device: a GPU in a GPU run), times an eval-mode forward pass per batch
size with `torch.utils.benchmark.Timer.blocked_autorange` (which warms up, synchronises the GPU
and takes many timed blocks; the median block is reported) and records the device, its name,
the precision (fp32, or bf16 autocast as trainer.precision=bf16-mixed) and the CPU threads with
the numbers. `ticket_cost(full_cost, ticket)` times a ticket with exactly the settings of one
such measurement of the full model, so an experiment times its full model once and each ticket
against it, and reports the latency speed-up next to the FLOPs speed-up.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils import benchmark

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


PRECISIONS = ("fp32", "bf16")
# MiniLM on 2 shared CPU cores (others' jobs running), three reruns of model_cost at batch 1 and 64:
# 2 s per batch size gave 59-67 / 2 timed blocks; the fastest block agreed within 6.0% / 2.7%, the
# median within 18.7% / 5.7% (1 s: 2.8-7.4% / 6.9%; 4 s: no better, the load drifted). A GPU needs
# far less time per batch size.
DEFAULT_MIN_RUN_TIME_S = 2.0


def device_name(device: torch.device) -> str:
    """A GPU's product name, or the CPU's model name where the system gives it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or device.type


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _latency(model: nn.Module, device: torch.device, batch_size: int, seq_len: int, precision: str,
             threads: int, min_run_time_s: float) -> dict:
    """Seconds of one eval-mode forward pass on a random batch [batch_size, seq_len]: the median
    (and interquartile range) of the timed blocks of `blocked_autorange`."""
    batch = random_batch(model, batch_size, seq_len)

    def forward() -> None:
        with torch.inference_mode(), _autocast(device, precision):
            model(**batch)

    timer = benchmark.Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads)
    measurement = timer.blocked_autorange(min_run_time=min_run_time_s)
    return {"median": measurement.median, "iqr": measurement.iqr, "min": min(measurement.times),
            "blocks": len(measurement.times),
            "runs_per_block": measurement.number_per_run}


def model_cost(model: nn.Module, device: str | torch.device | None = None, *, batch_sizes: Sequence[int] = (1, 64),
               seq_len: int = 128, precision: str = "fp32", threads: int | None = None,
               min_run_time_s: float = DEFAULT_MIN_RUN_TIME_S) -> dict:
    """Parameters, FLOPs per example and measured latency of `model` on `device`.

    `device`: where to time it (default: where the model is); the model goes back where it was.
    `precision`: fp32, or bf16 (a bfloat16 autocast, as trainer.precision=bf16-mixed runs).
    `threads`: CPU threads while timing (default torch's current number). The model is timed in
    eval mode, restored afterwards. Returns a JSON-friendly dict: device, device_name, precision,
    threads, seq_len, min_run_time_s, params, encoder_params, flops_per_example, and per batch size
    (as a string) latency_s (median seconds per forward pass over the timed blocks), latency_iqr_s,
    latency_min_s (the fastest block: what other processes on a shared machine slow down least) and
    latency_blocks.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not min_run_time_s > 0:
        raise ConfigError(f"min_run_time_s must be positive, got {min_run_time_s!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    threads = int(threads or torch.get_num_threads())
    home = next(model.parameters()).device
    model.to(device)
    result: dict = {
        "device": str(device), "device_name": device_name(device), "precision": precision, "threads": threads,
        "seq_len": seq_len, "min_run_time_s": min_run_time_s, "batch_sizes": [int(b) for b in batch_sizes],
        "params": parameter_count(model), "encoder_params": encoder_parameter_count(model),
        "flops_per_example": flops_per_example(model, seq_len),
        "latency_s": {}, "latency_iqr_s": {}, "latency_min_s": {}, "latency_blocks": {},
    }
    training = model.training
    model.eval()
    try:
        for batch_size in batch_sizes:
            timed = _latency(model, device, int(batch_size), seq_len, precision, threads, min_run_time_s)
            result["latency_s"][str(batch_size)] = timed["median"]
            result["latency_iqr_s"][str(batch_size)] = timed["iqr"]
            result["latency_min_s"][str(batch_size)] = timed["min"]
            result["latency_blocks"][str(batch_size)] = timed["blocks"]
    finally:
        model.train(training)
        model.to(home)
    return result


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


SETTINGS = ("device", "device_name", "precision", "threads", "seq_len", "min_run_time_s")
PER_MODEL = ("params", "encoder_params", "flops_per_example", "latency_s", "latency_iqr_s", "latency_min_s",
             "latency_blocks")


def ticket_cost(full_cost: dict, ticket: nn.Module) -> dict:
    """The cost of a (physically pruned) `ticket`, measured with exactly the settings of
    `full_cost` (a `model_cost` of the full model: same device, precision, threads, batch sizes,
    sequence length and run time), against it.

    Returns the settings, "full" and "pruned" (params, encoder_params, flops_per_example and the
    latencies), "speedup" (full / pruned: params, encoder_params, flops, latency per batch size;
    None where the ticket's count is 0, nothing left to run) and "latency_vs_flops" per batch size:
    the latency speed-up over the FLOPs speed-up (1 = the ticket runs as much faster as its FLOPs
    say; below 1 = less, e.g. launch overhead or layers that pruning does not shrink).
    """
    pruned = model_cost(ticket, full_cost["device"], batch_sizes=full_cost["batch_sizes"],
                        seq_len=full_cost["seq_len"], precision=full_cost["precision"],
                        threads=full_cost["threads"], min_run_time_s=full_cost["min_run_time_s"])
    result: dict = {key: full_cost[key] for key in SETTINGS}
    result["full"] = {key: full_cost[key] for key in PER_MODEL}
    result["pruned"] = {key: pruned[key] for key in PER_MODEL}
    full, small = result["full"], result["pruned"]
    flops = _ratio(full["flops_per_example"], small["flops_per_example"])
    latency = {size: _ratio(full["latency_s"][size], small["latency_s"][size]) for size in full["latency_s"]}
    result["speedup"] = {
        "params": _ratio(full["params"], small["params"]),
        "encoder_params": _ratio(full["encoder_params"], small["encoder_params"]),
        "flops": flops,
        "latency": latency,
    }
    result["latency_vs_flops"] = {size: (value / flops if value is not None and flops else None)
                                  for size, value in latency.items()}
    return result
