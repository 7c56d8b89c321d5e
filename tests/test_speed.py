"""The speed settings (conf/config.yaml `speed`, data.pin_memory, the progress bar's throttle) change
how fast a fit runs, not what it computes: on CPU a fine-tune with them on and one with them off
end byte-identical. A setting that changes the numbers (speed.adamw=fused) gets its own folder."""

from __future__ import annotations

import random
import re

import pytest
import torch

from callbacks.progress import ThrottledRichProgressBar
from lightning_modules.glue_datamodule import GlueDataModule
from lottery.errors import ConfigError, NonFiniteError
from lottery.features import PadCollator, TokenizedSplit
from pipeline import train
from pipeline.run import make_run
from tests.helpers import compose_config, finetune_dir, tiny_overrides

FAST = ["speed.adamw=foreach", "speed.finite_check_every_n_steps=4", "speed.log_every_step=false",
        "data.pin_memory=auto"]
SLOW = ["speed.adamw=for_loop", "speed.finite_check_every_n_steps=1", "speed.log_every_step=true",
        "data.pin_memory=false"]


def _finetune(root, glue, settings):
    # Loggers write every 3rd step, so logging only those steps differs from logging every step.
    overrides = tiny_overrides(root, glue, "task=stsb", "recipe.max_epochs=2", "trainer.log_every_n_steps=3",
                               *settings)
    metrics = train(compose_config(overrides))
    return metrics, finetune_dir(root, "stsb")


def test_a_fine_tune_with_the_speed_settings_on_is_byte_identical_to_one_with_them_off(tmp_path, tiny_glue):
    fast_metrics, fast = _finetune(tmp_path / "fast", tiny_glue, FAST)
    slow_metrics, slow = _finetune(tmp_path / "slow", tiny_glue, SLOW)
    assert fast.name == slow.name  # none of them is part of the fine-tune's identity
    assert fast_metrics == slow_metrics
    assert (fast / "model" / "model.safetensors").read_bytes() == (slow / "model" / "model.safetensors").read_bytes()
    logged = [(folder / "logs" / "finetune" / "metrics.csv").read_text() for folder in (fast, slow)]
    assert logged[0] == logged[1] and logged[0].count("\n") == 1 + 2 * 6 // 3  # a row every 3rd of 12 steps


def test_fused_adamw_gets_its_own_folder_as_does_for_loop_on_a_gpu(tmp_path, tiny_glue):
    def folder(*extra):
        return make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=stsb", *extra))).finetune_dir

    assert folder("speed.adamw=for_loop") == folder("speed.adamw=foreach")  # the same numbers on CPU
    assert folder("speed.adamw=fused") != folder()
    on_gpu = ("trainer=gpu",)
    assert folder(*on_gpu, "speed.adamw=for_loop") != folder(*on_gpu, "speed.adamw=foreach")


@pytest.mark.parametrize("bad", ["speed.adamw=adam", "speed.finite_check_every_n_steps=0"])
def test_bad_speed_settings_are_refused_in_one_line(tmp_path, tiny_glue, bad):
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        train(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", bad)))


def test_a_diverging_loss_checked_every_50_steps_names_the_same_first_step(tmp_path, tiny_glue):
    def message(every):
        overrides = tiny_overrides(tmp_path / str(every), tiny_glue, "task=rte", "recipe.lr=1e8", "recipe.grad_clip=null",
                                   f"speed.finite_check_every_n_steps={every}")
        with pytest.raises(NonFiniteError) as error:
            train(compose_config(overrides))
        return str(error.value)

    first = message(1)
    assert re.search(r"training loss is (nan|inf) at step \d+ \(learning rate", first)
    assert message(50) == first


def _per_example_padding(features, pad_token_id, regression, pad_to=None):
    """The padding PadCollator did before it was vectorised: one row at a time."""
    width = pad_to or max((len(f["input_ids"]) for f in features), default=0)
    input_ids = torch.full((len(features), width), pad_token_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(features), width), dtype=torch.long)
    attention_mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        input_ids[row, :n] = torch.tensor(feature["input_ids"])
        token_type_ids[row, :n] = torch.tensor(feature["token_type_ids"])
        attention_mask[row, :n] = 1
    labels = torch.tensor([f["labels"] for f in features], dtype=torch.float if regression else torch.long)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("regression", [False, True])
