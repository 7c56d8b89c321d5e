"""Stages shared by every experiment: run folders, trainers, fine-tuning and evaluation.

Every stage writes into a deterministic folder under
`<paths.root>/<model.id>/<task>/seed<seed>/`, and a finished stage is marked by its
`metrics.json` (written last, atomically). Running the same command again reuses finished stages
and resumes an interrupted one from its last checkpoint; `force=true` redoes the experiment's own
stages. The fine-tune of (model, task, seed) is shared by the structured and magnitude
experiments, and a file lock keeps two concurrent jobs from training it twice.

Stages: `finetune/` (model + dev metrics), then for `experiment=structured`
`structured_<mode>/{search,pruned/<ticket>,retrained/<ticket>}` and `results.json`, and for
`experiment=magnitude` `magnitude_<schedule>/...` with the same results schema.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from transformers import AutoTokenizer

from lightning_modules.glue_datamodule import GlueDataModule
from lightning_modules.glue_module import GlueModule
from lottery.io import atomic_directory, file_lock, read_json, write_json
from lottery.models import load_classifier, minilm_path, tiny_bert
from lottery.pipeline.config import experiment_dir_name
from lottery.tasks import GlueTask, get_task

log = logging.getLogger("lottery")


@dataclass
class Run:
    """What every stage of one run needs, derived once from the config."""

    cfg: DictConfig
    task: GlueTask
    identity_dir: Path  # <root>/<model>/<task>/seed<seed>
    tokenizer: object

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def holdout(self) -> bool:
        return self.cfg.search.split == "train_holdout"

    def experiment_dir(self, stage: str) -> Path:
        pruning = self.cfg.pruning
        return self.identity_dir / experiment_dir_name(stage, pruning.mode, self.cfg.search.split,
                                                       pruning.get("schedule", "paper"))


def make_run(cfg: DictConfig) -> Run:
    if cfg.search.split not in ("dev", "train_holdout"):
        raise ValueError(f"search.split must be 'dev' or 'train_holdout', got {cfg.search.split!r}")
    task = get_task(cfg.task.name)
    identity = Path(cfg.paths.root) / str(cfg.model.id) / task.name / f"seed{cfg.seed}"
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source(cfg)))
    return Run(cfg=cfg, task=task, identity_dir=identity, tokenizer=tokenizer)


# ----- models -----
def tokenizer_source(cfg: DictConfig) -> str | Path:
    return cfg.model.name_or_path or minilm_path()


def pretrained_model(run: Run) -> torch.nn.Module:
    """The pre-trained encoder with a fresh task head; the head's init follows the run's seed."""
    pl.seed_everything(run.seed, workers=True, verbose=False)
    if run.cfg.model.random_init:
        return tiny_bert(num_labels=run.task.num_labels, seed=0)
    return load_classifier(run.cfg.model.name_or_path or minilm_path(), run.task.num_labels)


def load_finetuned(run: Run) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    folder = finetune_dir(run) / "model"
    return AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32).eval()


def finetune_dir(run: Run) -> Path:
    return run.identity_dir / experiment_dir_name("finetune", "", run.cfg.search.split)


# ----- data, trainers, logging -----
def datamodule(run: Run, **overrides) -> GlueDataModule:
    cfg = run.cfg
    args = {
        "task": run.task.name, "tokenizer": run.tokenizer, "glue_dir": cfg.data.glue_dir, "cache_dir": cfg.data.cache_dir,
        "max_length": cfg.recipe.max_length, "batch_size": cfg.recipe.batch_size,
        "eval_batch_size": cfg.recipe.eval_batch_size, "seed": run.seed, "group_by_length": cfg.data.group_by_length,
        "pad_to": cfg.data.pad_to, "num_workers": cfg.data.num_workers, "train_limit": cfg.data.train_limit,
        "eval_limit": cfg.data.eval_limit, "exclude_holdout": run.holdout,
    }
    args.update(overrides)
    return GlueDataModule(**args)


def make_trainer(run: Run, run_dir: Path, job_type: str, callbacks: list | None = None,
                 **overrides) -> pl.Trainer:
    kwargs = OmegaConf.to_container(run.cfg.trainer, resolve=True)
    kwargs.pop("_target_", None)
    if isinstance(kwargs.get("strategy"), dict):
        kwargs["strategy"] = instantiate(kwargs["strategy"])
    kwargs.update(overrides)
    loggers: list = [CSVLogger(save_dir=str(run_dir), name="logs", version=job_type)]
    wandb_cfg = run.cfg.logger.get("wandb")
    if wandb_cfg:
        from pytorch_lightning.loggers import WandbLogger

        mode = run.cfg.pruning.mode if run.cfg.stage != "finetune" else "finetune"
        loggers.append(WandbLogger(
            project=wandb_cfg.project, entity=wandb_cfg.entity, mode=wandb_cfg.mode,
            group=f"{run.cfg.model.id}-{run.task.name}-{mode}", name=f"seed{run.seed}-{job_type}",
            job_type=job_type, tags=list(wandb_cfg.tags), save_dir=str(Path(run.cfg.paths.root)),
            config=OmegaConf.to_container(run.cfg, resolve=True),
        ))
    return pl.Trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=callbacks or [], **kwargs)


def finish_wandb() -> None:
    """Close the active W&B run so the next stage or multirun job starts its own."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


