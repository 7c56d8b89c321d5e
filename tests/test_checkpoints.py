"""Checkpoints and records that cannot strand a run: a disk that fills mid-write keeps the previous
file and ends in one line; a checkpoint that does not load is set aside and the stage starts again;
either way the rerun ends equal to a run that was never interrupted."""

import errno
import logging
import os
import stat

import pytest
import torch

import lottery.io
from lottery.errors import DiskFullError
from pipeline import train
from tests.helpers import compose_config, finetune_dir, stage_metrics, tiny_overrides

# 48 tiny RTE examples in batches of 8: 6 steps an epoch, a checkpoint every 2 steps.
EXTRA = ("task=rte", "recipe.max_epochs=2", "recipe.checkpoint_every_n_steps=2")


def overrides(root, glue):
    return tiny_overrides(root, glue, *EXTRA)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_glue):
    root = tmp_path_factory.mktemp("uninterrupted")
    metrics = train(compose_config(overrides(root, tiny_glue)))
    run_dir = finetune_dir(root, "rte")
    return metrics, (run_dir / "model" / "model.safetensors").read_bytes(), log_rows(run_dir)


def log_rows(run_dir) -> str:
    return (run_dir / "logs" / "finetune" / "metrics.csv").read_text()


class FullDisk:
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.handle.write(data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def fill_the_disk_at(monkeypatch, name: str, nth: int) -> None:
    """The `nth` write of a file called `name` finds the disk full half-way."""
    real = lottery.io._open_temporary
    seen = {"n": 0}

    def opener(fd, target):
        handle = real(fd, target)
        if target.name != name:
            return handle
        seen["n"] += 1
        return FullDisk(handle, 20) if seen["n"] == nth else handle

    monkeypatch.setattr(lottery.io, "_open_temporary", opener)


def assert_equal_to_uninterrupted(root, uninterrupted):
    metrics, weights, rows = uninterrupted
    run_dir = finetune_dir(root, "rte")
    assert stage_metrics(run_dir) == metrics
    assert (run_dir / "model" / "model.safetensors").read_bytes() == weights
    assert log_rows(run_dir) == rows  # the rows from before the interruption kept, none twice
    assert not list(root.rglob(".*.tmp")), "temporary files left behind"
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    assert {stat.S_IMODE(p.stat().st_mode) for p in (run_dir / "model").iterdir()} == {mode}  # the user's umask


def test_a_disk_full_mid_checkpoint_keeps_the_previous_one_and_the_rerun_finishes_equal(
        tmp_path, tiny_glue, monkeypatch, uninterrupted):
    fill_the_disk_at(monkeypatch, "last.ckpt", nth=4)  # step 10; the previous: step 8, in the second epoch
    with pytest.raises(DiskFullError) as error:
        train(compose_config(overrides(tmp_path, tiny_glue)))
    run_dir = finetune_dir(tmp_path, "rte")
    last = run_dir / "checkpoints" / "last.ckpt"
    message = str(error.value)
    assert f"cannot write {last}: no space left on the device" in message
    assert "free there; it needs about" in message and "\n" not in message
    assert torch.load(last, weights_only=True)["global_step"] == 8  # the previous checkpoint, whole
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model").exists()
    assert not list(tmp_path.rglob(".*.tmp"))
    monkeypatch.undo()
    train(compose_config(overrides(tmp_path, tiny_glue)))
    assert_equal_to_uninterrupted(tmp_path, uninterrupted)


def test_a_disk_full_writing_the_stage_record_marks_nothing_done(tmp_path, tiny_glue, monkeypatch, uninterrupted):
    fill_the_disk_at(monkeypatch, "metrics.json", nth=1)
    with pytest.raises(DiskFullError, match=r"cannot write .*metrics\.json: no space left"):
        train(compose_config(overrides(tmp_path, tiny_glue)))
    assert not (finetune_dir(tmp_path, "rte") / "metrics.json").exists()
    monkeypatch.undo()
    train(compose_config(overrides(tmp_path, tiny_glue)))
    assert_equal_to_uninterrupted(tmp_path, uninterrupted)


@pytest.mark.parametrize("planted", ["foreign", "truncated"])
def test_a_checkpoint_that_does_not_load_is_set_aside_and_the_stage_starts_again(
        tmp_path, tiny_glue, caplog, uninterrupted, planted):
    cfg = compose_config(overrides(tmp_path, tiny_glue))
    from pipeline.run import make_run

    run_dir = make_run(cfg).finetune_dir
    last = run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    if planted == "foreign":
        torch.save({"weights": torch.ones(3)}, last)  # loads, but is no Lightning checkpoint
    else:
        torch.save({"state_dict": {"w": torch.ones(1000)}, "global_step": 3, "epoch": 0, "loops": {}}, last)
        last.write_bytes(last.read_bytes()[:1500])
    content = last.read_bytes()
    with caplog.at_level(logging.WARNING, logger="lottery"):
        train(cfg)
    aside = run_dir / "last.ckpt.corrupt-1"
    assert f"cannot resume from {last}" in caplog.text and f"set it aside as {aside}" in caplog.text
    assert aside.read_bytes() == content  # renamed, not deleted
    assert_equal_to_uninterrupted(tmp_path, uninterrupted)


def test_a_run_killed_after_an_epochs_last_batch_resumes_exactly(tmp_path, tiny_glue, monkeypatch, uninterrupted):
    """Lightning resumes a checkpoint taken on an epoch's last batch as if the epoch's end had run
    and then skips the whole next epoch; no checkpoint is taken there, the one before resumes."""
    from lightning_modules.glue_module import GlueModule

    calls = {"n": 0}

    def killed_at_the_next_epochs_first_batch(self, outputs, batch, batch_idx):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("killed")

    monkeypatch.setattr(GlueModule, "on_train_batch_end", killed_at_the_next_epochs_first_batch, raising=False)
    with pytest.raises(RuntimeError, match="killed"):
        train(compose_config(overrides(tmp_path, tiny_glue)))
    last = finetune_dir(tmp_path, "rte") / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4  # not 6, the first epoch's last batch
    monkeypatch.undo()
    train(compose_config(overrides(tmp_path, tiny_glue)))
    assert_equal_to_uninterrupted(tmp_path, uninterrupted)


def test_a_run_killed_just_after_a_checkpoint_keeps_every_log_row(tmp_path, tiny_glue, monkeypatch, uninterrupted):
    """The checkpoint is saved once its step's log row is on disk: the resumed run starts after
    that step and never logs it again."""
    import pipeline.checkpoints

    real, calls = pipeline.checkpoints.write_bytes, {"n": 0}

    def killed_once_written(path, data):
        real(path, data)
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")

    monkeypatch.setattr(pipeline.checkpoints, "write_bytes", killed_once_written)
    with pytest.raises(RuntimeError, match="killed"):
        train(compose_config(overrides(tmp_path, tiny_glue)))
    monkeypatch.undo()
    train(compose_config(overrides(tmp_path, tiny_glue)))
    assert_equal_to_uninterrupted(tmp_path, uninterrupted)


def test_only_rank_zero_keeps_the_training_log_of_a_resumed_run(tmp_path, monkeypatch):
    """Under DDP every rank builds the loggers; the other ranks must not touch metrics.csv (two
    ranks reading and removing the rows a killed run wrote: FileNotFoundError on resume)."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    from pipeline.loggers import ResumableCSVLogger

    rows = tmp_path / "logs" / "finetune" / "metrics.csv"
    rows.parent.mkdir(parents=True)
    rows.write_text("step,train_loss\n4,0.5\n")
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    ResumableCSVLogger(save_dir=str(tmp_path), name="logs", version="finetune").experiment.log_metrics({"x": 1.0}, 0)
    assert rows.read_text() == "step,train_loss\n4,0.5\n"
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="logs", version="finetune", flush_logs_every_n_steps=1)
    logger.log_metrics({"train_loss": 0.25}, step=6)
    assert rows.read_text() == "step,train_loss\n4,0.5\n6,0.25\n"  # rank 0 keeps the rows before the resume
