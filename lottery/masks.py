"""Structured gates on attention units and MLP blocks, applied to a model with forward hooks.

transformers 5 dropped `head_mask` (it is accepted and silently ignored), so the gates of the
paper (xi[l, u] on each attention unit's output, nu[l] on each MLP block's output) are applied by
hooks, placed by the model family's adapter (`lottery.architectures`):

- a forward PRE-hook on the layer's attention output projection (BERT: `attention.output.dense`,
  a decoder's `self_attn.o_proj`): its input, the units' contexts concatenated [B, T, units *
  width], is viewed as [B, T, units, width] and multiplied by the layer's unit gates. This works
  under SDPA, eager and any other attention backend, because it acts outside the attention
  kernel; for BERT it is the very tensor `attention.self` returns, so the result (and its
  gradient) is what a hook on `attention.self`'s output gives, bit for bit;
- a forward hook on the module whose output is the MLP block's contribution before the residual
  add (BERT: `output.dropout`, after dense + dropout, before the residual and LayerNorm; a
  decoder's `mlp`), multiplied by the layer's MLP gate.

A unit is an attention head, or a key/value group (a KV head and its query heads) for
grouped-query attention. Masks always refer to the ORIGINAL unit indices, also on a physically
pruned model (see `lottery.pruning`), whose output projections record which original units they
still hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lottery.architectures import EMPTY_LAYER_BIASES, KEPT_UNITS_BUFFER
from lottery.errors import CorruptFileError, LotteryError
from lottery.io import content_hash, read_json, write_json
from lottery.models import encoder_layers, model_family, model_shape

if TYPE_CHECKING:
    from typing_extensions import Self


HEAD_MASK_MESSAGE = (
    "transformers 5 ignores head_mask (it is silently dropped and changes nothing); "
    "use StructuredMasks to gate heads and MLPs"
)


class MaskShapeError(LotteryError, ValueError):
    """A mask does not fit the model or file it is used with (wrong shape, missing parameter)."""


class MaskValueError(LotteryError, ValueError):
    """A mask holds values other than 0 (remove) and 1 (keep)."""


def check_shape(actual: tuple[int, int], expected: tuple[int, int], source: str) -> None:
    if tuple(actual) != tuple(expected):
        raise MaskShapeError(
            f"mask shape (layers, heads) = {tuple(actual)} does not match {tuple(expected)} expected; "
            f"mask from {source}"
        )


def _as_gate_tensor(values: Any, dims: int, name: str, source: str) -> torch.Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32).detach().clone()
    if tensor.dim() != dims:
        raise MaskShapeError(f"{name} mask must have {dims} dimension(s), got shape {tuple(tensor.shape)}; from {source}")
    if not bool(((tensor == 0) | (tensor == 1)).all()):
        bad = sorted({float(v) for v in tensor[(tensor != 0) & (tensor != 1)].flatten().tolist()})[:5]
        raise MaskValueError(f"{name} mask values must be 0 or 1, found {bad}; from {source}")
    return tensor


class StructuredMasks:
    """0/1 gates: `head` [num_layers, num_units] and `mlp` [num_layers], float tensors.

    A unit is an attention head, or a key/value group under grouped-query attention
    (`lottery.architectures`); the names (`head`, `num_heads`) keep the paper's.

    Attached hooks read `head` and `mlp` live, so `set(...)`, `head.copy_(...)` or `to(device)`
    take effect at the next forward pass without re-attaching.
    """

    def __init__(self, head: Any, mlp: Any, source: str = "arguments") -> None:
        self.head = _as_gate_tensor(head, 2, "head", source)
        self.mlp = _as_gate_tensor(mlp, 1, "mlp", source)
        if self.mlp.shape[0] != self.head.shape[0]:
            raise MaskShapeError(
                f"head mask has {self.head.shape[0]} layers but mlp mask has {self.mlp.shape[0]}; from {source}"
            )
        self._flags_key: tuple[Any, ...] = ()
        self._head_all_ones: list[bool] = []
        self._mlp_all_ones: list[bool] = []

    # ----- constructors -----
    @classmethod
    def ones(cls, num_layers: int, num_heads: int) -> StructuredMasks:
        return cls(torch.ones(num_layers, num_heads), torch.ones(num_layers))

    @classmethod
    def for_model(cls, model: nn.Module) -> StructuredMasks:
        return cls.ones(*model_shape(model))

    @classmethod
    def from_lists(cls, head_mask: Sequence[Sequence[int]], mlp_mask: Sequence[int]) -> StructuredMasks:
        return cls(head_mask, mlp_mask, source="lists")

    def clone(self) -> StructuredMasks:
        return StructuredMasks(self.head.detach().cpu(), self.mlp.detach().cpu())

    # ----- queries -----
    @property
    def shape(self) -> tuple[int, int]:
        return int(self.head.shape[0]), int(self.head.shape[1])

    @property
    def num_heads_kept(self) -> int:
        return int(self.head.detach().sum().item())

    @property
    def num_mlps_kept(self) -> int:
        return int(self.mlp.detach().sum().item())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StructuredMasks):
            return NotImplemented
        return (
            self.shape == other.shape
            and torch.equal(self.head.detach().cpu(), other.head.detach().cpu())
            and torch.equal(self.mlp.detach().cpu(), other.mlp.detach().cpu())
        )

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        layers, heads = self.shape
        return (
            f"StructuredMasks({layers}x{heads}: {self.num_heads_kept}/{layers * heads} heads, "
            f"{self.num_mlps_kept}/{layers} MLPs kept)"
        )

    # ----- in-place changes -----
    def set(self, head: Any, mlp: Any) -> None:
        """Copy new 0/1 values into the gates in place (same shape), keeping their device."""
        new = StructuredMasks(head, mlp)
        check_shape(new.shape, self.shape, "set()")
        with torch.no_grad():
            self.head.copy_(new.head)
            self.mlp.copy_(new.mlp)

    def to(self, device: torch.device | str) -> StructuredMasks:
        """Move the gates (in place on this object, returning it) so hooks need no per-call copy."""
        self.head = self.head.to(device)
        self.mlp = self.mlp.to(device)
        return self

    @contextmanager
    def differentiable(self, device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Temporarily swap the gates for leaf copies that require grad; yields (head, mlp) leaves.

        The user's own tensors are put back afterwards, untouched (their requires_grad included).
        """
        head, mlp = self.head, self.mlp
        device = head.device if device is None else device
        self.head = head.detach().to(device).clone().requires_grad_(True)
        self.mlp = mlp.detach().to(device).clone().requires_grad_(True)
        try:
            yield self.head, self.mlp
        finally:
            self.head, self.mlp = head, mlp

    # ----- what the hooks read -----
    def all_ones_flags(self) -> tuple[list[bool], list[bool]]:
        """Per layer: are all head gates 1, is the MLP gate 1.

        Recomputed only when a gate tensor is replaced or changed in place (tracked with the
        tensor's in-place version counter), so the hooks do not force a device sync per call.
        """
        key = (self.head, self.head._version, self.mlp, self.mlp._version)
        old = self._flags_key
        if not (old and old[0] is key[0] and old[1] == key[1] and old[2] is key[2] and old[3] == key[3]):
            self._head_all_ones = (self.head.detach() == 1).all(dim=1).tolist()
            self._head_all_zeros = (self.head.detach() == 0).all(dim=1).tolist()
            self._mlp_all_ones = (self.mlp.detach() == 1).tolist()
            self._flags_key = key
        return self._head_all_ones, self._mlp_all_ones

    def empty_layers(self) -> list[bool]:
        """Per layer: are all head gates 0 (cached with `all_ones_flags`: no device sync per call)."""
        self.all_ones_flags()
        return self._head_all_zeros

    # ----- serialisation -----
    def to_dict(self) -> dict[str, Any]:
        layers, heads = self.shape
        return {
            "num_layers": layers,
            "num_heads": heads,
            "head_mask": [[int(v) for v in row] for row in self.head.detach().cpu().tolist()],
            "mlp_mask": [int(v) for v in self.mlp.detach().cpu().tolist()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dict") -> StructuredMasks:
        missing = [key for key in ("head_mask", "mlp_mask") if key not in data]
        if missing:
            raise ValueError(f"mask from {source} lacks {missing}")
        masks = cls(data["head_mask"], data["mlp_mask"], source=source)
        declared = (data.get("num_layers", masks.shape[0]), data.get("num_heads", masks.shape[1]))
        check_shape(masks.shape, declared, f"{source} (its declared num_layers/num_heads)")
        return masks

    def content_sha256(self) -> str:
        """sha256 of the mask's content: a ticket's scores belong to exactly this mask."""
        return content_hash(self.to_dict())

    def save_json(self, path: str | Path) -> Path:
        """Write atomically (a temporary file in the same folder, then a rename)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | Path, expected_shape: tuple[int, int] | None = None) -> StructuredMasks:
        data = read_json(path)
        try:
            masks = cls.from_dict(data, source=f"file {path}")
        except MaskValueError as error:
            raise MaskValueError(f"{error} (1 keeps a unit, 0 removes it): fix the file, or delete it if bert-lottery "
                                 "wrote it (it is computed again)") from None
        except (TypeError, AttributeError) as error:
            raise CorruptFileError(f"{path} is not a StructuredMasks file ({error}); delete it to redo it") from None
        if expected_shape is not None:
            check_shape(masks.shape, expected_shape, f"file {path}")
        return masks

    # ----- applying to a model -----
    def attach(self, model: nn.Module, empty_layer_bias: str = "keep") -> MaskHandle:
        return attach_masks(model, self, empty_layer_bias)


class MaskHandle:
    """Removes the hooks of one `attach_masks` call; also a context manager.

    Everything here (hooks, handle, the model's record of its masks) pickles, so a masked model
    can be sent to DDP-spawned processes.
    """

    def __init__(self, model: nn.Module, masks: StructuredMasks, hooks: list[Any]) -> None:
        self._model = model
        self.masks = masks
        self._hooks = hooks

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if attached_masks(self._model) is self.masks:
            del self._model._lottery_masks

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def attached_masks(model: nn.Module) -> StructuredMasks | None:
    """The masks attached to `model` (recorded on the model itself: attaching twice would gate twice)."""
    return getattr(model, "_lottery_masks", None)


class _HeadGate:
    """Forward pre-hook on the attention output projection: multiplies each unit's slice of its
    input (the concatenated unit contexts) by the unit's gate."""

    def __init__(self, masks: StructuredMasks, layer: int) -> None:
        self.masks = masks
        self.layer = layer

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        masks, layer = self.masks, self.layer
        gates = masks.head
        if not gates.requires_grad and masks.all_ones_flags()[0][layer]:
            return None
        context = args[0]
        gate = gates[layer]
        kept = getattr(module, KEPT_UNITS_BUFFER, None)  # set by pruning: the original units still held
        if kept is not None:
            gate = gate.index_select(0, kept.to(gate.device))
        present = gate.shape[0]
        if present == 0:  # a layer with no units left: its (empty) context has nothing to gate
            return None
        gate = gate.to(device=context.device, dtype=context.dtype)
        units = context.reshape(*context.shape[:-1], present, context.shape[-1] // present)
        gated = (units * gate.unsqueeze(-1)).reshape(context.shape)
        return (gated, *args[1:])


class _EmptyLayerBias:
    """Forward hook on the attention output projection (`empty_layer_bias="drop"`): a layer whose
    units all have gate 0 outputs zeros instead of the projection's bias, as the authors' physically
    pruned model (src/model_bert.py:285-296: no attention output projection left)."""

    def __init__(self, masks: StructuredMasks, layer: int) -> None:
        self.masks = masks
        self.layer = layer

    def __call__(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        kept = getattr(module, KEPT_UNITS_BUFFER, None)
        if kept is None:
            empty = self.masks.empty_layers()[self.layer]
        else:  # masks on a partly pruned model: only the units still held count
            gate = self.masks.head[self.layer].detach()
            empty = not bool((gate.index_select(0, kept.to(gate.device)) != 0).any())
        return torch.zeros_like(output) if empty else None


class _MlpGate:
    """Forward hook on the MLP gate module (BERT: `output.dropout`): scales the MLP block's output
    before the residual add (and LayerNorm)."""

    def __init__(self, masks: StructuredMasks, layer: int) -> None:
        self.masks = masks
        self.layer = layer

    def __call__(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        gates = self.masks.mlp
        if not gates.requires_grad and self.masks.all_ones_flags()[1][self.layer]:
            return None
        return output * gates[self.layer].to(device=output.device, dtype=output.dtype)


def _reject_head_mask(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
    if kwargs.get("head_mask") is not None:
        raise ValueError(HEAD_MASK_MESSAGE)


def attach_masks(model: nn.Module, masks: StructuredMasks, empty_layer_bias: str = "keep") -> MaskHandle:
    """Gate `model`'s attention units and MLPs with `masks` until the returned handle's `remove()`.
    `empty_layer_bias="drop"`: a layer with every unit gated off loses its attention output bias too
    (what `prune_structure(..., empty_layer_bias="drop")` computes)."""
    if empty_layer_bias not in EMPTY_LAYER_BIASES:
        raise ValueError(f"empty_layer_bias must be one of {EMPTY_LAYER_BIASES}, got {empty_layer_bias!r}")
    check_shape(masks.shape, model_shape(model), f"StructuredMasks attached to {type(model).__name__}")
    if attached_masks(model) is not None:
        raise ValueError("this model already has StructuredMasks attached; remove that handle first")
    family = model_family(model)
    hooks = [model.register_forward_pre_hook(_reject_head_mask, with_kwargs=True)]
    for index, layer in enumerate(encoder_layers(model)):
        output = layer.get_submodule(family.output_projection)
        hooks.append(output.register_forward_pre_hook(_HeadGate(masks, index)))
        if empty_layer_bias == "drop":
            hooks.append(output.register_forward_hook(_EmptyLayerBias(masks, index)))
        hooks.append(layer.get_submodule(family.mlp_gate).register_forward_hook(_MlpGate(masks, index)))
    model._lottery_masks = masks
    return MaskHandle(model, masks, hooks)
