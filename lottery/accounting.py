"""How much of a model a ticket keeps, in the two definitions used for it.

- `size_pct`: kept encoder (transformer block) parameters over the full encoder's.
- `size_pct_all`: the paper's size column (the authors' experiment_analysis/
  eval_performance_analysis.ipynb computes (parameters of the pruned model / parameters of the
  full model) - 0.21, 0.21 being about bert-base's embedding share): kept NON-embedding
  parameters (encoder, pooler, classifier) over ALL parameters of the full model, with the
  model's own embedding count instead of 0.21. For bert-base it is about 0.8 x `size_pct`; for
  MiniLM, whose embeddings are half the model, about 0.5 x.
"""

from __future__ import annotations

from torch import nn

from lottery.masks import StructuredMasks, check_shape
from lottery.models import encoder_layers, model_family, model_shape
from lottery.pruning import pruned_structure


def encoder_parameter_count(model: nn.Module) -> int:
    """Parameters of the transformer blocks (`encoder_layers`; BERT: q/k/v, attention output dense,
    both LayerNorms, intermediate and output dense, weights and biases). Embeddings, pooler,
    final norm and classifier are not counted."""
    return sum(parameter.numel() for parameter in encoder_layers(model).parameters())


def embedding_parameter_count(model: nn.Module) -> int:
    """Parameters of the model's embedding module (BERT: word, position and token-type embeddings
    and their LayerNorm), whatever it is called: the base model's `embeddings`, else the input
    embeddings."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), model)
    module = getattr(base, "embeddings", None)
    if not isinstance(module, nn.Module):
        module = model.get_input_embeddings()
    return sum(parameter.numel() for parameter in module.parameters())


def size_pct_all(model: nn.Module, encoder_kept: int, encoder_total: int) -> float:
    """The paper's size: kept non-embedding parameters over all parameters of the full model, in %.

    `encoder_kept` / `encoder_total`: the ticket's and the full architecture's encoder parameters
    (the rest of `model` is neither pruned nor prunable)."""
    outside_encoder = sum(p.numel() for p in model.parameters()) - encoder_parameter_count(model)
    all_full = outside_encoder + encoder_total
    return 100.0 * (outside_encoder - embedding_parameter_count(model) + encoder_kept) / all_full


def _unit_sizes(model: nn.Module) -> tuple[int, int]:
    """Parameters owned by one attention unit and by one MLP block in the unpruned architecture,
    from the family's adapter (`lottery.architectures`).

    BERT: a head owns its q/k/v rows and biases and its columns of attention.output.dense; an MLP
    owns intermediate.dense and output.dense (weights and biases). A decoder's KV group owns its
    q_proj rows (all its query heads), k_proj and v_proj rows and o_proj columns.
    """
    family = model_family(model)
    return family.unit_parameter_count(model.config), family.mlp_parameter_count(model.config)


def structured_size(model: nn.Module, masks: StructuredMasks) -> dict[str, float | int]:
    """Heads (attention units), MLPs and encoder parameters that `masks` keep, against the full
    architecture, and the two size percentages (module docstring).

    Works on a full or an already pruned model (masks use original unit indices; a unit already
    removed counts as not kept). `params_kept` equals the encoder parameter count of the model
    after `prune_structure(model, masks)`; norms and the attention-output bias always remain.
    """
    check_shape(masks.shape, model_shape(model), "StructuredMasks passed to structured_size")
    num_layers, num_heads = masks.shape
    per_head, per_mlp = _unit_sizes(model)
    structure = pruned_structure(model)
    head_gates = masks.head.detach().cpu().tolist()
    mlp_gates = masks.mlp.detach().cpu().tolist()
    heads_kept = mlps_kept = params_kept = params_total = 0
    for index, layer in enumerate(encoder_layers(model)):
        present_heads = structure["heads"][index]
        present_mlp = structure["mlps"][index]
        layer_params = sum(parameter.numel() for parameter in layer.parameters())
        always_kept = layer_params - len(present_heads) * per_head - present_mlp * per_mlp
        layer_heads = sum(1 for head in present_heads if head_gates[index][head] == 1)
        layer_mlp = int(present_mlp == 1 and mlp_gates[index] == 1)
        heads_kept += layer_heads
        mlps_kept += layer_mlp
        params_kept += always_kept + layer_heads * per_head + layer_mlp * per_mlp
        params_total += always_kept + num_heads * per_head + per_mlp
    return {
        "heads_kept": heads_kept,
        "heads_total": num_layers * num_heads,
        "mlps_kept": mlps_kept,
        "mlps_total": num_layers,
        "params_kept": params_kept,
        "params_total": params_total,
        "size_pct": 100.0 * params_kept / params_total,
        "size_pct_all": size_pct_all(model, params_kept, params_total),
    }
