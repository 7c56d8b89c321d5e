"""Every epoch trains on its own seeded order, and a run resumed in any epoch continues that order.

Lightning sets the epoch on a DataLoader's sampler, never on a custom batch sampler; before
`callbacks.epoch_order.EpochOrder` every fine-tune repeated epoch 1's order in every epoch, while a
run resumed in a later epoch drew another order than the uninterrupted one.
"""

import pytest
import torch

from lightning_modules.glue_module import GlueModule
from lottery.samplers import EpochBatchSampler
from pipeline import train
from tests.helpers import compose_config, finetune_dir, tiny_overrides


def test_the_order_is_a_function_of_seed_and_epoch():
    lengths = [(i * 7) % 30 + 1 for i in range(200)]
    for batching in ("uniform", "length_grouped"):
        sampler = EpochBatchSampler(lengths, 16, seed=5, batching=batching)
        epochs = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            epochs.append(list(sampler))
            assert sorted(i for batch in epochs[-1] for i in batch) == list(range(200))
        assert epochs[0] != epochs[1] != epochs[2]
        again = EpochBatchSampler(lengths, 16, seed=5, batching=batching)
        again.set_epoch(1)
        assert list(again) == epochs[1]


def test_uniform_batches_are_consecutive_slices_of_a_seeded_permutation():
    sampler = EpochBatchSampler([5] * 10, 4, seed=3, batching="uniform")
    sampler.set_epoch(2)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3 + 2)).tolist()
    assert list(sampler) == [order[0:4], order[4:8], order[8:10]]


def test_resume_skips_only_the_batches_done_of_that_epoch():
    sampler = EpochBatchSampler(list(range(1, 101)), 8, seed=0)
    sampler.set_epoch(1)
    whole = list(sampler)
    sampler.resume_at(1, 5)
    assert list(sampler) == whole[5:]
    assert list(sampler) == whole  # the skip applies once


def test_the_epoch_set_after_iter_but_before_the_first_batch_counts():
    sampler = EpochBatchSampler(list(range(1, 41)), 8, seed=0)
    iterator = iter(sampler)  # the trainer makes epoch 1's iterator before its epoch-start hooks
    sampler.set_epoch(3)
    expected = EpochBatchSampler(list(range(1, 41)), 8, seed=0)
    expected.set_epoch(3)
    assert list(iterator) == list(expected)


def _recorded_fit(monkeypatch, overrides, crash_at: int | None = None) -> list[tuple[int, int]]:
    """(epoch, fingerprint of the batch) of every training step of the run's fine-tune."""
    seen: list[tuple[int, int]] = []

    def record(self, outputs, batch, batch_idx):
        seen.append((self.current_epoch, int((batch["input_ids"] * torch.arange(1, batch["input_ids"].shape[1] + 1))
                                             .sum())))
        if crash_at is not None and len(seen) == crash_at:
            raise RuntimeError("simulated kill")

    monkeypatch.setattr(GlueModule, "on_train_batch_end", record, raising=False)
    if crash_at is None:
        train(compose_config(overrides))
    else:
        with pytest.raises(RuntimeError, match="simulated kill"):
            train(compose_config(overrides))
    monkeypatch.undo()
    return seen


def test_epochs_differ_and_a_run_resumed_in_epoch_two_continues_the_same_order(tmp_path, tiny_glue, monkeypatch):
    common = ["task=rte", "recipe.checkpoint_every_n_steps=1", "recipe.max_epochs=3"]
    whole = _recorded_fit(monkeypatch, tiny_overrides(tmp_path / "whole", tiny_glue, *common))
    per_epoch = [[fingerprint for epoch, fingerprint in whole if epoch == e] for e in range(3)]
    assert len(per_epoch[0]) == 6 and per_epoch[0] != per_epoch[1] != per_epoch[2]

    resumed_root = tmp_path / "resumed"
    overrides = tiny_overrides(resumed_root, tiny_glue, *common)
    before = _recorded_fit(monkeypatch, overrides, crash_at=9)  # killed after 3 batches of epoch 2
    after = _recorded_fit(monkeypatch, overrides)
    assert after[0][0] == 1
    # Step checkpoints are written when the next batch starts (its log row is then on disk), so the
    # last one before the kill holds step 8: the resumed run redoes batch 9, in the same order.
    assert before[:-1] + after == whole
    weights = "model/model.safetensors"
    assert (finetune_dir(resumed_root, "rte") / weights).read_bytes() == \
        (finetune_dir(tmp_path / "whole", "rte") / weights).read_bytes()
