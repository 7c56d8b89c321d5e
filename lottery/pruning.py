"""Physically removing masked heads and MLP blocks, and saving/loading such smaller models.

transformers 5 has no `prune_heads` for BERT, so heads are removed by slicing the q/k/v output
rows and the attention-output input columns. The result computes exactly what the masked full
model computes:

- a masked head's context is zero in the masked model, so its attention-output columns add
  nothing: dropping them (and its q/k/v rows) changes nothing; the attention-output bias stays;
- a layer with no heads left gets `NoHeadsSelfAttention` (BERT's own module cannot reshape an
  empty projection), so `attention.output.dense` (0 input columns) yields only its bias;
- a masked MLP block contributes nothing (its gate multiplies after the dense + bias), so
  `intermediate.dense` keeps 0 output features and `output.dense` 0 input features and no bias:
  its output is exactly zero, leaving only the residual and LayerNorm. Its `output.dropout`
  becomes an `nn.Identity` (dropout of zeros is zeros; drawing the dropout mask is a real cost
  on a CPU).

Masks always refer to the ORIGINAL head indices. The structure is recorded on the config as
`config.pruned_structure = {"heads": [[kept original head indices] per layer], "mlps": [0/1 per
layer]}`; pruning an already pruned model removes only what is still present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_file
from torch import nn

from lottery.io import atomic_directory
from lottery.masks import KEPT_HEADS_BUFFER, StructuredMasks, check_shape
from lottery.models import encoder_layers, model_shape

STRUCTURE_KEY = "pruned_structure"


class NoHeadsSelfAttention(nn.Module):
    """Stands in for a self-attention module whose heads were all removed: empty context.

    It keeps q/k/v as empty (0 output features) Linears, never called, so that the model keeps
    the BERT layout that `encoder_layers` checks for.
    """

    def __init__(self, query: nn.Linear, key: nn.Linear, value: nn.Linear, attention_head_size: int) -> None:
        super().__init__()
        self.query, self.key, self.value = query, key, value
        self.attention_head_size = attention_head_size
        self.num_attention_heads = 0
        self.all_head_size = 0
        self.register_buffer(KEPT_HEADS_BUFFER, torch.zeros(0, dtype=torch.long), persistent=False)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def slice_linear(linear: nn.Linear, keep: torch.Tensor, dim: int, bias: bool = True) -> nn.Linear:
    """A new Linear with only the `keep` rows (dim=0, output features) or columns (dim=1).

    Sliced output rows take their bias entries with them; when slicing columns the bias is kept
    whole, or dropped with `bias=False`. No random initialisation is run, and zero-sized results
    are fine (they stand for removed units).
    """
    weight = linear.weight.detach().index_select(dim, keep.to(linear.weight.device)).clone()
    # Built on the meta device at a dummy size, then given its real tensors: nn.Linear's own
    # initialisation would waste time and warns on zero-element weights.
    new = nn.Linear(1, 1, bias=False, device="meta")
    new.out_features, new.in_features = weight.shape
    new.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
    if bias and linear.bias is not None:
        old_bias = linear.bias.detach()
        new_bias = old_bias.index_select(0, keep.to(old_bias.device)) if dim == 0 else old_bias
        new.bias = nn.Parameter(new_bias.clone(), requires_grad=linear.bias.requires_grad)
    return new


def pruned_structure(model: nn.Module) -> dict[str, list]:
    """The model's recorded structure; for an unpruned model, everything present."""
    recorded = getattr(model.config, STRUCTURE_KEY, None)
    if recorded is not None:
        return {"heads": [list(map(int, heads)) for heads in recorded["heads"]], "mlps": list(map(int, recorded["mlps"]))}
    num_layers, num_heads = model_shape(model)
    return {"heads": [list(range(num_heads)) for _ in range(num_layers)], "mlps": [1] * num_layers}


def _prune_heads(layer: nn.Module, present: list[int], kept: list[int]) -> None:
    attention = layer.attention.self
    head_dim = attention.attention_head_size
    device = layer.attention.output.dense.weight.device
    positions = [present.index(head) for head in kept]
    rows = torch.tensor(
        [position * head_dim + offset for position in positions for offset in range(head_dim)],
        dtype=torch.long,
        device=device,
    )
    layer.attention.output.dense = slice_linear(layer.attention.output.dense, rows, dim=1)
    query, key, value = (slice_linear(getattr(attention, name), rows, dim=0) for name in ("query", "key", "value"))
    if not kept:
        layer.attention.self = NoHeadsSelfAttention(query, key, value, head_dim)
        return
    attention.query, attention.key, attention.value = query, key, value
    attention.num_attention_heads = len(kept)
    attention.all_head_size = len(kept) * head_dim
    attention.register_buffer(KEPT_HEADS_BUFFER, torch.tensor(kept, dtype=torch.long, device=device), persistent=False)


