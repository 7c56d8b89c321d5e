"""GLUE splits as Lightning dataloaders: dynamic padding, length-grouped training batches."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from lottery.features import (
    PadCollator,
    TokenizedSplit,
    holdout_indices,
    load_tokenized,
)
from lottery.samplers import LengthGroupedBatchSampler, ShardedSequentialBatchSampler
from lottery.tasks import get_task

TRAIN_SPLITS = ("train", "dev", "holdout")


class GlueDataModule(pl.LightningDataModule):
    """Train and dev dataloaders of one GLUE task.

    `train_split` is what the training loop iterates: `train` for fine-tuning, or the selection
    split of a mask search (`dev` as in the paper, or `holdout`: a seeded slice of train the size
    of dev). With `exclude_holdout`, fine-tuning leaves that slice out so masks selected on it are
    selected on unseen data. `train_order=sequential` iterates in order (the search's batches).
    """

    def __init__(self, task: str, tokenizer, glue_dir: str | None, cache_dir: str | None = None,
                 max_length: int = 128, batch_size: int = 32, eval_batch_size: int = 64, seed: int = 1337,
                 group_by_length: bool = True, pad_to: int | None = None, train_split: str = "train",
                 train_order: str = "grouped", exclude_holdout: bool = False, holdout_seed: int | None = None,
                 num_workers: int = 0, train_limit: int | None = None, eval_limit: int | None = None,
                 eval_split: str = "dev"):
        super().__init__()
        if eval_split not in ("dev", "holdout"):
            raise ValueError(f"eval_split must be 'dev' or 'holdout', got {eval_split!r}")
        if train_split not in TRAIN_SPLITS:
            raise ValueError(f"train_split must be one of {TRAIN_SPLITS}, got {train_split!r}")
        if train_order not in ("grouped", "sequential"):
            raise ValueError(f"train_order must be 'grouped' or 'sequential', got {train_order!r}")
        self.task = get_task(task)
        self.tokenizer = tokenizer
        self.glue_dir = glue_dir
        self.cache_dir = str(cache_dir) if cache_dir else None
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.pad_to = pad_to
        self.train_split = train_split
        self.eval_split = eval_split
        self.train_order = train_order
        self.exclude_holdout = exclude_holdout
        self.holdout_seed = seed if holdout_seed is None else holdout_seed
        self.num_workers = num_workers
        self.train_limit = train_limit
        self.eval_limit = eval_limit
        self.splits: dict[str, TokenizedSplit] = {}

    def _load(self, split: str) -> TokenizedSplit:
        return load_tokenized(self.task, split, self.tokenizer, self.max_length, self.glue_dir, self.cache_dir)

    def _limited(self, dataset: TokenizedSplit, limit: int | None) -> TokenizedSplit:
        return dataset if not limit or limit >= len(dataset) else dataset.subset(range(limit))

    def prepare_data(self) -> None:
        """Tokenise once (on rank 0 under DDP) so the cache is warm for every rank."""
        for split in ("train", *self.task.eval_splits):
            if split == "train" and self.train_split == "dev":
                continue
            self._load(split)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        dev = {name: self._limited(self._load(name), self.eval_limit) for name in self.task.eval_splits}
        self.splits.update(dev)
        first_dev = dev[self.task.eval_splits[0]]
        if self.train_split == "dev":
            self.splits["selection"] = first_dev
            return
        train = self._load("train")
        holdout = holdout_indices(len(train), len(first_dev), self.holdout_seed)
        self.splits["holdout"] = train.subset(holdout)
        if self.train_split == "holdout":
            self.splits["selection"] = self.splits["holdout"]
            return
        if self.exclude_holdout:
            held = set(holdout)
            train = train.subset([i for i in range(len(train)) if i not in held])
        self.splits["train"] = self._limited(train, self.train_limit)

    @property
    def train_dataset(self) -> TokenizedSplit:
        self.setup()
        return self.splits["train" if self.train_split == "train" else "selection"]

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _collator(self) -> PadCollator:
        return PadCollator(self.tokenizer.pad_token_id or 0, self.task.is_regression, self.pad_to)

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset
        rank, world = self._rank_world()
        if self.train_order == "sequential":
            sampler = ShardedSequentialBatchSampler(len(dataset), self.eval_batch_size, rank=rank, world_size=world,
                                                    equal_steps=True)
        else:
            sampler = LengthGroupedBatchSampler(dataset.lengths, self.batch_size, self.seed, rank=rank,
                                                world_size=world, group_by_length=self.group_by_length)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=self._collator(), num_workers=self.num_workers)

    def val_dataloader(self) -> list[DataLoader]:
        """Every dev split (MNLI: matched, mismatched), or only the train holdout (`eval_split=holdout`)."""
        self.setup()
        rank, world = self._rank_world()
        names = self.task.eval_splits if self.eval_split == "dev" else ("holdout",)
        return [
            DataLoader(self.splits[name], collate_fn=self._collator(), num_workers=self.num_workers,
                       batch_sampler=ShardedSequentialBatchSampler(len(self.splits[name]), self.eval_batch_size,
                                                                   rank=rank, world_size=world))
            for name in names
        ]

    def labels_of(self, split: str) -> list:
        self.setup()
        return list(self.splits[split].labels)

