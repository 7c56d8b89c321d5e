"""Tokenised GLUE splits with an on-disk cache, and dynamic padding.

Tokenising SST-2's 67k sentences takes seconds; every job of a sweep reuses the cached tensors,
keyed by the source file's content, the tokenizer and the maximum length.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from lottery.glue_data import Examples, GlueDataError, read_split, source_fingerprint
from lottery.io import atomic_write
from lottery.tasks import GlueTask

log = logging.getLogger("lottery")


class TokenizedSplit(Dataset):
    """Token ids of one split, unpadded; `lengths` feeds the length-grouped sampler.

    The lists are the split's record (and its cache file); for batching, `rows()` holds the same
    ids once as ready tensors, and `__getitems__` (which a DataLoader calls with a whole batch's
    indices) cuts a batch out of them with one indexing operation instead of one tensor per example.
    """

    def __init__(self, input_ids: list[list[int]], token_type_ids: list[list[int]], labels: Sequence):
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids
        self.labels = list(labels)
        self._rows: Rows | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {
            "input_ids": self.input_ids[index],
            "token_type_ids": self.token_type_ids[index],
            "labels": self.labels[index],
        }

    def __getitems__(self, indices: Sequence[int]) -> Rows:
        return self.rows().take(indices)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def rows(self) -> Rows:
        """The whole split as tensors (built once, on first use)."""
        if self._rows is None:
            self._rows = Rows.from_lists(self.input_ids, self.token_type_ids, self.labels)
        return self._rows

    def subset(self, indices: Sequence[int]) -> TokenizedSplit:
        return TokenizedSplit(
            [self.input_ids[i] for i in indices], [self.token_type_ids[i] for i in indices],
            [self.labels[i] for i in indices],
        )


@dataclass(frozen=True)
class Rows:
    """Sequences as tensors: `input_ids` and `token_type_ids` [N, longest], zero after each row's
    `lengths` [N]; `labels` [N] (float64 for regression scores, int64 for classes)."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_lists(cls, input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]],
                   labels: Sequence) -> Rows:
        lengths = torch.tensor([len(ids) for ids in input_ids], dtype=torch.long)
        width = int(lengths.max()) if len(lengths) else 0
        mask = torch.arange(width) < lengths[:, None]
        ids = torch.zeros((len(lengths), width), dtype=torch.long)
        types = torch.zeros((len(lengths), width), dtype=torch.long)
        ids[mask] = torch.tensor([token for row in input_ids for token in row], dtype=torch.long)
        types[mask] = torch.tensor([token for row in token_type_ids for token in row], dtype=torch.long)
        return cls(ids, types, lengths, torch.tensor(list(labels)))

    def take(self, indices: Sequence[int]) -> Rows:
        index = torch.as_tensor(indices, dtype=torch.long)
        lengths = self.lengths[index]
        width = int(lengths.max()) if len(index) else 0
        return Rows(self.input_ids[index, :width], self.token_type_ids[index, :width], lengths, self.labels[index])


def tokenize(examples: Examples, tokenizer, max_length: int) -> TokenizedSplit:
    columns = list(zip(*examples.texts))
    encoded = tokenizer(*columns, truncation=True, max_length=max_length, padding=False)
    token_types = encoded.get("token_type_ids") or [[0] * len(ids) for ids in encoded["input_ids"]]
    return TokenizedSplit(encoded["input_ids"], token_types, examples.labels)


_TOKENIZER_KEYS: dict[int, str] = {}
_LOADED: dict[str, TokenizedSplit] = {}  # per process: a pipeline builds many datamodules


