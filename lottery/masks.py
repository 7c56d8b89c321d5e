"""Structured gates on attention heads and MLP blocks, applied to a model with forward hooks.

transformers 5 dropped BERT's `head_mask` (it is accepted and silently ignored), so the gates of
the paper (xi[l, h] on each head's attention output, nu[l] on each FFN block's output) are applied
by hooks instead:

- on `layer.attention.self`: its context output [B, T, heads * head_dim] is viewed as
  [B, T, heads, head_dim] and multiplied by the layer's head gates. This works under SDPA, eager
  and any other attention backend, because it acts on the module's output, not inside it;
- on `layer.output.dropout`: the FFN block's output after dense + dropout, before the residual
  and LayerNorm, is multiplied by the layer's MLP gate.

Masks always refer to the ORIGINAL head indices, also on a physically pruned model (see
`lottery.pruning`), whose attention modules record which original heads they still hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lottery.errors import CorruptFileError, LotteryError
from lottery.io import content_hash, read_json, write_json
from lottery.models import encoder_layers, model_shape

if TYPE_CHECKING:
    from typing_extensions import Self

# Name of the non-persistent buffer (original indices of the heads a pruned layer still holds)
# that `lottery.pruning` puts on an attention module; the head hook selects those gates.
KEPT_HEADS_BUFFER = "lottery_kept_heads"

HEAD_MASK_MESSAGE = (
    "transformers 5 ignores head_mask (it is silently dropped and changes nothing); "
    "use StructuredMasks to gate heads and MLPs"
)


class MaskShapeError(LotteryError, ValueError):
    """A mask does not fit the model or file it is used with (wrong shape, missing parameter)."""


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
        raise ValueError(f"{name} mask values must be 0 or 1, found {bad}; from {source}")
    return tensor


class StructuredMasks:
    """0/1 gates: `head` [num_layers, num_heads] and `mlp` [num_layers], float tensors.

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
            self._mlp_all_ones = (self.mlp.detach() == 1).tolist()
            self._flags_key = key
        return self._head_all_ones, self._mlp_all_ones

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
        except (TypeError, AttributeError) as error:
            raise CorruptFileError(f"{path} is not a StructuredMasks file ({error}); delete it to redo it") from None
        if expected_shape is not None:
            check_shape(masks.shape, expected_shape, f"file {path}")
        return masks

    # ----- applying to a model -----
    def attach(self, model: nn.Module) -> MaskHandle:
        return attach_masks(model, self)


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
    """Forward hook on `attention.self`: multiplies each head's slice of the context by its gate."""

    def __init__(self, masks: StructuredMasks, layer: int) -> None:
        self.masks = masks
        self.layer = layer

    def __call__(self, module: nn.Module, args: Any, output: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        masks, layer = self.masks, self.layer
        gates = masks.head
        if not gates.requires_grad and masks.all_ones_flags()[0][layer]:
            return None
        context = output[0]
        head_dim = module.attention_head_size
        present = context.shape[-1] // head_dim
        gate = gates[layer]
        kept = getattr(module, KEPT_HEADS_BUFFER, None)
        if kept is not None:
            gate = gate.index_select(0, kept.to(gate.device))
        gate = gate.to(device=context.device, dtype=context.dtype)
        heads = context.reshape(*context.shape[:-1], present, head_dim)
        gated = (heads * gate.unsqueeze(-1)).reshape(context.shape)
        return (gated, *output[1:])


class _MlpGate:
    """Forward hook on `output.dropout`: scales the FFN block's output before residual + LayerNorm."""

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


def attach_masks(model: nn.Module, masks: StructuredMasks) -> MaskHandle:
    """Gate `model`'s heads and MLPs with `masks` until the returned handle's `remove()`."""
    check_shape(masks.shape, model_shape(model), f"StructuredMasks attached to {type(model).__name__}")
    if attached_masks(model) is not None:
        raise ValueError("this model already has StructuredMasks attached; remove that handle first")
    hooks = [model.register_forward_pre_hook(_reject_head_mask, with_kwargs=True)]
    for index, layer in enumerate(encoder_layers(model)):
        hooks.append(layer.attention.self.register_forward_hook(_HeadGate(masks, index)))
        hooks.append(layer.output.dropout.register_forward_hook(_MlpGate(masks, index)))
    model._lottery_masks = masks
    return MaskHandle(model, masks, hooks)
