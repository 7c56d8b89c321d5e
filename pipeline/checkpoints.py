"""Checkpoints that cannot strand a run.

Lightning writes a checkpoint in place (through a temporary file under /tmp that is then copied
over it), so a full disk or a kill mid-copy leaves a truncated `last.ckpt`, and every rerun then
fails on it. Here a checkpoint is written to a temporary file in its own folder and renamed over
the previous one (`AtomicCheckpointIO`, the trainers' checkpoint plugin): a failed write leaves
the previous checkpoint intact and ends in one line (`lottery.errors.DiskFullError`). A
checkpoint that still cannot be loaded (written by something else, or damaged) is set aside with
a warning, renamed beside the stage's results, never deleted, and the stage starts again from
scratch (`resume_from`).

A fit saves every few steps (`StepCheckpoint`) when the next batch starts, once the finished
step's log row is on disk (Lightning's ModelCheckpoint saves before that row is written, so a kill
just after a checkpoint lost the row for good: the resumed run starts after that step), and never
across an epoch's end: Lightning resumes a checkpoint taken on an epoch's last batch as if the
epoch's end had run (it skips the epoch-end hooks: validation, an IMP round's pruning) and then
starts the next epoch without its epoch-start hooks, so the next epoch trained on nothing.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from lottery.io import write_bytes
from pipeline.stages import is_launching_process

log = logging.getLogger("lottery")

# What every checkpoint a Lightning fit saves holds (the structured search's too).
CHECKPOINT_KEYS = ("state_dict", "global_step", "epoch", "loops")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint through a temporary file beside it, fsynced and renamed over it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes(path, buffer.getbuffer())


class StepCheckpoint(ModelCheckpoint):
    """`last.ckpt` every `every_n_train_steps` optimizer steps, saved when the next batch of the
    same epoch starts: after the step's log row, never on an epoch's last batch."""

    def __init__(self, dirpath: str | Path, every_n_train_steps: int):
        super().__init__(dirpath=str(dirpath), save_last=True, save_top_k=0, every_n_train_steps=every_n_train_steps)
        self._between_batches = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """Too early: the step's log row is written after this hook (see `on_train_batch_start`)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx > 0:  # the previous batch of this epoch is done: weights, schedule and log row
            self._between_batches = True
            try:
                super().on_train_batch_end(trainer, pl_module, None, batch, batch_idx - 1)
            finally:
                self._between_batches = False

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self._between_batches:
            # On resume Lightning adds 1 to the count of optimizer steps its loggers use, as if the
            # checkpoint had been taken before the step counted (on_train_batch_end); it was after.
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


def unreadable_reason(path: Path) -> str | None:
    """Why `path` is not a Lightning checkpoint that a fit can resume from (None: it is one).

    Loaded memory-mapped and weights-only: cheap, and nothing in the file is executed."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001  (truncated, not a zip, foreign pickle: all mean unusable)
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if not isinstance(checkpoint, dict):
        return f"it holds a {type(checkpoint).__name__}, not a checkpoint"
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    return f"it lacks {missing}" if missing else None


def set_aside(path: Path) -> Path:
    """Rename `path` to `<stage folder>/<name>.corrupt-<n>` (the first free n); returns the new path."""
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    n = 1
    while (folder / f"{path.name}.corrupt-{n}").exists():
        n += 1
    target = folder / f"{path.name}.corrupt-{n}"
    os.replace(path, target)
    return target


def resume_from(path: Path) -> Path | None:
    """`path` if a fit can resume from it; else None, and an unusable file is set aside (renamed,
    with a warning) so the stage starts again from scratch instead of failing on every rerun."""
    if not path.is_file():
        return None
    reason = unreadable_reason(path)
    if reason is None:
        return path
    if is_launching_process():  # other ranks find it unusable too and leave the renaming to rank 0
        aside = set_aside(path)
        log.warning("cannot resume from %s (%s); set it aside as %s and starting this stage from scratch",
                    path, reason, aside)
    return None