def _tokenizer_key(tokenizer) -> str:
    if id(tokenizer) not in _TOKENIZER_KEYS:
        vocab = sorted(tokenizer.get_vocab().items())[:: max(1, len(tokenizer) // 512)]  # a fingerprint
        _TOKENIZER_KEYS[id(tokenizer)] = f"{type(tokenizer).__name__}:{len(tokenizer)}:{vocab}:{tokenizer.model_max_length}"
    return _TOKENIZER_KEYS[id(tokenizer)]


def load_tokenized(
    task: GlueTask, split: str, tokenizer, max_length: int, glue_dir: str | None, cache_dir: str | Path | None
) -> TokenizedSplit:
    """A tokenised split, read from the cache when the same source and tokenizer were seen."""
    key = hashlib.sha1(
        f"{source_fingerprint(task, split, glue_dir)}|{_tokenizer_key(tokenizer)}|{max_length}".encode()
    ).hexdigest()[:16]
    if key in _LOADED:
        return _LOADED[key]
    cache_file = Path(cache_dir) / task.name / f"{split}-{key}.pt" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        try:
            data = torch.load(cache_file, weights_only=True)
            _LOADED[key] = TokenizedSplit(data["input_ids"], data["token_type_ids"], data["labels"])
            return _LOADED[key]
        except (RuntimeError, EOFError, KeyError, ValueError, OSError, pickle.UnpicklingError) as error:
            # a truncated or foreign file: tokenise again
            log.warning("ignoring unreadable tokenisation cache %s (%s)", cache_file, error)
    dataset = tokenize(read_split(task, split, glue_dir), tokenizer, max_length)
    _LOADED[key] = dataset
    if cache_file is not None:
        tensors = {"input_ids": dataset.input_ids, "token_type_ids": dataset.token_type_ids, "labels": dataset.labels}
        try:
            atomic_write(cache_file, lambda handle: torch.save(tensors, handle))
        except (OSError, RuntimeError) as error:  # read-only or full: the cache is only an optimisation
            log.debug("not caching %s: %s", cache_file, error)
    return dataset


def holdout_indices(num_train: int, size: int, seed: int) -> list[int]:
    """A seeded slice of the training set (sorted indices) held out of fine-tuning, to select
    masks on data the model never saw (`search.split=train_holdout`)."""
    return sorted(subset_indices(num_train, size, seed))


def subset_indices(num_train: int, size: int, seed: int) -> list[int]:
    """A seeded random slice of the training set, `size` long, in the drawn order.

    The authors' appendix ("masks from training data", src/find_head_mlp_masks.py
    --use_train_data) takes `random_split(train, [len(dev), rest])[0]` of the fine-tuned model's
    own training set and iterates it in that random order (`search.split=train_subset`); the order
    matters to the running importance estimator."""
    if size >= num_train:
        raise GlueDataError(f"a slice of {size} training examples (the size of dev) needs a larger training set "
                            f"than {num_train} examples")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_train, generator=generator)[:size].tolist()


class PadCollator:
    """Pads a batch to its longest sequence (or to `pad_to` for fixed-length comparisons).

    Takes the `Rows` that `TokenizedSplit.__getitems__` cuts out of the split, or a list of
    feature dicts (`dataset[i]`); either way the batch is padded with a few whole-tensor operations.
    """

    def __init__(self, pad_token_id: int, regression: bool, pad_to: int | None = None):
        self.pad_token_id = pad_token_id
        self.regression = regression
        self.pad_to = pad_to

    def __call__(self, batch: Rows | list[dict]) -> dict[str, torch.Tensor]:
        rows = batch if isinstance(batch, Rows) else Rows.from_lists(
            [f["input_ids"] for f in batch], [f["token_type_ids"] for f in batch], [f["labels"] for f in batch])
        longest = rows.input_ids.shape[1]
        width = self.pad_to or longest
        if width < longest:
            raise ValueError(f"a sequence of {longest} tokens does not fit pad_to={width}")
        attention_mask = (torch.arange(width) < rows.lengths[:, None]).long()
        input_ids = torch.full((len(rows.lengths), width), self.pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(rows.lengths), width), dtype=torch.long)
        token_type_ids[:, :longest] = rows.token_type_ids
        input_ids[:, :longest] = rows.input_ids
        input_ids.masked_fill_(attention_mask == 0, self.pad_token_id)
        labels = rows.labels.to(torch.float if self.regression else torch.long)
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
                "labels": labels}
