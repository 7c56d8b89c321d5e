"""Shared fixtures: the random tiny BERT and small batches, no downloads."""

import pytest
import torch

from lottery.models import tiny_bert

torch.set_num_threads(2)


@pytest.fixture
def tiny_model():
    """A random-init 2-layer, 4-head BERT classifier with 2 labels, in eval mode."""
    return tiny_bert(num_labels=2, seed=0)


@pytest.fixture
def tiny_batch():
    """A batch of 6 padded sequences of length 12 with labels, for the tiny model."""
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 2000, (6, 12), generator=g)
    attention_mask = torch.ones(6, 12, dtype=torch.long)
    attention_mask[3:, 9:] = 0
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros(6, 12, dtype=torch.long),
        "labels": torch.tensor([0, 1, 1, 0, 1, 0]),
    }
