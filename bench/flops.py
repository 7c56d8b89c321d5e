"""Analytic matmul FLOPs of a (possibly pruned) BERT encoder, forward pass.

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

from __future__ import annotations

from collections.abc import Sequence


def layer_flops(seq_len: int, hidden: int, head_dim: int, intermediate: int, heads_kept: int, mlp_kept: int) -> int:
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


def masks_flops(config, head_mask, mlp_mask, seq_len: int) -> int:
    """FLOPs of the encoder that keeps the 1-gates of `head_mask` [L, H] and `mlp_mask` [L]."""
    head_dim = int(config.hidden_size) // int(config.num_attention_heads)
    heads = [int(sum(int(v) for v in row)) for row in head_mask]
    mlps = [int(v) for v in mlp_mask]
    return encoder_flops(seq_len, int(config.hidden_size), head_dim, int(config.intermediate_size), heads, mlps)