# ----- stages -----
def is_launching_process() -> bool:
    """False in processes that a DDP launcher or srun started as ranks > 0."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("LOCAL_RANK", "RANK", "SLURM_PROCID"))


def _job_marker(run_dir: Path) -> Path:
    """Marks, for the ranks of one job, that its rank 0 took the stage and is running it."""
    job = "_".join(os.environ.get(name, "") for name in ("SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID")).strip("_")
    return run_dir / f".running-{job or 'local'}"


def _follow_rank_zero(run_dir: Path, done: Path) -> bool:
    """Ranks > 0 (started by srun or torchrun beside rank 0): wait for rank 0's decision.

    Returns True to run the stage (rank 0 is running it), False to reuse the finished result.
    Deciding alone could send this rank into a fit that its rank 0 never joins, while rank 0
    waits on another job's lock.
    """
    marker = _job_marker(run_dir)
    while True:
        if marker.exists():
            return True
        if done.is_file():
            return False
        time.sleep(1.0)


def run_stage(run_dir: Path, work: Callable[[Path], dict], *, force: bool = False) -> dict:
    """Run `work(run_dir)` unless `run_dir/metrics.json` says it already finished.

    The launching process (rank 0) decides under an exclusive lock, so two jobs that need the same
    stage (the fine-tune shared by the structured and magnitude runs) never both run it.
    """
    done = run_dir / "metrics.json"
    if not is_launching_process():
        if not _follow_rank_zero(run_dir, done):
            return read_json(done)
        return work(run_dir)
    with file_lock(run_dir / ".lock"):
        if done.is_file() and not force:
            log.info("reusing finished result %s (force=true redoes it)", done)
            return read_json(done)
        if force:
            done.unlink(missing_ok=True)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        marker = _job_marker(run_dir)
        marker.touch()
        try:
            metrics = work(run_dir)
        finally:
            marker.unlink(missing_ok=True)
            finish_wandb()
        write_json(done, metrics)
    return metrics


def evaluate(run: Run, module: GlueModule, run_dir: Path, job_type: str, split: str = "dev") -> dict:
    """Metrics of `module` over a whole split: every dev split, or the search's `selection` split
    (dev, or the train holdout with search.split=train_holdout)."""
    trainer = make_trainer(run, run_dir, job_type)
    if split == "selection" and run.holdout:
        data = datamodule(run, eval_split="holdout", exclude_holdout=False)
    else:
        data = datamodule(run)
    outputs = trainer.validate(module, datamodule=data, verbose=False)
    metrics: dict[str, float] = {}
    for output in outputs:
        metrics.update({key.removeprefix("val/").split("/dataloader_idx")[0]: float(v) for key, v in output.items()})
    return metrics


def recipe_module(run: Run, model: torch.nn.Module, **kwargs) -> GlueModule:
    recipe = run.cfg.recipe
    return GlueModule(model, run.task, lr=recipe.lr, adam_eps=recipe.adam_eps, weight_decay=recipe.weight_decay,
                      warmup_ratio=recipe.warmup_ratio, **kwargs)


def resumable_fit(run: Run, run_dir: Path, module: GlueModule, job_type: str, callbacks: list | None = None,
                  data: GlueDataModule | None = None, **trainer_overrides) -> pl.Trainer:
    """`trainer.fit` that checkpoints every few steps and resumes from `run_dir/checkpoints/last.ckpt`."""
    checkpoints = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=str(checkpoints), save_last=True, save_top_k=0,
                                 every_n_train_steps=int(run.cfg.recipe.checkpoint_every_n_steps))
    trainer_overrides.setdefault("limit_val_batches", 0)
    trainer = make_trainer(run, run_dir, job_type, [*(callbacks or []), checkpoint], **trainer_overrides)
    last = checkpoints / "last.ckpt"
    if last.is_file():
        log.info("resuming %s from %s", job_type, last)
    pl.seed_everything(run.seed, workers=True, verbose=False)
    trainer.fit(module, datamodule=data or datamodule(run), ckpt_path=str(last) if last.is_file() else None)
    return trainer


def fit(run: Run, run_dir: Path, model: torch.nn.Module, save: Callable[[torch.nn.Module, Path], None],
        job_type: str, callbacks: list | None = None) -> dict:
    """Fine-tune `model` with the run's recipe (resumable), score it on dev, save it to `run_dir/model`."""
    module = recipe_module(run, model)
    trainer = resumable_fit(run, run_dir, module, job_type, callbacks)
    checkpoints = run_dir / "checkpoints"
    metrics = evaluate(run, module, run_dir, f"{job_type}-eval")
    if is_launching_process() and trainer.is_global_zero:
        with atomic_directory(run_dir / "model") as folder:
            save(module.model, folder)
            run.tokenizer.save_pretrained(str(folder))
        shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics


def save_plain(model: torch.nn.Module, folder: Path) -> None:
    model.save_pretrained(str(folder))


def finetune(run: Run) -> dict:
    def work(run_dir: Path) -> dict:
        return fit(run, run_dir, pretrained_model(run), save_plain, "finetune")

    force = bool(run.cfg.force) and run.cfg.stage == "finetune"
    return run_stage(finetune_dir(run), work, force=force)
