"""Good, random and bad structured tickets, and super tickets across seeds.

A ticket is a (head [L, H], mlp [L]) pair of float 0/1 masks, 1 = kept. Given the good mask that
the search found, the random and bad tickets have the same size (exactly, or in expectation for
the paper's Bernoulli sampling) so that they differ from it only in *which* elements survive.

Randomness comes only from `torch.Generator().manual_seed(...)`, never the global RNG:
`random_ticket` draws from seed + RANDOM_SEED_OFFSET and `bad_ticket` from seed + BAD_SEED_OFFSET,
so the two tickets of one seed are independent draws. Within a ticket heads are drawn before MLPs
from the same generator. `super_tickets` uses the same two offsets for its random and bad masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lottery.search import TARGETS

KINDS = ("good", "random", "bad")  # the tickets an experiment draws from its good mask
SAMPLINGS = ("exact", "bernoulli")
# Whether the random ticket's pruned and retrained rows use one mask ("same") or two draws ("separate":
# the authors' franken_bert.py draws the pruned one with numpy seeded 42 for every model, their
# run_glue.py the retrained one with the model's seed).
RANDOM_PAIRINGS = ("same", "separate")
# Super-random masks: one draw per task for every seed ("once"), or a draw per seed from the task's
# super-good and super-bad masks ("per_seed": the authors' src/compute_super_masks.py:120-147).
SUPER_RANDOMS = ("once", "per_seed")
PRUNED_RANDOM_SEED = 42  # franken_bert.py's --seed default (line 351), set before each model's draw (372, 918)
RANDOM_SEED_OFFSET = 0
BAD_SEED_OFFSET = 1


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")


def _check_binary(mask: Tensor, name: str) -> None:
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError(f"{name} must hold only 0 and 1")


def _check_good(good_head: Tensor, good_mlp: Tensor) -> None:
    if good_head.dim() != 2 or good_mlp.dim() != 1 or good_head.shape[0] != good_mlp.shape[0]:
        raise ValueError(
            f"expected head mask [layers, heads] and mlp mask [layers], got "
            f"{list(good_head.shape)} and {list(good_mlp.shape)}"
        )
    _check_binary(good_head, "good_head")
    _check_binary(good_mlp, "good_mlp")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _from_flat_indices(indices: Tensor, like: Tensor) -> Tensor:
    """A float 0/1 mask shaped like `like` with ones at the given flat indices."""
    out = torch.zeros(like.numel())
    out[indices] = 1.0
    return out.view(like.shape).to(device=like.device)


def _pick(candidates: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """`count` of the `candidates` (flat indices), uniformly without replacement."""
    return candidates[torch.randperm(candidates.numel(), generator=generator)[:count]]


def _random_kind(good: Tensor, sampling: str, generator: torch.Generator) -> Tensor:
    kept = int(good.sum().item())
    n = good.numel()
    if sampling == "exact":
        return _from_flat_indices(_pick(torch.arange(n), kept, generator), good)
    mask = (torch.rand(n, generator=generator) < kept / n).float()
    return mask.view(good.shape).to(device=good.device)


def random_ticket(
    good_head: Tensor,
    good_mlp: Tensor,
    *,
    seed: int,
    sampling: str = "exact",
    target: str = "heads_mlps",
) -> tuple[Tensor, Tensor]:
    """A random ticket the size of the good one, per kind of element.

    "exact": exactly as many heads (and MLPs) as good keeps, chosen uniformly among all of them.
    "bernoulli" (the paper; the authors' experiment_analysis/create_random_masks.ipynb): each
    element is kept with p = good's survival rate of its kind, so the size matches only in
    expectation (a draw may even keep no head). Kinds that `target` does not prune are all ones.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
    _check_target(target)
    _check_good(good_head, good_mlp)
    generator = _generator(seed + RANDOM_SEED_OFFSET)
    head = torch.ones_like(good_head, dtype=torch.float32)
    mlp = torch.ones_like(good_mlp, dtype=torch.float32)
    if target != "mlps":
        head = _random_kind(good_head, sampling, generator)
    if target != "heads":
        mlp = _random_kind(good_mlp, sampling, generator)
    return head, mlp


def _bad_kind(good: Tensor, generator: torch.Generator) -> Tensor:
    flat = good.reshape(-1)
    kept = int(flat.sum().item())
    pruned = torch.nonzero(flat == 0).reshape(-1)
    survivors = torch.nonzero(flat == 1).reshape(-1)
    if kept <= pruned.numel():
        chosen = _pick(pruned, kept, generator)
    else:
        chosen = torch.cat([pruned, _pick(survivors, kept - pruned.numel(), generator)])
    return _from_flat_indices(chosen, good)


def bad_ticket(good_head: Tensor, good_mlp: Tensor, *, seed: int, target: str = "heads_mlps") -> tuple[Tensor, Tensor]:
    """A ticket the size of the good one, made of the elements good pruned, per kind.

    Keeps k = good's count of elements drawn uniformly among those good pruned; if k exceeds the
    number pruned, keeps all pruned ones plus k - #pruned survivors drawn uniformly. Kinds that
    `target` does not prune are all ones.
    """
    _check_target(target)
    _check_good(good_head, good_mlp)
    generator = _generator(seed + BAD_SEED_OFFSET)
    head = torch.ones_like(good_head, dtype=torch.float32)
    mlp = torch.ones_like(good_mlp, dtype=torch.float32)
    if target != "mlps":
        head = _bad_kind(good_head, generator)
    if target != "heads":
        mlp = _bad_kind(good_mlp, generator)
    return head, mlp


@dataclass(frozen=True)
class SuperTickets:
    """Super tickets of one kind of element (heads or MLPs) across the seeds of a task.

    good: kept in every seed. bad: pruned in every seed, resized to good's count. random
    ("middling"): in neither of those two sets, resized to good's count. Masks have the input
    shape, 1 = kept. `candidates` counts the pools (pruned in every seed; in neither set);
    `notes` says when a pool was too small and what filled it.
    """

    good: Tensor
    bad: Tensor
    random: Tensor
    counts: dict[str, int]
    candidates: dict[str, int]
    notes: tuple[str, ...]


def _resize(chosen: Tensor, size: int, fill_from: list[Tensor], generator: torch.Generator) -> Tensor:
    """`chosen` (flat bool) made exactly `size` large: drop random members, or add random members
    of the first pool in `fill_from` that has enough candidates (else of the last one)."""
    count = int(chosen.sum())
    out = chosen.clone()
    if count > size:
        members = torch.nonzero(chosen).reshape(-1)
        out[_pick(members, count - size, generator)] = False
    elif count < size:
        pools = [torch.nonzero(pool & ~chosen).reshape(-1) for pool in fill_from]
        pool = next((p for p in pools if p.numel() >= size - count), pools[-1])
        out[_pick(pool, size - count, generator)] = True
    return out


def _middling(good: Tensor, bad: Tensor, seed: int) -> Tensor:
    """The elements in neither good nor bad (flat bool), made good's size from seed + RANDOM_SEED_OFFSET."""
    return _resize(~good & ~bad, int(good.sum()), [torch.ones_like(good)], _generator(seed + RANDOM_SEED_OFFSET))


def super_random(super_good: Tensor, super_bad: Tensor, *, seed: int) -> Tensor:
    """A super-random mask drawn again from a task's super-good and (resized) super-bad masks of one
    kind, as `super_tickets` draws it with this seed: the elements in neither, resized to good's size.
    The authors' src/compute_super_masks.py:141-142 draws it so for each seed of a task (from the
    same bad mask: resized at the first seed, line 132, it already has good's size at the next ones)."""
    if super_good.shape != super_bad.shape:
        raise ValueError(f"super-good {list(super_good.shape)} and super-bad {list(super_bad.shape)} differ in shape")
    _check_binary(super_good, "super_good")
    _check_binary(super_bad, "super_bad")
    flat = _middling(super_good.reshape(-1).cpu() == 1, super_bad.reshape(-1).cpu() == 1, seed)
    return _from_flat_indices(torch.nonzero(flat).reshape(-1), super_good)


def super_tickets(masks: list[Tensor], *, seed: int) -> SuperTickets:
    """Super-good / super-bad / super-random masks from several seeds' good masks of one kind,
    drawn as the authors' src/compute_super_masks.py does:

    - good: the elements kept in every seed;
    - bad: the elements pruned in every seed; too many: drop random ones; too few: add random
      elements that are in neither set, and if those are too few, any element not yet in bad
      (super-good ones included);
    - random: the elements in neither good nor the (resized) bad; too many: drop random ones; too
      few: add random elements from good or bad.
    All three have good's size. Seeded: bad from seed + BAD_SEED_OFFSET, random from
    seed + RANDOM_SEED_OFFSET.
    """
    if not masks:
        raise ValueError("super_tickets needs the good masks of at least one seed")
    shape = masks[0].shape
    for i, mask in enumerate(masks):
        if mask.shape != shape:
            raise ValueError(f"mask {i} has shape {list(mask.shape)}, expected {list(shape)}")
        _check_binary(mask, f"mask {i}")
    stacked = torch.stack([m.reshape(-1).float().cpu() for m in masks])
    always = stacked.min(dim=0).values == 1
    never = stacked.max(dim=0).values == 0
    neither = ~always & ~never
    size = int(always.sum())
    everything = torch.ones_like(always)
    bad = _resize(never, size, [neither, everything], _generator(seed + BAD_SEED_OFFSET))
    middling = ~always & ~bad
    random = _middling(always, bad, seed)
    notes = []
    if int(never.sum()) < size:
        source = "elements in neither set" if int(neither.sum()) >= size - int(never.sum()) else "any element"
        notes.append(f"super-bad: only {int(never.sum())} elements pruned in every seed for {size} super-good ones; "
                     f"filled up with {source}")
    if int(middling.sum()) < size:
        notes.append(f"super-random: only {int(middling.sum())} elements in neither set for {size} super-good ones; "
                     "filled up with super-good or super-bad ones")
    template = masks[0]

    def as_mask(flat: Tensor) -> Tensor:
        return _from_flat_indices(torch.nonzero(flat).reshape(-1), template)

    return SuperTickets(
        good=as_mask(always), bad=as_mask(bad), random=as_mask(random),
        counts={"good": size, "bad": int(bad.sum()), "random": int(random.sum())},
        candidates={"bad": int(never.sum()), "random": int(neither.sum())},
        notes=tuple(notes),
    )
