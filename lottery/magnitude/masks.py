"""Weight masks (`WeightMasks`: a bool keep-mask per parameter, on the CPU) and their file format
(one .npz: per tensor its packed bits and shape; byte-identical for equal masks).

Masks are immutable by convention: every operation returns a new `WeightMasks`, which is what lets
`apply_` cache device copies of them.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lottery.errors import CorruptFileError
from lottery.io import atomic_write
from lottery.masks import MaskShapeError, MaskValueError

MASK_FILE_FORMAT = "bert-lottery/weight-masks/v1"


class WeightMasks(Mapping[str, Tensor]):
    """Boolean keep-masks (True = kept) for named parameters, stored on the CPU.

    Treat it as immutable: `apply_` caches the masks converted to each parameter's device and
    dtype, so mutating a mask tensor in place would not reach the model.
    """

    def __init__(self, masks: Mapping[str, Tensor]):
        self._masks: dict[str, Tensor] = {}
        for name, mask in masks.items():
            if mask.dtype != torch.bool:
                raise TypeError(f"mask of {name!r} must be a bool tensor, got {mask.dtype}")
            self._masks[name] = mask.detach().to("cpu").contiguous()
        self._device_masks: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}
        self._num_kept: int | None = None

    @classmethod
    def ones_like(cls, params: Mapping[str, Tensor]) -> WeightMasks:
        """Keep everything: the mask of the full model."""
        return cls({name: torch.ones(p.shape, dtype=torch.bool) for name, p in params.items()})

    def __getitem__(self, name: str) -> Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WeightMasks):
            return NotImplemented
        return list(self) == list(other) and all(torch.equal(self[n], other[n]) for n in self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WeightMasks({len(self)} tensors, {self.num_kept()}/{self.num_total()} kept)"

    def num_kept(self) -> int:
        if self._num_kept is None:  # count_nonzero: a bool .sum() is 40x slower on 85M entries
            self._num_kept = sum(int(torch.count_nonzero(m)) for m in self._masks.values())
        return self._num_kept

    def num_total(self) -> int:
        return int(sum(m.numel() for m in self._masks.values()))

    def sparsity(self) -> float:
        """Fraction of all masked weights that are pruned (global, not averaged per tensor)."""
        total = self.num_total()
        return 1.0 - self.num_kept() / total if total else 0.0

    def check_compatible(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """Raise `MaskShapeError` unless every mask names a parameter of `model` of the same shape.

        Returns the model's parameters by name, for callers that go on to use them.
        """
        params = dict(model.named_parameters())
        for name, mask in self._masks.items():
            if name not in params:
                raise MaskShapeError(
                    f"the mask has parameter {name!r} of shape {tuple(mask.shape)} but the model has no such parameter"
                )
            if params[name].shape != mask.shape:
                raise MaskShapeError(
                    f"parameter {name!r}: mask has shape {tuple(mask.shape)} "
                    f"but the model's has shape {tuple(params[name].shape)}"
                )
        return params

    def on(self, name: str, device: torch.device, dtype: torch.dtype = torch.bool) -> Tensor:
        """The mask of `name` on `device` as `dtype`, cached."""
        key = (name, torch.device(device), dtype)
        if key not in self._device_masks:
            self._device_masks[key] = self._masks[name].to(device=device, dtype=dtype)
        return self._device_masks[key]

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> None:
        """Zero the pruned weights of `model` in place (call after every optimizer step).

        One fused `_foreach_mul_` per (device, dtype) with cached masks of the parameters' dtype:
        no per-element Python work and no host-device copies after the first call.
        """
        params = self.check_compatible(model)
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
        for name in self._masks:
            p = params[name]
            targets, factors = groups.setdefault((p.device, p.dtype), ([], []))
            targets.append(p)
            factors.append(self.on(name, p.device, p.dtype))
        for targets, factors in groups.values():
            torch._foreach_mul_(targets, factors)

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "format": np.array(MASK_FILE_FORMAT),
            "names": np.array(list(self._masks), dtype=np.str_),
        }
        for i, mask in enumerate(self._masks.values()):
            arrays[f"bits_{i}"] = np.packbits(mask.numpy().reshape(-1))
            arrays[f"shape_{i}"] = np.array(mask.shape, dtype=np.int64)
        return arrays

    def content_sha256(self) -> str:
        """sha256 of the names, shapes and bits: a ticket's scores belong to exactly this mask."""
        digest = hashlib.sha256()
        for name, array in self._arrays().items():
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        """Write to one .npz: per tensor its bits (`np.packbits`, C order) and shape; atomically and
        byte-for-byte the same for the same masks (no timestamps in the archive)."""
        atomic_write(Path(path), lambda handle: _write_npz(handle, self._arrays()))

    @classmethod
    def load(cls, path: str | Path) -> WeightMasks:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                if str(data["format"]) != MASK_FILE_FORMAT:
                    raise CorruptFileError(f"{path} is not a bert-lottery weight-mask file (format {data['format']!s})")
                masks = {}
                for i, name in enumerate(data["names"].tolist()):
                    shape = tuple(int(s) for s in data[f"shape_{i}"])
                    packed = data[f"bits_{i}"]
                    if packed.dtype != np.uint8:  # e.g. 0.5 or 2 where bits belong
                        raise MaskValueError(f"{path}: the mask of {name!r} holds {packed.dtype} values such as "
                                             f"{packed.ravel()[:3].tolist()}, not the 0/1 bits bert-lottery writes: "
                                             "delete the file if bert-lottery wrote it (it is computed again)")
                    bits = np.unpackbits(packed, count=int(np.prod(shape, dtype=np.int64)))
                    masks[name] = torch.from_numpy(bits.astype(bool).reshape(shape))
        except MaskValueError:
            raise
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as error:
            raise CorruptFileError(f"{path} is not a readable weight-mask file ({type(error).__name__}: {error}); "
                                   "delete it to redo it") from None
        return cls(masks)


def _write_npz(handle, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed, but with a fixed timestamp on every member, so equal arrays give equal bytes."""
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def load_weight_masks(path: str | Path) -> WeightMasks:
    """Read a mask set written by `WeightMasks.save`."""
    return WeightMasks.load(path)

