"""Where each supported transformer family keeps its attention units and MLP blocks, and how to
remove them physically. One adapter (`Family`) per family, chosen from `config.model_type`.

This module is SELF-CONTAINED: it imports only torch, transformers and the standard library (no
other bert-lottery module), so that it can be copied verbatim next to an exported ticket and a
pruned model loads without bert-lottery installed.

A *unit* is what one gate xi[l, u] switches and what structured pruning removes: an attention
head in every family except grouped-query-attention decoders, where it is a key/value group (one
KV head and the query heads that read it). Masks are [layers, units]; for multi-head attention
`num_key_value_heads == num_attention_heads`, so units are heads. An MLP block is the other unit,
one per layer.

Per family, paths inside one layer (the modules of `Family.layers(model)`):

==================  =====================================  ===========================  ======================
family (model_type) unit-owned slices (rows unless noted)  attention output projection  MLP (gate point)
==================  =====================================  ===========================  ======================
BERT, RoBERTa,      attention.self.{query,key,value},      attention.output.dense       intermediate.dense ->
XLM-R, ELECTRA      d rows per head; attention.output.                                  output.dense
(bert, roberta,     dense, d columns per head                                           (output.dropout)
xlm-roberta,
electra)
DistilBERT          attention.{q_lin,k_lin,v_lin} rows,    attention.out_lin            ffn.lin1 -> ffn.lin2
(distilbert)        attention.out_lin columns                                           (ffn.dropout)
DeBERTa-v2/v3       attention.self.{query,key,value}_proj  attention.output.dense       intermediate.dense ->
(deberta-v2)        rows and, unless config.share_att_key,                              output.dense
                    attention.self.pos_{key,query}_proj                                 (output.dropout)
                    rows (the relative-position
                    projections, per head like k and q);
                    attention.output.dense columns
ModernBERT          attn.Wqkv: fused [3, heads, d] rows,   attn.Wo                      mlp.Wi (gated: input
(modernbert)        a head owns d rows in each of the                                   and gate halves,
                    q, k and v thirds; attn.Wo columns                                  2 x intermediate
                                                                                        rows) -> mlp.Wo (mlp)
Llama, Mistral,     self_attn.q_proj: g x d rows per KV    self_attn.o_proj             mlp.{gate,up}_proj ->
Qwen2 (llama,       group (its g = heads / kv_heads query                               mlp.down_proj (mlp),
mistral, qwen2)     heads); self_attn.{k,v}_proj: d rows;                               SwiGLU
                    self_attn.o_proj: g x d columns
==================  =====================================  ===========================  ======================

Local/global (ModernBERT) and sliding-window (Mistral, Qwen2) layers need nothing special: the
window changes which keys a query sees, not which weights a unit owns.

Gates, for every family alike:
- heads: a forward PRE-hook on the attention output projection: its input is the concatenation
  of the per-unit contexts [..., units * width] (width = g x d), so viewing it as
  [..., units, width] and multiplying by the layer's gates zeroes exactly a unit's contribution;
- MLP: a forward hook on the MLP gate module, whose output is the block's contribution before
  the residual add (and LayerNorm, for post-LN encoders).

Physical pruning (`Family.prune_units`, `Family.prune_mlp`, `prune_to`) slices those linears IN
PLACE (the module objects stay, so hooks on them stay), updates what the family's attention
forward reads (BERT / DeBERTa `num_attention_heads` and `all_head_size`, DistilBERT `n_heads`;
ModernBERT and the decoders infer the count from the tensor shapes), and records on the output
projection, in the non-persistent buffer `lottery_kept_heads`, the ORIGINAL indices of the units
it still holds: gates always use original indices. A layer left with no units gets a
`NoHeadsAttention` (no family's attention can reshape an empty projection) that holds the same
(empty) linears and returns an empty context, so the output projection yields only its bias,
exactly what the masked model computes. A removed MLP keeps its linears with 0 intermediate
features and no output bias: it outputs exact zeros, as the gated block does.

The structure is recorded on the config as `pruned_structure = {"heads": [[kept original unit
indices] per layer], "mlps": [0/1 per layer]}` ("heads" holds units: KV groups for GQA).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

KEPT_UNITS_BUFFER = "lottery_kept_heads"
STRUCTURE_KEY = "pruned_structure"
# What a layer whose attention units are ALL removed keeps of its attention output projection:
# "keep" its bias (what the masked model computes: an empty context projects to the bias), or "drop"
# it, as the authors' physical pruning does (src/model_bert.py:285-296 `BertAttention.prune_heads`
# sets `self.output.dense = None`, and `BertSelfOutput.forward`, lines 268-275, then returns
# LayerNorm(input) with no projection bias). Recorded in the structure only when "drop".
EMPTY_LAYER_BIASES = ("keep", "drop")

# The roles the paper's BERT names for a layer's linears; every family maps them to its own modules
# (magnitude pruning's `modules` setting lists roles, so one config serves every family).
QUERY, KEY, VALUE, ATTENTION_OUTPUT = ("attention.self.query", "attention.self.key", "attention.self.value",
                                       "attention.output.dense")
MLP_INPUT, MLP_OUTPUT = "intermediate.dense", "output.dense"
ATTENTION_ROLES = (QUERY, KEY, VALUE, ATTENTION_OUTPUT)
MLP_ROLES = (MLP_INPUT, MLP_OUTPUT)
ROLES = ATTENTION_ROLES + MLP_ROLES


class ArchitectureError(ValueError):
    """A model whose family bert-lottery has no adapter for, or whose layers lack a part it needs."""


@dataclass(frozen=True)
class UnitLinear:
    """A linear layer that the attention units of a layer share out.

    Along `dim` (0: output rows, which take their bias entries with them; 1: input columns, the
    bias then being shared by all units and never removed) the linear is cut into `segments`
    equal parts (3 for a fused q/k/v projection, else 1); within each part every unit owns
    `width` consecutive entries, units in order. `token_wise`: applied to every token (False for
    DeBERTa's relative-position projections, applied to the position embeddings)."""

    path: str
    dim: int
    width: int
    segments: int = 1
    bias: bool = False
    token_wise: bool = True

    @property
    def per_unit(self) -> int:
        return self.width * self.segments

    def index(self, positions: Sequence[int], present: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Indices along `dim` of the units at `positions` (0-based among the `present` ones)."""
        offsets = torch.arange(self.width)
        blocks = [segment * present * self.width + position * self.width + offsets
                  for segment in range(self.segments) for position in positions]
        index = torch.cat(blocks) if blocks else torch.zeros(0, dtype=torch.long)
        return index.to(device=device, dtype=torch.long)


def slice_linear_(linear: nn.Linear, index: torch.Tensor, dim: int, keep_bias: bool = True) -> nn.Linear:
    """Keep only the `index` rows (dim=0, with their bias entries) or columns (dim=1) of `linear`,
    in place (the module object, and any hook on it, stays). Slicing columns keeps the bias whole,
    or removes it with `keep_bias=False`. Zero-sized results are fine (they stand for removed units)."""
    weight = linear.weight
    new_weight = weight.detach().index_select(dim, index.to(weight.device)).clone()
    linear.weight = nn.Parameter(new_weight, requires_grad=weight.requires_grad)
    if linear.bias is not None:
        if dim == 0:
            bias = linear.bias
            linear.bias = nn.Parameter(bias.detach().index_select(0, index.to(bias.device)).clone(),
                                       requires_grad=bias.requires_grad)
        elif not keep_bias:
            linear.bias = None
    linear.out_features, linear.in_features = new_weight.shape
    return linear


class NoHeadsAttention(nn.Module):
    """Stands in for an attention module whose units were all removed: an empty context.

    It holds the family's (empty) projections under their own names, so that the layer keeps its
    layout and parameter names; `after` names those applied to the empty context, in order (the
    output projection where the family keeps it inside the attention module, e.g. a decoder's
    o_proj): an empty input gives the projection's bias, or zeros.
    """

    def __init__(self, modules: dict[str, nn.Module], after: Sequence[str] = (), attributes: dict | None = None) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        self.after = tuple(after)
        for name, value in (attributes or {}).items():
            setattr(self, name, value)

    def forward(self, hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        if hidden_states is None:  # called with keywords only, under another name
            hidden_states = next(value for value in kwargs.values() if isinstance(value, torch.Tensor))
        context = hidden_states.new_zeros(*hidden_states.shape[:-1], 0)
        for name in self.after:
            context = getattr(self, name)(context)
        return context, None


class NoHeadsSelfAttention(NoHeadsAttention):
    """BERT-layout `attention.self` with no heads left (its q/k/v kept as empty Linears)."""

    def __init__(self, query: nn.Linear, key: nn.Linear, value: nn.Linear, attention_head_size: int) -> None:
        super().__init__({"query": query, "key": key, "value": value},
                         attributes={"attention_head_size": attention_head_size, "num_attention_heads": 0,
                                     "all_head_size": 0})


def _get(module: nn.Module, path: str) -> nn.Module:
    return module.get_submodule(path)


def _set(module: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(module, parent) if parent else module, name, new)


class Family:
    """Adapter of one transformer family: where its layers, units and MLPs are, and how to prune them.

    Paths are relative to one layer. Subclasses set the class attributes and override what differs.
    """

    name: str = ""
    model_types: tuple[str, ...] = ()
    layers_path: str = ""  # from the base model (`model.<base_model_prefix>`)
    attention: str = ""  # the module whose forward reads the unit count; replaced when no unit is left
    output_projection: str = ""  # its input: the units' contexts, concatenated
    mlp_inputs: tuple[str, ...] = ()
    mlp_output: str = ""
    mlp_gate: str = ""  # its output: the MLP block's contribution before the residual add
    # The gate module is a dropout that a removed MLP no longer needs (dropout of zeros is zeros).
    gate_is_dropout: bool = False
    # The attention's children that `NoHeadsAttention` applies to the empty context (output projection
    # and its dropout when they live inside the attention module).
    no_heads_after: tuple[str, ...] = ()
    decoder: bool = False

    # ----- sizes, from the config -----
    def num_heads(self, config) -> int:
        return int(config.num_attention_heads)

    def num_units(self, config) -> int:
        return self.num_heads(config)

    def heads_per_unit(self, config) -> int:
        return self.num_heads(config) // self.num_units(config)

    def hidden_size(self, config) -> int:
        return int(config.hidden_size)

    def head_dim(self, config) -> int:
        return self.hidden_size(config) // self.num_heads(config)

    def intermediate_size(self, config) -> int:
        return int(config.intermediate_size)

    def unit_linears(self, config) -> list[UnitLinear]:
        """The linears the units share out, with how (q, k, v first, the output projection last)."""
        raise NotImplementedError

    def mlp_shapes(self, config) -> list[tuple[str, int, int, bool]]:
        """(path, out_features, in_features, has bias) of each MLP linear of the unpruned model."""
        hidden, inner = self.hidden_size(config), self.intermediate_size(config)
        bias = self.mlp_bias(config)
        return [*((path, inner, hidden, bias) for path in self.mlp_inputs), (self.mlp_output, hidden, inner, bias)]

    def mlp_bias(self, config) -> bool:
        return True

    def roles(self, config) -> dict[str, tuple[str, ...]]:
        """The paths that play each of the paper's BERT roles (`ROLES`) in this family."""
        raise NotImplementedError

    def unit_parameter_count(self, config) -> int:
        """Parameters one unit owns (weights and bias entries of its slices)."""
        hidden = self.hidden_size(config)
        return sum(hidden * linear.per_unit + (linear.per_unit if linear.dim == 0 and linear.bias else 0)
                   for linear in self.unit_linears(config))

    def unit_weight_count(self, config) -> int:
        """Weights of one unit applied to every token (the matmul FLOPs' share of a unit)."""
        hidden = self.hidden_size(config)
        return sum(hidden * linear.per_unit for linear in self.unit_linears(config) if linear.token_wise)

    def mlp_parameter_count(self, config) -> int:
        return sum(out * inner + (out if bias else 0) for _, out, inner, bias in self.mlp_shapes(config))

    def mlp_weight_count(self, config) -> int:
        return sum(out * inner for _, out, inner, _ in self.mlp_shapes(config))

    # ----- finding things in a model -----
    def base(self, model: nn.Module) -> nn.Module:
        return getattr(model, getattr(model, "base_model_prefix", ""), model)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        try:
            layers = self.base(model).get_submodule(self.layers_path)
        except AttributeError:
            layers = None
        if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
            raise ArchitectureError(
                f"{type(model).__name__} has no `{self.layers_path}` list of transformer blocks, where the "
                f"{self.name} family keeps them")
        return layers

    def required_paths(self, config) -> tuple[str, ...]:
        return (self.attention, *(linear.path for linear in self.unit_linears(config)), *self.mlp_inputs,
                self.mlp_output, self.mlp_gate)

    def check_layer(self, layer: nn.Module, config, index: int) -> None:
        for path in self.required_paths(config):
            try:
                _get(layer, path)
            except AttributeError:
                raise ArchitectureError(
                    f"layer {index} ({type(layer).__name__}) has no `{path}`: not a {self.name}-family layer "
                    f"(model_type {getattr(config, 'model_type', None)!r})") from None

    def kept_units(self, layer: nn.Module) -> list[int] | None:
        """Original indices of the units the layer still holds, or None if it was never pruned."""
        kept = getattr(_get(layer, self.output_projection), KEPT_UNITS_BUFFER, None)
        return None if kept is None else [int(unit) for unit in kept.tolist()]

    def head_tensors(self, layer: nn.Module, config) -> list[tuple[torch.Tensor, UnitLinear, str]]:
        """(tensor, its UnitLinear, "weight" | "bias") of every unit-owned tensor of the layer, in
        `unit_linears` order, weight before bias; the output projection's (shared) bias is not one."""
        tensors = []
        for linear in self.unit_linears(config):
            module = _get(layer, linear.path)
            tensors.append((module.weight, linear, "weight"))
            if linear.dim == 0 and module.bias is not None:
                tensors.append((module.bias, linear, "bias"))
        return tensors

    def mlp_modules(self, layer: nn.Module) -> list[nn.Linear]:
        return [_get(layer, path) for path in (*self.mlp_inputs, self.mlp_output)]

    # ----- physical pruning -----
    def set_unit_count(self, attention: nn.Module, units: int, config) -> None:
        """Update what the attention forward reads about its unit count (nothing by default)."""

    def no_heads(self, attention: nn.Module, config) -> nn.Module:
        modules = {name: child for name, child in attention.named_children()
                   if isinstance(child, nn.Linear) or name in self.no_heads_after}
        return NoHeadsAttention(modules, self.no_heads_after)

    def prune_units(self, layer: nn.Module, config, present: Sequence[int], kept: Sequence[int]) -> None:
        """Keep only the units `kept` (original indices) of the `present` ones, in place."""
        present, kept = list(present), list(kept)
        output = _get(layer, self.output_projection)
        device = output.weight.device
        positions = [present.index(unit) for unit in kept]
        for linear in self.unit_linears(config):
            module = _get(layer, linear.path)
            slice_linear_(module, linear.index(positions, len(present), device), linear.dim)
        output.register_buffer(KEPT_UNITS_BUFFER, torch.tensor(kept, dtype=torch.long, device=device), persistent=False)
        attention = _get(layer, self.attention)
        if kept:
            self.set_unit_count(attention, len(kept), config)
        elif not isinstance(attention, NoHeadsAttention):
            _set(layer, self.attention, self.no_heads(attention, config))

    def prune_mlp(self, layer: nn.Module, config) -> None:
        """Remove the layer's MLP block, in place: it then outputs exact zeros."""
        nothing = torch.zeros(0, dtype=torch.long)
        for path in self.mlp_inputs:
            slice_linear_(_get(layer, path), nothing, dim=0)
        slice_linear_(_get(layer, self.mlp_output), nothing, dim=1, keep_bias=False)
        if self.gate_is_dropout:
            _set(layer, self.mlp_gate, nn.Identity())


class BertFamily(Family):
    name = "bert"
    model_types = ("bert", "roberta", "xlm-roberta", "electra")
    layers_path = "encoder.layer"
    attention = "attention.self"
    output_projection = "attention.output.dense"
    mlp_inputs = ("intermediate.dense",)
    mlp_output = "output.dense"
    mlp_gate = "output.dropout"
    gate_is_dropout = True
    projections = ("query", "key", "value")

    def unit_linears(self, config) -> list[UnitLinear]:
        d = self.head_dim(config)
        return [*(UnitLinear(f"{self.attention}.{name}", 0, d, bias=True) for name in self.projections),
                UnitLinear(self.output_projection, 1, d)]

    def roles(self, config) -> dict[str, tuple[str, ...]]:
        return {role: (role,) for role in ROLES}

    def set_unit_count(self, attention: nn.Module, units: int, config) -> None:
        attention.num_attention_heads = units
        attention.all_head_size = units * attention.attention_head_size

    def no_heads(self, attention: nn.Module, config) -> nn.Module:
        return NoHeadsSelfAttention(attention.query, attention.key, attention.value, attention.attention_head_size)


class DistilBertFamily(Family):
    name = "distilbert"
    model_types = ("distilbert",)
    layers_path = "transformer.layer"
    attention = "attention"
    output_projection = "attention.out_lin"
    mlp_inputs = ("ffn.lin1",)
    mlp_output = "ffn.lin2"
    mlp_gate = "ffn.dropout"
    gate_is_dropout = True
    no_heads_after = ("out_lin",)

    def num_heads(self, config) -> int:
        return int(config.n_heads)

    def hidden_size(self, config) -> int:
        return int(config.dim)

    def intermediate_size(self, config) -> int:
        return int(config.hidden_dim)

    def unit_linears(self, config) -> list[UnitLinear]:
        d = self.head_dim(config)
        return [*(UnitLinear(f"attention.{name}", 0, d, bias=True) for name in ("q_lin", "k_lin", "v_lin")),
                UnitLinear(self.output_projection, 1, d)]

    def roles(self, config) -> dict[str, tuple[str, ...]]:
        return {QUERY: ("attention.q_lin",), KEY: ("attention.k_lin",), VALUE: ("attention.v_lin",),
                ATTENTION_OUTPUT: ("attention.out_lin",), MLP_INPUT: ("ffn.lin1",), MLP_OUTPUT: ("ffn.lin2",)}

    def set_unit_count(self, attention: nn.Module, units: int, config) -> None:
        attention.n_heads = units

    def no_heads(self, attention: nn.Module, config) -> nn.Module:
        return NoHeadsAttention({name: getattr(attention, name) for name in ("q_lin", "k_lin", "v_lin", "out_lin")},
                                self.no_heads_after, {"n_heads": 0, "attention_head_size": attention.attention_head_size})


class DebertaV2Family(BertFamily):
    name = "deberta-v2"
    model_types = ("deberta-v2",)
    projections = ("query_proj", "key_proj", "value_proj")

    def head_dim(self, config) -> int:
        return int(getattr(config, "attention_head_size", None) or super().head_dim(config))

    @staticmethod
    def position_projections(config) -> tuple[str, ...]:
        """pos_key_proj (c2p) and pos_query_proj (p2c), which exist unless the keys are shared."""
        if not getattr(config, "relative_attention", False) or getattr(config, "share_att_key", False):
            return ()
        kinds = config.pos_att_type or []
        return tuple(name for name, kind in (("pos_key_proj", "c2p"), ("pos_query_proj", "p2c")) if kind in kinds)

    def unit_linears(self, config) -> list[UnitLinear]:
        d = self.head_dim(config)
        positions = [UnitLinear(f"{self.attention}.{name}", 0, d, bias=True, token_wise=False)
                     for name in self.position_projections(config)]
        return [*super().unit_linears(config)[:3], *positions, UnitLinear(self.output_projection, 1, d)]

    def roles(self, config) -> dict[str, tuple[str, ...]]:
        present = self.position_projections(config)
        position = {QUERY: ("pos_query_proj",), KEY: ("pos_key_proj",), VALUE: ()}
        roles = {role: (f"{self.attention}.{name}", *(f"{self.attention}.{extra}" for extra in position[role]
                                                       if extra in present))
                 for role, name in zip((QUERY, KEY, VALUE), self.projections, strict=True)}
        return {**roles, ATTENTION_OUTPUT: (ATTENTION_OUTPUT,), MLP_INPUT: (MLP_INPUT,), MLP_OUTPUT: (MLP_OUTPUT,)}

    def no_heads(self, attention: nn.Module, config) -> nn.Module:
        names = ("query_proj", "key_proj", "value_proj", *self.position_projections(config))
        return NoHeadsAttention({name: getattr(attention, name) for name in names},
                                attributes={"num_attention_heads": 0, "all_head_size": 0,
                                            "attention_head_size": attention.attention_head_size})


class ModernBertFamily(Family):
    name = "modernbert"
    model_types = ("modernbert",)
    layers_path = "layers"
    attention = "attn"
    output_projection = "attn.Wo"
    mlp_inputs = ("mlp.Wi",)
    mlp_output = "mlp.Wo"
    mlp_gate = "mlp"
    no_heads_after = ("Wo", "out_drop")

    def unit_linears(self, config) -> list[UnitLinear]:
        d, bias = self.head_dim(config), bool(config.attention_bias)
        return [UnitLinear("attn.Wqkv", 0, d, segments=3, bias=bias), UnitLinear(self.output_projection, 1, d)]

    def mlp_shapes(self, config) -> list[tuple[str, int, int, bool]]:
        hidden, inner, bias = self.hidden_size(config), self.intermediate_size(config), self.mlp_bias(config)
        return [("mlp.Wi", 2 * inner, hidden, bias), ("mlp.Wo", hidden, inner, bias)]  # Wi: input and gate halves

    def mlp_bias(self, config) -> bool:
        return bool(config.mlp_bias)

    def roles(self, config) -> dict[str, tuple[str, ...]]:
        return {QUERY: ("attn.Wqkv",), KEY: ("attn.Wqkv",), VALUE: ("attn.Wqkv",), ATTENTION_OUTPUT: ("attn.Wo",),
                MLP_INPUT: ("mlp.Wi",), MLP_OUTPUT: ("mlp.Wo",)}


class DecoderFamily(Family):
    """Llama-style decoders for sequence classification: RMSNorm, rotary positions, grouped-query
    attention (the unit is a key/value group), SwiGLU MLP."""

    name = "decoder"
    model_types = ("llama", "mistral", "qwen2")
    layers_path = "layers"
    attention = "self_attn"
    output_projection = "self_attn.o_proj"
    mlp_inputs = ("mlp.gate_proj", "mlp.up_proj")
    mlp_output = "mlp.down_proj"
    mlp_gate = "mlp"
    no_heads_after = ("o_proj",)
    decoder = True

    def num_units(self, config) -> int:
        return int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)

    def head_dim(self, config) -> int:
        return int(getattr(config, "head_dim", None) or super().head_dim(config))

    def attention_bias(self, config) -> bool:
        if getattr(config, "model_type", None) == "qwen2":
            return True  # Qwen2: q/k/v biases, none on o_proj
        return bool(getattr(config, "attention_bias", False))

    def mlp_bias(self, config) -> bool:
        return bool(getattr(config, "mlp_bias", False))

    def unit_linears(self, config) -> list[UnitLinear]:
        d, g, bias = self.head_dim(config), self.heads_per_unit(config), self.attention_bias(config)
        return [UnitLinear("self_attn.q_proj", 0, g * d, bias=bias), UnitLinear("self_attn.k_proj", 0, d, bias=bias),
                UnitLinear("self_attn.v_proj", 0, d, bias=bias), UnitLinear(self.output_projection, 1, g * d)]

    def roles(self, config) -> dict[str, tuple[str, ...]]:
        return {QUERY: ("self_attn.q_proj",), KEY: ("self_attn.k_proj",), VALUE: ("self_attn.v_proj",),
                ATTENTION_OUTPUT: ("self_attn.o_proj",), MLP_INPUT: self.mlp_inputs, MLP_OUTPUT: (self.mlp_output,)}

    def no_heads(self, attention: nn.Module, config) -> nn.Module:
        return NoHeadsAttention({name: getattr(attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj")},
                                self.no_heads_after,
                                {"head_dim": attention.head_dim, "num_key_value_groups": attention.num_key_value_groups,
                                 "layer_idx": getattr(attention, "layer_idx", None)})


FAMILY_LIST: tuple[Family, ...] = (BertFamily(), DistilBertFamily(), DebertaV2Family(), ModernBertFamily(),
                                   DecoderFamily())
FAMILIES: dict[str, Family] = {model_type: family for family in FAMILY_LIST for model_type in family.model_types}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(FAMILIES)
SUPPORTED_DESCRIPTION = (
    "BERT-layout encoders (bert, roberta, xlm-roberta, electra), distilbert, deberta-v2 (DeBERTa v2 and v3), "
    "modernbert, and the decoders llama, mistral, qwen2 (for sequence classification)"
)


def family_of(model_or_config: Any) -> Family:
    """The adapter for a model (or its config), from `config.model_type`."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ArchitectureError(
            f"{type(model_or_config).__name__} is a {model_type!r} model; bert-lottery can mask and prune "
            f"{SUPPORTED_DESCRIPTION}. Supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}.")
    return FAMILIES[model_type]


def layers_of(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a supported model (with or without a task head), checked."""
    family = family_of(model)
    layers = family.layers(model)
    for index, layer in enumerate(layers):
        family.check_layer(layer, model.config, index)
    return layers


def current_structure(model: nn.Module) -> dict[str, Any]:
    """The model's recorded structure; for an unpruned model, everything present."""
    recorded = getattr(model.config, STRUCTURE_KEY, None)
    if recorded is not None:
        structure = {"heads": [[int(unit) for unit in units] for units in recorded["heads"]],
                     "mlps": [int(mlp) for mlp in recorded["mlps"]]}
        if recorded.get("empty_layer_bias", "keep") != "keep":
            structure["empty_layer_bias"] = recorded["empty_layer_bias"]
        return structure
    family = family_of(model)
    num_layers, num_units = len(family.layers(model)), family.num_units(model.config)
    return {"heads": [list(range(num_units)) for _ in range(num_layers)], "mlps": [1] * num_layers}


def prune_to(model: nn.Module, heads: Sequence[Sequence[int]], mlps: Sequence[int],
             empty_layer_bias: str = "keep") -> dict[str, Any]:
    """Prune `model` in place so that layer l keeps at most the units `heads[l]` (original indices)
    and its MLP only if `mlps[l]`; what is already removed stays removed. `empty_layer_bias="drop"`
    also removes the attention output projection's bias of every layer left with no unit (the
    authors' pruning; `EMPTY_LAYER_BIASES`). Records the new structure on the config
    (`pruned_structure`) and returns it."""
    if empty_layer_bias not in EMPTY_LAYER_BIASES:
        raise ValueError(f"empty_layer_bias must be one of {EMPTY_LAYER_BIASES}, got {empty_layer_bias!r}")
    family = family_of(model)
    config = model.config
    layers = family.layers(model)
    if len(heads) != len(layers) or len(mlps) != len(layers):
        raise ArchitectureError(f"a structure of {len(heads)} / {len(mlps)} layers for a model of {len(layers)} layers")
    structure = current_structure(model)
    for index, layer in enumerate(layers):
        present = structure["heads"][index]
        wanted = {int(unit) for unit in heads[index]}
        kept = [unit for unit in present if unit in wanted]
        if kept != present:
            family.prune_units(layer, config, present, kept)
            structure["heads"][index] = kept
        if structure["mlps"][index] == 1 and not int(mlps[index]):
            family.prune_mlp(layer, config)
            structure["mlps"][index] = 0
        if empty_layer_bias == "drop" and not kept:
            output = _get(layer, family.output_projection)
            if output.bias is not None:
                output.bias = None  # the projection of an empty context is then exact zeros
    if empty_layer_bias == "drop":
        structure["empty_layer_bias"] = "drop"
    setattr(config, STRUCTURE_KEY, structure)
    return structure


def apply_recorded_structure(model: nn.Module) -> nn.Module:
    """Shrink a freshly built FULL model to the structure its config records (loading a pruned
    checkpoint: build from the config, call this, then load the weights strictly)."""
    structure = getattr(model.config, STRUCTURE_KEY, None)
    if structure is None:
        return model
    setattr(model.config, STRUCTURE_KEY, None)  # the freshly built model is still whole
    prune_to(model, structure["heads"], structure["mlps"], structure.get("empty_layer_bias", "keep"))
    return model
