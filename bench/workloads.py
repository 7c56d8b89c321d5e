"""Models, batches, masks and the training step that the benchmarks time."""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lottery.masks import StructuredMasks
from lottery.models import load_classifier, minilm_path, tiny_bert

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GOOD_TICKET_GLOB = "**/minilm/stsb/seed1337/structured-*/tickets/good.json"
TOKEN_RANGE = (1000, 29000)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Runtime:
    """Where the benchmark runs: `device` (cpu | cuda) and whether forwards autocast to bfloat16
    (as `trainer.precision=bf16-mixed` does). Set once by the command line."""

    device: str = "cpu"
    bf16: bool = False

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.to(self.device) for key, value in batch.items()}


RUNTIME = Runtime()


def load_model(quick: bool, path: str | Path | None = None) -> nn.Module:
    """MiniLM-L6 (or the BERT-layout model at `path`) with a fresh 2-label head;
    `quick`: the random tiny BERT (2 layers, 4 heads, hidden 64)."""
    model = tiny_bert(num_labels=2, seed=0) if quick else load_classifier(path or minilm_path(), 2)
    return model.to(RUNTIME.device).train()


def make_batch(batch_size: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids in [1000, 29000), full attention mask, random 0/1 labels, on the runtime's device."""
    generator = torch.Generator().manual_seed(seed)
    return RUNTIME.to_device({
        "input_ids": torch.randint(*TOKEN_RANGE, (batch_size, seq_len), generator=generator),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        "token_type_ids": torch.zeros(batch_size, seq_len, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch_size,), generator=generator),
    })


class TrainStep:
    """forward + backward + AdamW step (+ optional `after()` hook, e.g. re-applying weight masks).

    AdamW as the Lightning module builds it (torch's default implementation for the device).
    The forward autocasts when the runtime says bf16.
    """

    def __init__(self, model: nn.Module, batch: dict[str, torch.Tensor], after=None, before=None) -> None:
        self.model, self.batch, self.after, self.before = model, batch, after, before
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)

    def __call__(self, batch: dict[str, torch.Tensor] | None = None) -> float:
        if self.before is not None:
            self.before()
        self.model.train()
        with RUNTIME.autocast():
            loss = self.model(**(batch or self.batch)).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.after is not None:
            self.after()
        return float(loss.detach())


def clone_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def random_structured_mask(num_layers: int, num_heads: int, head_fraction: float, mlps_kept: int, seed: int) -> StructuredMasks:
    """Keep round(head_fraction * L * H) heads drawn uniformly over all heads and `mlps_kept` random MLPs."""
    generator = torch.Generator().manual_seed(seed)
    total = num_layers * num_heads
    head = torch.zeros(total)
    head[torch.randperm(total, generator=generator)[: round(head_fraction * total)]] = 1.0
    mlp = torch.zeros(num_layers)
    mlp[torch.randperm(num_layers, generator=generator)[:mlps_kept]] = 1.0
    return StructuredMasks(head.view(num_layers, num_heads), mlp)


@dataclass
class GoodMask:
    masks: StructuredMasks
    source: str  # human-readable: which mask was used


def find_good_mask(shape: tuple[int, int], explicit: str | None, root: Path = PROJECT_ROOT) -> GoodMask:
    """`--good-mask PATH`, else the newest STS-B seed-1337 good ticket under outputs/, else a fallback.

    The fallback (documented in the table) keeps 60% of the heads (drawn uniformly, seed 0) and
    2/3 of the MLPs (4 of 6 on MiniLM), a size typical of the structured good tickets of the paper.
    """
    if explicit:
        masks = StructuredMasks.load_json(explicit, expected_shape=shape)
        return GoodMask(masks, f"--good-mask {explicit}")
    outputs = root / "outputs"
    candidates = sorted(outputs.glob(GOOD_TICKET_GLOB), key=lambda p: p.stat().st_mtime, reverse=True) if outputs.is_dir() else []
    note = ""
    for path in candidates:
        try:
            masks = StructuredMasks.load_json(path, expected_shape=shape)
        except (ValueError, OSError, json.JSONDecodeError) as error:
            note = f" ({path.relative_to(root)} unusable: {type(error).__name__})"
            continue
        return GoodMask(masks, f"newest good ticket {path.relative_to(root)}")
    num_layers, num_heads = shape
    mlps = max(1, round(2 * num_layers / 3))
    masks = random_structured_mask(num_layers, num_heads, 0.6, mlps, seed=0)
    return GoodMask(masks, f"fallback: 60% heads, {mlps}/{num_layers} MLPs, seeded random (no good.json found{note})")
