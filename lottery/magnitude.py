"""Global L1 magnitude pruning of BERT's encoder weights ("m-pruning"), its tickets and reports.

Which weights are eligible is named by the paper's BERT roles (`attention.self.query`, ...,
`output.dense`); each model family maps them to its own linears (`lottery.architectures`: a
decoder's q_proj ... down_proj, ModernBERT's fused Wqkv, ...), so one setting serves every family.

Everything here is a pure function of tensors, except `WeightMasks.save` and the in-place
`WeightMasks.apply_` / `rewind_`, which say so in their names.

Masks are kept on the CPU as bool tensors and are immutable by convention: every operation returns
a new `WeightMasks`, which is what lets `apply_` cache device copies of them.

The paper's search (`MagnitudeSearch`) prunes 10% of the *remaining* weights per step from the
fine-tuned weights, with no retraining in between; iterative magnitude pruning with rewinding
(Chen et al. 2020) prunes 10% of the *original* count per round: `global_magnitude_step(of=...)`.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from lottery.architectures import ATTENTION_ROLES, MLP_OUTPUT, MLP_ROLES, Family, UnitLinear
from lottery.errors import ConfigError, CorruptFileError, NonFiniteError
from lottery.io import atomic_write
from lottery.masks import MaskShapeError, MaskValueError
from lottery.models import encoder_layers, model_family, model_shape
from lottery.pass_rule import check_threshold, passes

# The paper's BERT names, used as roles: every family maps each to its own linears.
ELIGIBLE_SUFFIXES = ATTENTION_ROLES + MLP_ROLES
# The paper (and the authors' code) leaves the FFN output bias out: it is added after the block,
# so pruning it would shift every token's residual stream rather than remove a connection.
UNPRUNED_BIASES = (MLP_OUTPUT,)

MASK_FILE_FORMAT = "bert-lottery/weight-masks/v1"

Base = Literal["remaining", "original"]


# ---------------------------------------------------------------------------------------------
# Which parameters are pruned


def _module_paths(family: Family, config, suffixes: Iterable[str]) -> list[str]:
    """Module paths inside a layer for `suffixes`, in order, each once: a role (`ELIGIBLE_SUFFIXES`)
    stands for the family's linears that play it, anything else is a path inside the layer.

    A fused linear (ModernBERT's Wqkv plays query, key and value) is eligible only as a whole:
    asking for some of its roles but not all is an error."""
    suffixes = list(suffixes)
    roles = family.roles(config)
    players: dict[str, list[str]] = {}
    for role, paths in roles.items():
        for path in paths:
            players.setdefault(path, []).append(role)
    paths: list[str] = []
    for suffix in suffixes:
        for path in roles.get(suffix, (suffix,)):
            missing = [role for role in players.get(path, []) if role not in suffixes]
            if missing:
                raise ConfigError(f"the {family.name} family's `{path}` plays {players[path]} together (a fused "
                                  f"linear): select all of them or none, not only {[r for r in players[path] if r in suffixes]}")
            if path not in paths:
                paths.append(path)
    return paths


def _layer_parameter_names(
    model: nn.Module, suffixes: Iterable[str], include_biases: bool, unpruned_biases: Iterable[str]
) -> list[dict[str, str]]:
    """Per encoder layer: {"<path>.weight" / "<path>.bias": the model's parameter name}, the paths
    being the family's modules for `suffixes` (`_module_paths`)."""
    family = model_family(model)
    name_of = {id(p): n for n, p in model.named_parameters()}
    roles = family.roles(model.config)
    unpruned = {path for suffix in unpruned_biases for path in roles.get(suffix, (suffix,))}
    paths = _module_paths(family, model.config, suffixes)
    per_layer = []
    for layer in encoder_layers(model):
        names = {}
        for path in paths:
            module = layer.get_submodule(path)
            names[f"{path}.weight"] = name_of[id(module.weight)]
            if include_biases and path not in unpruned and getattr(module, "bias", None) is not None:
                names[f"{path}.bias"] = name_of[id(module.bias)]
        per_layer.append(names)
    return per_layer


def eligible_parameters(
    model: nn.Module,
    include_biases: bool = True,
    suffixes: Iterable[str] = ELIGIBLE_SUFFIXES,
    unpruned_biases: Iterable[str] = UNPRUNED_BIASES,
) -> dict[str, nn.Parameter]:
    """The parameters magnitude pruning may remove, by `named_parameters` name, in layer order.

    Default (METHOD.md): in every encoder layer, the weights of Q, K, V, attention-output,
    intermediate and output dense layers and their biases except `output.dense.bias`. Embeddings,
    pooler, classifier and norms are never eligible. `suffixes` are roles (`ELIGIBLE_SUFFIXES`,
    mapped to the model family's linears: e.g. a decoder's intermediate.dense is gate_proj and
    up_proj, its output.dense down_proj; DeBERTa's query and key include the relative-position
    projections pos_query_proj / pos_key_proj when they are not shared) or module paths inside a
    layer; `unpruned_biases` likewise.
    """
    params = dict(model.named_parameters())
    names = _layer_parameter_names(model, tuple(suffixes), include_biases, tuple(unpruned_biases))
    return {name: params[name] for layer in names for name in layer.values()}


def snapshot_cpu(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, Tensor]:
    """Detached CPU clones of the named parameters (default: the eligible ones), e.g. to rewind to."""
    params = dict(model.named_parameters())
    chosen = eligible_parameters(model).keys() if names is None else names
    return {name: params[name].detach().to("cpu", copy=True) for name in chosen}


# ---------------------------------------------------------------------------------------------
# The mask set


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


# ---------------------------------------------------------------------------------------------
# Selection


# Below this size torch.kthvalue on everything is fast enough (~0.1 s).
_EXACT_SELECTION_MAX = 1 << 22


def _kth_value(scores: Tensor, k: int) -> Tensor:
    """The k-th smallest entry (1-based) of the flat `scores`: torch.kthvalue, made fast on large inputs.

    kthvalue over bert-base's 85M weights takes 1.5-2.5 s on 2 cores. Instead, a strided sample
    of ~1M entries brackets the answer (+-8 sigma of its rank), one pass counts the entries below
    the bracket and kthvalue runs on the ~1% inside it. The result is exact; if the bracket
    misses, the full kthvalue is used.
    """
    n = scores.numel()
    if n <= _EXACT_SELECTION_MAX:
        return torch.kthvalue(scores, k).values
    sample = scores[:: max(1, n >> 20)]
    size = sample.numel()
    rank, slack = k * size / n, 4.0 * math.sqrt(size)
    low = torch.kthvalue(sample, max(1, int(rank - slack))).values
    high = torch.kthvalue(sample, min(size, int(rank + slack) + 1)).values
    below = int(torch.count_nonzero(scores < low))
    band = scores[(scores >= low) & (scores <= high)]
    if below < k <= below + band.numel():
        return torch.kthvalue(band, k - below).values
    return torch.kthvalue(scores, k).values


def _smallest(scores: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """Bool mask of exactly `k` entries of the flat `scores` with the smallest values.

    Entries equal to the k-th value are taken in index order, or in a seeded random order when
    a generator is given, so the count is exact and the choice deterministic.
    """
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= scores.numel():
        return torch.ones_like(scores, dtype=torch.bool)
    kth = _kth_value(scores, k)
    chosen = scores <= kth
    surplus = int(torch.count_nonzero(chosen)) - k
    if surplus > 0:  # ties at the k-th value: drop the last ones
        ties = torch.nonzero(scores == kth).squeeze(1)
        if generator is not None:
            ties = ties[torch.randperm(ties.numel(), generator=generator).to(ties.device)]
        chosen[ties[ties.numel() - surplus :]] = False
    return chosen


def _magnitudes(params: Mapping[str, Tensor], masks: WeightMasks, *, pruned_as_inf: bool) -> Tensor:
    """|w| of the masked tensors, flattened into one float32 vector (pruned entries +inf if asked)."""
    device = params[next(iter(masks))].device if len(masks) else torch.device("cpu")
    flat = torch.empty(masks.num_total(), dtype=torch.float32, device=device)
    for name, chunk in zip(masks, flat.split([m.numel() for m in masks.values()])):
        torch.abs(params[name].detach().reshape(-1), out=chunk)
        if pruned_as_inf:
            chunk.masked_fill_(~masks.on(name, device).reshape(-1), math.inf)
    if torch.isnan(flat).any():
        raise ValueError("cannot prune by magnitude: some eligible weights are NaN")
    return flat


def _unflatten(flat: Tensor, like: WeightMasks) -> WeightMasks:
    chunks = flat.cpu().split([m.numel() for m in like.values()])
    return WeightMasks({name: c.view(m.shape) for (name, m), c in zip(like.items(), chunks)})


def _check_same_names(params: Mapping[str, Tensor], masks: WeightMasks) -> None:
    for name, mask in masks.items():
        if name not in params:
            raise MaskShapeError(f"the mask has parameter {name!r} but it is not among the given parameters")
        if params[name].shape != mask.shape:
            raise MaskShapeError(
                f"parameter {name!r}: mask has shape {tuple(mask.shape)} but the parameter has {tuple(params[name].shape)}"
            )


def global_magnitude_step(
    params: Mapping[str, Tensor], masks: WeightMasks, fraction: float, *, of: Base = "remaining"
) -> WeightMasks:
    """Prune the `fraction` of weights with the smallest |w| among those `masks` still keeps.

    Exactly k = round(fraction * base) weights are pruned, base being the number still kept
    (`of="remaining"`, the paper) or all masked weights (`of="original"`, IMP), capped at what is
    left. The ranking is global across all tensors, so a tensor of larger weights keeps more.
    Ties at the threshold are pruned in parameter order, then flat index order.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    if of not in ("remaining", "original"):
        raise ValueError(f"of must be 'remaining' or 'original', got {of!r}")
    _check_same_names(params, masks)
    kept = masks.num_kept()
    k = min(round(fraction * (kept if of == "remaining" else masks.num_total())), kept)
    scores = _magnitudes(params, masks, pruned_as_inf=True)  # already pruned: never chosen again
    pruned_now = _smallest(scores, k)
    del scores
    keep = torch.cat([masks.on(n, pruned_now.device).reshape(-1) for n in masks])
    return _unflatten(keep & ~pruned_now, masks)


# ---------------------------------------------------------------------------------------------
# The paper's one-shot search loop


EXIT_MASKS = ("previous", "last_passing")


class MagnitudeSearch:
    """State machine of the paper's m-pruning search; the caller prunes and evaluates.

    Report the full model's score first (step 0), then after each `global_magnitude_step` by
    `next_fraction` (applied to the *fine-tuned* weights: evaluate on a masked copy so a failed
    step can be undone). A step passes by `lottery.pass_rule.passes`. The search ends at the first
    failing step or after `max_steps` pruning steps. Which mask is the ticket (`good`) is the
    protocol's `exit_mask`:

    - "previous" (the authors' src/find_global_weight_mask.py, `mask_global`): their loop saves
      the mask from before the last evaluated step on exit. After a failure that is the last
      passing mask; when all `max_steps` steps pass it is step max_steps - 1, so at most 9 of
      their 10 steps (38.7% of the eligible weights kept) can reach a ticket;
    - "last_passing": the last step that passed, up to step `max_steps`.

        search = MagnitudeSearch()
        masks = WeightMasks.ones_like(params)
        search.report(evaluate(masks), masks)
        while not search.done:
            masks = global_magnitude_step(params, masks, search.next_fraction, of=search.of)
            search.report(evaluate(masks), masks)
    """

    def __init__(self, fraction: float = 0.1, threshold: float = 0.9, max_steps: int = 10, of: Base = "remaining",
                 exit_mask: str = "previous"):
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"magnitude fraction must lie in (0, 1], got {fraction}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
            raise ConfigError(f"max_steps must be an integer >= 0, got {max_steps!r}")
        if of not in ("remaining", "original"):
            raise ConfigError(f"of must be 'remaining' or 'original', got {of!r}")
        if exit_mask not in EXIT_MASKS:
            raise ConfigError(f"exit_mask must be one of {EXIT_MASKS}, got {exit_mask!r}")
        self.fraction, self.threshold, self.max_steps, self.of = fraction, check_threshold(threshold), max_steps, of
        self.exit_mask = exit_mask
        self.full_score: float | None = None
        self.history: list[dict] = []
        self._masks: list[WeightMasks] = []  # the last two reported masks, for exit_mask="previous"
        self._last_passing: tuple[int, WeightMasks] | None = None

    def report(self, score: float, masks: WeightMasks) -> bool:
        """Record the score of `masks`; True if it passes (step 0, the full model, always does)."""
        if self.done:
            raise RuntimeError("the search has ended; nothing more to report")
        step = len(self.history)
        score = float(score)
        if step == 0:
            if not math.isfinite(score):
                raise NonFiniteError(f"the full model's score must be finite, got {score}: the fine-tuned model "
                                     "is broken (diverged?); redo the fine-tune with a lower recipe.lr")
            self.full_score = score
        passed = step == 0 or passes(score, self.full_score, self.threshold)
        self.history.append({"step": step, "sparsity": masks.sparsity(), "score": score, "passed": passed})
        self._masks = [*self._masks[-1:], masks]
        if passed:
            self._last_passing = (step, masks)
        return passed

    @property
    def done(self) -> bool:
        if not self.history:
            return False
        return not self.history[-1]["passed"] or len(self.history) - 1 >= self.max_steps

    @property
    def good_step(self) -> int | None:
        if self._last_passing is None:
            return None
        if self.exit_mask == "previous" and self.done and len(self.history) > 1:
            return len(self.history) - 2
        return self._last_passing[0]

    @property
    def good(self) -> WeightMasks | None:
        step = self.good_step
        if step is None:
            return None
        return self._last_passing[1] if step == self._last_passing[0] else self._masks[0]

    @property
    def next_fraction(self) -> float | None:
        """Fraction to prune next, or None once the search has ended."""
        return None if self.done else self.fraction

    def state_dict(self) -> dict:
        """Everything needed to resume (masks as dicts of bool tensors: for a torch checkpoint)."""
        return {"fraction": self.fraction, "threshold": self.threshold, "max_steps": self.max_steps, "of": self.of,
                "exit_mask": self.exit_mask, "full_score": self.full_score, "history": [dict(h) for h in self.history],
                "masks": [dict(m) for m in self._masks],
                "last_passing": None if self._last_passing is None else
                (self._last_passing[0], dict(self._last_passing[1]))}

    def load_state_dict(self, state: Mapping) -> None:
        rules = (self.fraction, self.threshold, self.max_steps, self.of, self.exit_mask)
        saved = (state["fraction"], state["threshold"], state["max_steps"], state["of"], state["exit_mask"])
        if saved != rules:
            raise ValueError(f"magnitude search state was made with (fraction, threshold, max_steps, of, exit_mask) = "
                             f"{saved}, this search has {rules}")
        self.full_score = state["full_score"]
        self.history = [dict(h) for h in state["history"]]
        self._masks = [WeightMasks(m) for m in state["masks"]]
        last = state["last_passing"]
        self._last_passing = None if last is None else (int(last[0]), WeightMasks(last[1]))


# ---------------------------------------------------------------------------------------------
# Tickets


def random_weight_ticket(good: WeightMasks, *, seed: int, per_matrix: bool = False) -> WeightMasks:
    """A uniformly random mask keeping exactly as many weights as `good`.

    Default: the same *global* count, drawn uniformly over all masked weights (the paper's
    "random unstructured at the same sparsity"), so per-tensor counts vary. `per_matrix=True`
    keeps each tensor's count instead. Seeded with its own `torch.Generator`.
    """
    generator = torch.Generator().manual_seed(seed)

    def draw(total: int, keep: int) -> Tensor:
        # The `keep` smallest of i.i.d. float64 keys: a uniform subset, 3x faster than randperm.
        keys = torch.rand(total, dtype=torch.float64, generator=generator)
        return _smallest(keys, keep, generator)

    if per_matrix:
        return WeightMasks({n: draw(m.numel(), int(m.sum())).view(m.shape) for n, m in good.items()})
    return _unflatten(draw(good.num_total(), good.num_kept()), good)


def bad_weight_ticket(params: Mapping[str, Tensor], good: WeightMasks, *, seed: int) -> WeightMasks:
    """Keep the smallest-|w| weights (prune the largest), exactly as many as `good` keeps, globally.

    `params` must hold the unmasked fine-tuned weights (e.g. a `snapshot_cpu` taken before any
    mask was applied), or the zeroed weights would be the first kept. `seed` only orders exact ties.
    """
    _check_same_names(params, good)
    generator = torch.Generator().manual_seed(seed)
    magnitudes = _magnitudes(params, good, pruned_as_inf=False)
    return _unflatten(_smallest(magnitudes, good.num_kept(), generator), good)


# ---------------------------------------------------------------------------------------------
# Rewinding


@torch.no_grad()
def rewind_(model: nn.Module, masks: WeightMasks, pretrained_state: Mapping[str, Tensor]) -> None:
    """Set the masked parameters to their pre-trained values where kept and to zero where pruned.

    Only the parameters in `masks` change: reset the others (embeddings, LayerNorm, classifier)
    yourself. `pretrained_state` stays where it is (CPU); each tensor is copied to its parameter's
    device on its own, so no second copy of the model lives on the GPU.
    """
    params = masks.check_compatible(model)
    for name in masks:
        if name not in pretrained_state:
            raise KeyError(f"pretrained_state has no {name!r}")
        p, source = params[name], pretrained_state[name]
        if source.shape != p.shape:
            raise MaskShapeError(
                f"parameter {name!r}: pre-trained tensor has shape {tuple(source.shape)}, the model's {tuple(p.shape)}"
            )
        p.copy_(source.to(p.device, p.dtype))
        p.masked_fill_(~masks.on(name, p.device), 0.0)


# ---------------------------------------------------------------------------------------------
# Reports


def _percent(kept: int | Tensor, total: int) -> float | None:
    return 100.0 * float(kept) / total if total else None


def _head_survival(layer_masks: Mapping[str, Tensor], num_heads: int,
                   unit_linears: Mapping[str, UnitLinear]) -> list[float | None]:
    """% kept per attention unit of one layer: its rows of the q/k/v projections (and bias
    entries), its columns of the attention-output weight (`unit_linears`: path -> how the units
    share that linear out)."""
    kept, total = torch.zeros(num_heads, dtype=torch.int64), 0
    for key, mask in layer_masks.items():
        path, kind = key.rsplit(".", 1)
        linear = unit_linears.get(path)
        if linear is None:
            continue
        if linear.dim == 0:  # rows grouped by unit within each segment: [segments * units * width, ...]
            grouped, dims = mask.reshape(linear.segments, num_heads, linear.width, -1), (0, 2, 3)
        elif kind == "weight":  # columns grouped by unit: [out, segments * units * width]
            grouped, dims = mask.reshape(mask.shape[0], linear.segments, num_heads, linear.width), (0, 1, 3)
        else:  # the output projection's bias is shared by all units
            continue
        kept += torch.count_nonzero(grouped, dim=dims)
        total += grouped.numel() // num_heads
    return [_percent(k, total) for k in kept.tolist()]


def sparsity_report(masks: WeightMasks, model: nn.Module) -> dict:
    """JSON-friendly accounting of a mask set on `model`'s (unpruned) architecture.

    `sparsity`, `per_layer` and `per_matrix` are fractions pruned; `head_survival[l][u]` and
    `mlp_survival[l]` are percentages kept. A head (attention unit; a KV group under grouped-query
    attention) owns its rows of Q, K, V (and their bias entries) and its columns of the
    attention-output weight; an MLP owns its input linears (BERT: intermediate.dense, weight and
    bias) and its output linear (weight, and bias if masked). Tensors absent from `masks` are left
    out; a unit with nothing masked reports None.
    """
    masks.check_compatible(model)
    _, num_heads = model_shape(model)
    family = model_family(model)
    unit_linears = {linear.path: linear for linear in family.unit_linears(model.config)}
    mlp_paths = {*family.mlp_inputs, family.mlp_output}
    kept = {name: int(torch.count_nonzero(m)) for name, m in masks.items()}
    per_layer, head_survival, mlp_survival = [], [], []
    for layer_names in _layer_parameter_names(model, ELIGIBLE_SUFFIXES, True, ()):
        present = {key: name for key, name in layer_names.items() if name in masks}
        layer_kept = _percent(sum(kept[n] for n in present.values()), sum(masks[n].numel() for n in present.values()))
        per_layer.append(None if layer_kept is None else 1.0 - layer_kept / 100.0)
        head_survival.append(_head_survival({key: masks[n] for key, n in present.items()}, num_heads, unit_linears))
        mlp = [n for key, n in present.items() if key.rsplit(".", 1)[0] in mlp_paths]
        mlp_survival.append(_percent(sum(kept[n] for n in mlp), sum(masks[n].numel() for n in mlp)))
    return {
        "sparsity": masks.sparsity(),
        "kept": masks.num_kept(),
        "total": masks.num_total(),
        "per_layer": per_layer,
        "per_matrix": {name: 1.0 - kept[name] / m.numel() for name, m in masks.items()},
        "head_survival": head_survival,
        "mlp_survival": mlp_survival,
    }
