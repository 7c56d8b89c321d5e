"""GLUE splits as Lightning dataloaders: dynamic padding, a seeded training order per epoch
(uniform or length-grouped), and the selection split that masks are chosen on."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from lottery.errors import ConfigError
from lottery.features import (
    PadCollator,
    TokenizedSplit,
    holdout_indices,
    load_tokenized,
    subset_indices,
)
from lottery.samplers import BATCHINGS, EpochBatchSampler, ShardedSequentialBatchSampler
from lottery.tasks import Task, get_task

SELECTIONS = ("dev", "train_holdout", "train_subset")


class GlueDataModule(pl.LightningDataModule):
    """Train and dev dataloaders of one task: a GLUE task (by name) or any `lottery.tasks.Task`.

    `selection` is the split masks are selected on: `dev` (the paper), `train_holdout` (a seeded
    slice of train the size of dev, left out of fine-tuning, so masks are selected on unseen data)
    or `train_subset` (the authors' appendix: a seeded slice of the model's own training set, in
    the drawn order). `train_on="selection"` makes the training loop iterate the selection split in
    order (a search's importance pass); `evaluate_on="selection"` scores on it instead of on dev.
    """

    def __init__(self, task: str | Task, tokenizer, glue_dir: str | None, cache_dir: str | None = None,
                 max_length: int = 128, batch_size: int = 32, eval_batch_size: int = 64, seed: int = 1337,
                 batching: str = "length_grouped", pad_to: int | None = None, num_workers: int = 0,
                 train_limit: int | None = None, eval_limit: int | None = None, selection: str = "dev",
                 train_on: str = "train", evaluate_on: str = "dev"):
        super().__init__()
        if selection not in SELECTIONS:
            raise ConfigError(f"search.split must be one of {SELECTIONS}, got {selection!r}")
        if batching not in BATCHINGS:
            raise ConfigError(f"data.batching must be one of {BATCHINGS}, got {batching!r}")
        if train_on not in ("train", "selection") or evaluate_on not in ("dev", "selection"):
            raise ValueError(f"train_on must be train|selection and evaluate_on dev|selection, "
                             f"got {train_on!r}, {evaluate_on!r}")
        self.task = get_task(task) if isinstance(task, str) else task
        self.tokenizer = tokenizer
        self.glue_dir = glue_dir
        self.cache_dir = str(cache_dir) if cache_dir else None
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.batching = batching
        self.pad_to = pad_to
        self.num_workers = num_workers
        self.train_limit = train_limit
        self.eval_limit = eval_limit
        self.selection = selection
        self.train_on = train_on
        self.evaluate_on = evaluate_on
        self.splits: dict[str, TokenizedSplit] = {}
        self._resume: tuple[int, int] | None = None
        self._epoch = 0
        self._train_sampler: EpochBatchSampler | None = None

    def _load(self, split: str) -> TokenizedSplit:
        return load_tokenized(self.task, split, self.tokenizer, self.max_length, self.glue_dir, self.cache_dir)

    def _limited(self, dataset: TokenizedSplit, limit: int | None) -> TokenizedSplit:
        return dataset if not limit or limit >= len(dataset) else dataset.subset(range(limit))

    def _needs_train(self) -> bool:
        return self.train_on == "train" or self.selection != "dev"

    def prepare_data(self) -> None:
        """Tokenise once (on rank 0 under DDP) so the cache is warm for every rank."""
        for split in (("train",) if self._needs_train() else ()) + self.task.eval_splits:
            self._load(split)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        dev = {name: self._limited(self._load(name), self.eval_limit) for name in self.task.eval_splits}
        self.splits.update(dev)
        first_dev = dev[self.task.eval_splits[0]]
        if self.selection == "dev":
            self.splits["selection"] = first_dev
        if not self._needs_train():
            return
        train = self._load("train")
        if self.selection == "train_holdout":
            held = holdout_indices(len(train), len(first_dev), self.seed)
            self.splits["selection"] = train.subset(held)
            held_set = set(held)
            train = train.subset([i for i in range(len(train)) if i not in held_set])
        elif self.selection == "train_subset":
            self.splits["selection"] = train.subset(subset_indices(len(train), len(first_dev), self.seed))
        self.splits["train"] = self._limited(train, self.train_limit)

    @property
    def train_dataset(self) -> TokenizedSplit:
        self.setup()
        return self.splits[self.train_on]

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """The next training dataloader continues `epoch` after `batches_done` batches (exact resume)."""
        self._resume = (epoch, batches_done)
        self._epoch = epoch
        if self._train_sampler is not None:
            self._train_sampler.resume_at(epoch, batches_done)
            self._resume = None

    def set_epoch(self, epoch: int) -> None:
        """The training order of `epoch` from its next batch on (`callbacks.epoch_order.EpochOrder`
        calls this at every epoch start)."""
        self._epoch = epoch
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(epoch)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _collator(self) -> PadCollator:
        return PadCollator(self.tokenizer.pad_token_id or 0, self.task.is_regression, self.pad_to)

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset
        rank, world = self._rank_world()
        if self.train_on == "selection":
            sampler = ShardedSequentialBatchSampler(len(dataset), self.eval_batch_size, rank=rank, world_size=world,
                                                    equal_steps=True)
        else:
            sampler = EpochBatchSampler(dataset.lengths, self.batch_size, self.seed, batching=self.batching,
                                        rank=rank, world_size=world)
            sampler.set_epoch(self._epoch)
            if self._resume is not None:
                sampler.resume_at(*self._resume)
                self._resume = None
            self._train_sampler = sampler
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=self._collator(), num_workers=self.num_workers)

    def num_selection_batches(self) -> int:
        """Batches in one pass over the selection split (all ranks together)."""
        return -(-len(self.train_dataset) // self.eval_batch_size)

    def val_dataloader(self) -> list[DataLoader]:
        """Every dev split (MNLI: matched, mismatched), or only the selection split."""
        self.setup()
        rank, world = self._rank_world()
        names = self.task.eval_splits if self.evaluate_on == "dev" else ("selection",)
        return [
            DataLoader(self.splits[name], collate_fn=self._collator(), num_workers=self.num_workers,
                       batch_sampler=ShardedSequentialBatchSampler(len(self.splits[name]), self.eval_batch_size,
                                                                   rank=rank, world_size=world))
            for name in names
        ]

    def labels_of(self, split: str) -> list:
        self.setup()
        return list(self.splits[split].labels)