def test_batches_cut_from_ready_tensors_equal_the_per_example_padding(regression):
    rng = random.Random(0)
    input_ids = [[rng.randrange(1, 30000) for _ in range(rng.randrange(1, 40))] for _ in range(200)]
    token_types = [[int(j >= len(ids) // 2) for j in range(len(ids))] for ids in input_ids]
    labels = [rng.random() * 5 if regression else rng.randrange(3) for _ in input_ids]
    split = TokenizedSplit(input_ids, token_types, labels)
    for pad_to in (None, 48):
        collate = PadCollator(0 if pad_to else 7, regression, pad_to)
        for size in (1, 5, 32):
            indices = rng.sample(range(len(split)), size)
            expected = _per_example_padding([split[i] for i in indices], collate.pad_token_id, regression, pad_to)
            for batch in (collate(split.__getitems__(indices)), collate([split[i] for i in indices])):
                assert batch.keys() == expected.keys()
                for key, value in expected.items():
                    assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key
    with pytest.raises(ValueError, match="pad_to=8"):
        PadCollator(0, regression, 8)(split.__getitems__([max(range(200), key=lambda i: len(input_ids[i]))]))


def test_pinned_memory_is_for_gpus_only_unless_asked(tmp_path):
    assert GlueDataModule("rte", None, None)._pinned() is False  # auto, no trainer on a GPU
    assert GlueDataModule("rte", None, None, pin_memory=True)._pinned() is True
    with pytest.raises(ConfigError, match="data.pin_memory"):
        GlueDataModule("rte", None, None, pin_memory="yes")


def test_the_rich_bar_redraws_at_most_every_interval_and_at_the_last_batch(monkeypatch):
    bar = ThrottledRichProgressBar(min_interval_s=3600)
    clock = iter(range(100))
    monkeypatch.setattr("callbacks.progress.time.monotonic", lambda: float(next(clock)))
    assert [bar._due(i, 10) for i in range(10)] == [True] + [False] * 8 + [True]
    every = ThrottledRichProgressBar(min_interval_s=0)
    assert all(every._due(i, 10) for i in range(10))


# ----- tickets retrained at once (tickets.retrain_processes, pipeline/retrain_pool.py) -----
@pytest.mark.e2e  # spawns a process per ticket: ~70 s on 2 shared cores
def test_tickets_retrained_at_once_give_the_same_files_as_one_after_the_other(tmp_path, tiny_glue, monkeypatch):
    """The same metrics, and the same weights up to their last bits: a retrain in a fresh process (a
    pool's, or a rerun's after a kill) differs in the last bits from one in the process that also ran
    the fine-tune and the search (found here: byte-identical to a sequential rerun in a fresh process)."""
    import shutil

    from safetensors.torch import load_file

    from pipeline import retrain_pool, tickets
    from tests.helpers import experiment_dir, stage_metrics

    overrides = ["task=rte", "experiment=structured", "structured.head_fraction=0.25", "tickets.cost=false",
                 "tickets.kinds=[good,bad]"]
    sequential = train(compose_config(tiny_overrides(tmp_path / "one", tiny_glue, *overrides)))
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    folder = experiment_dir(tmp_path / "two", "rte", "structured-paper")
    shutil.rmtree(folder / "retrained")
    (folder / "results.json").unlink()
    pools = []
    monkeypatch.setattr(tickets, "retrain_at_once",
                        lambda *args: pools.append(args[-1]) or retrain_pool.retrain_at_once(*args))
    concurrent = train(compose_config(tiny_overrides(tmp_path / "two", tiny_glue, *overrides,
                                                     "tickets.retrain_processes=2")))
    assert pools == [2]  # both tickets in their own processes, at once
    first = experiment_dir(tmp_path / "one", "rte", "structured-paper")
    for kind in ("good", "bad"):
        assert stage_metrics(folder / "retrained" / kind) == stage_metrics(first / "retrained" / kind)
        ours, theirs = (load_file(str(place / "retrained" / kind / "model" / "model.safetensors"))
                        for place in (folder, first))
        assert ours.keys() == theirs.keys()
        for name, tensor in ours.items():
            torch.testing.assert_close(tensor, theirs[name], rtol=0, atol=1e-6, msg=name)
        assert concurrent["tickets"][kind]["retrained"] == sequential["tickets"][kind]["retrained"]
