"""The protocol keys that reproduce the authors' training around the search (conf/protocol), each
against a hand computation on the tiny model: a test here fails if its key's value is ignored."""

from __future__ import annotations

import torch

from pipeline.run import make_run
from pipeline.training import datamodule
from tests.helpers import compose_config, tiny_overrides


def _train_batches(tmp_path, tiny_glue, *overrides: str) -> tuple[list[list[int]], int, int]:
    run = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", *overrides)))
    data = datamodule(run)
    data.setup("fit")
    return list(data.train_dataloader().batch_sampler), len(data.train_dataset), run.settings.data.batch_size


def test_batching_is_the_authors_random_sampler_under_both_presets(tmp_path, tiny_glue):
    # src/run_glue.py:154: RandomSampler over the training set, cut into consecutive batches
    for preset in ("paper", "clean"):
        batches, n, size = _train_batches(tmp_path, tiny_glue, f"protocol={preset}", "seed=3")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(3 + 0)).tolist()  # epoch 0
        assert batches == [order[i:i + size] for i in range(0, n, size)], preset
    grouped, _, _ = _train_batches(tmp_path, tiny_glue, "protocol.batching=length_grouped", "seed=3")
    assert grouped != batches and sorted(map(sorted, grouped)) != sorted(map(sorted, batches))