def _prune_mlp(layer: nn.Module) -> None:
    nothing = torch.zeros(0, dtype=torch.long)
    layer.intermediate.dense = slice_linear(layer.intermediate.dense, nothing, dim=0)
    layer.output.dense = slice_linear(layer.output.dense, nothing, dim=1, bias=False)
    layer.output.dropout = nn.Identity()


def prune_structure(model: nn.Module, masks: StructuredMasks) -> nn.Module:
    """Remove, in place, the heads and MLPs whose gate is 0; returns the model.

    Gates of heads/MLPs already removed are ignored (they cannot come back). Mask hooks attached
    before pruning keep working on the layers that still have heads.
    """
    check_shape(masks.shape, model_shape(model), f"StructuredMasks used to prune {type(model).__name__}")
    head_gates = masks.head.detach().cpu().tolist()
    mlp_gates = masks.mlp.detach().cpu().tolist()
    structure = pruned_structure(model)
    for index, layer in enumerate(encoder_layers(model)):
        present = structure["heads"][index]
        kept = [head for head in present if head_gates[index][head] == 1]
        if kept != present:
            _prune_heads(layer, present, kept)
            structure["heads"][index] = kept
        if structure["mlps"][index] == 1 and mlp_gates[index] == 0:
            _prune_mlp(layer)
            structure["mlps"][index] = 0
    setattr(model.config, STRUCTURE_KEY, structure)
    return model


def structure_masks(structure: dict[str, list], shape: tuple[int, int]) -> StructuredMasks:
    """The 0/1 masks (original indices) that a recorded structure corresponds to."""
    num_layers, num_heads = shape
    head = torch.zeros(num_layers, num_heads)
    for layer, heads in enumerate(structure["heads"]):
        head[layer, heads] = 1
    return StructuredMasks(head, structure["mlps"], source="a pruned_structure record")


def save_pruned(model: nn.Module, directory: str | Path, tokenizer: Any = None) -> Path:
    """`save_pretrained` a (pruned) model, with its structure recorded, replacing `directory` atomically."""
    if getattr(model.config, STRUCTURE_KEY, None) is None:
        setattr(model.config, STRUCTURE_KEY, pruned_structure(model))
    with atomic_directory(directory) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    return Path(directory)


def _state_dict_from(directory: Path) -> dict[str, torch.Tensor]:
    single = directory / "model.safetensors"
    if single.exists():
        return load_file(single)
    index = directory / "model.safetensors.index.json"
    if not index.exists():
        raise FileNotFoundError(f"{directory} holds neither model.safetensors nor model.safetensors.index.json")
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(directory / shard))
    return state


def load_pruned(directory: str | Path) -> nn.Module:
    """Load a folder written by `save_pruned`.

    Plain `from_pretrained` cannot load it: the config describes the full architecture, the
    weights are smaller. This builds the full architecture from the config (the class named in
    `config.architectures`, else AutoModelForSequenceClassification), removes what the recorded
    structure says was removed, then loads the safetensors weights strictly. Returns it in eval mode.
    """
    directory = Path(directory)
    config = transformers.AutoConfig.from_pretrained(str(directory))
    structure = getattr(config, STRUCTURE_KEY, None)
    if structure is None:
        raise ValueError(
            f"{directory} has no `{STRUCTURE_KEY}` record in its config.json: it is not a pruned model "
            f"saved by save_pruned; load it with from_pretrained"
        )
    architectures = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, architectures[0], None) if architectures else None
    model = model_class(config) if model_class is not None else transformers.AutoModelForSequenceClassification.from_config(config)
    setattr(model.config, STRUCTURE_KEY, None)  # the freshly built model is still whole
    prune_structure(model, structure_masks(structure, model_shape(model)))
    state = _state_dict_from(directory)
    dtypes = {tensor.dtype for tensor in state.values() if tensor.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtype=dtypes.pop())
    model.load_state_dict(state, strict=True)
    return model.eval()
