"""Physically removing masked attention units and MLP blocks, and saving/loading such smaller models.

transformers 5 has no `prune_heads`, so units are removed by slicing the linears that hold them;
where they are depends on the model's family and is the family adapter's business
(`lottery.architectures`: BERT's q/k/v output rows and attention-output input columns, a
decoder's q_proj rows per key/value group, ModernBERT's fused Wqkv, ...). The result computes
exactly what the masked full model computes:

- a masked unit's context is zero in the masked model, so its attention-output columns add
  nothing: dropping them (and its q/k/v rows) changes nothing; the attention-output bias stays;
- a layer with no units left gets a `NoHeadsAttention` (BERT: `NoHeadsSelfAttention`; no
  family's attention can reshape an empty projection), so the attention output projection (0
  input columns) yields only its bias;
- a masked MLP block contributes nothing (its gate multiplies its output), so its input linears
  keep 0 output features and its output linear 0 input features and no bias: its output is
  exactly zero, leaving only the residual (and LayerNorm). A gate module that is a dropout
  (BERT's `output.dropout`) becomes an `nn.Identity` (dropout of zeros is zeros; drawing the
  dropout mask is a real cost on a CPU).

Linears are sliced in place (the module objects stay), so mask hooks attached before pruning
keep working. Masks always refer to the ORIGINAL unit indices. The structure is recorded on the
config as `config.pruned_structure = {"heads": [[kept original unit indices] per layer], "mlps":
[0/1 per layer]}`; pruning an already pruned model removes only what is still present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_file
from torch import nn

from lottery.architectures import (
    STRUCTURE_KEY,
    NoHeadsAttention,
    NoHeadsSelfAttention,
    apply_recorded_structure,
    current_structure,
    prune_to,
)
from lottery.export import make_portable
from lottery.io import atomic_directory
from lottery.masks import StructuredMasks, check_shape
from lottery.models import encoder_layers, model_shape

__all__ = ["STRUCTURE_KEY", "NoHeadsAttention", "NoHeadsSelfAttention", "load_pruned", "prune_structure",
           "pruned_structure", "save_pruned", "structure_masks"]


def pruned_structure(model: nn.Module) -> dict[str, list]:
    """The model's recorded structure; for an unpruned model, everything present."""
    encoder_layers(model)  # a clear error for an unsupported model
    return current_structure(model)


def prune_structure(model: nn.Module, masks: StructuredMasks, empty_layer_bias: str = "keep") -> nn.Module:
    """Remove, in place, the attention units and MLPs whose gate is 0; returns the model.

    Gates of units/MLPs already removed are ignored (they cannot come back). Mask hooks attached
    before pruning keep working. `empty_layer_bias="drop"`: a layer left with no unit loses its
    attention output bias too, as the authors' pruning (`lottery.architectures.EMPTY_LAYER_BIASES`).
    """
    check_shape(masks.shape, model_shape(model), f"StructuredMasks used to prune {type(model).__name__}")
    head_gates = masks.head.detach().cpu().tolist()
    mlp_gates = masks.mlp.detach().cpu().tolist()
    kept = [[unit for unit, gate in enumerate(row) if gate == 1] for row in head_gates]
    prune_to(model, kept, [int(gate == 1) for gate in mlp_gates], empty_layer_bias)
    return model


def structure_masks(structure: dict[str, list], shape: tuple[int, int]) -> StructuredMasks:
    """The 0/1 masks (original indices) that a recorded structure corresponds to."""
    num_layers, num_heads = shape
    head = torch.zeros(num_layers, num_heads)
    for layer, heads in enumerate(structure["heads"]):
        head[layer, heads] = 1
    return StructuredMasks(head, structure["mlps"], source="a pruned_structure record")


def save_pruned(model: nn.Module, directory: str | Path, tokenizer: Any = None) -> Path:
    """`save_pretrained` a (pruned) model, with its structure recorded and the modeling code that
    lets plain `from_pretrained(..., trust_remote_code=True)` load it (`lottery.export`),
    replacing `directory` atomically."""
    if getattr(model.config, STRUCTURE_KEY, None) is None:
        setattr(model.config, STRUCTURE_KEY, pruned_structure(model))
    with atomic_directory(directory) as staging:
        model.save_pretrained(staging)
        make_portable(staging)
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
    encoder_layers(model)  # a clear error for an unsupported model
    apply_recorded_structure(model)
    state = _state_dict_from(directory)
    dtypes = {tensor.dtype for tensor in state.values() if tensor.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtype=dtypes.pop())
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_ticket(directory: str | Path) -> nn.Module:
    """A ticket's model folder, however it was saved: physically pruned (`load_pruned`) or with the
    full architecture's shapes (a magnitude ticket: `from_pretrained`). In eval mode."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} holds no config.json: give a ticket's model folder "
                                "(.../retrained/<ticket>/model)")
    config = json.loads((directory / "config.json").read_text())
    if config.get(STRUCTURE_KEY) is not None:
        return load_pruned(directory)
    return transformers.AutoModelForSequenceClassification.from_pretrained(str(directory), dtype=torch.float32).eval()


def unpruned_architecture(directory: str | Path, seed: int = 0) -> nn.Module:
    """The architecture a ticket was cut from, built from its config.json with random weights (what
    its base model computes, as fast: latency does not depend on the weights' values). In eval mode."""
    config = transformers.AutoConfig.from_pretrained(str(directory))
    setattr(config, STRUCTURE_KEY, None)
    architectures = getattr(config, "lottery_base_architecture", None) or (getattr(config, "architectures", None) or [""])[0]
    model_class = getattr(transformers, architectures, None) or transformers.AutoModelForSequenceClassification.from_config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.eval()
