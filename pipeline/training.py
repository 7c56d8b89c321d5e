"""Trainers, data and models built from the run's settings, and the stages every experiment shares:
fine-tuning (resumable, exactly) and evaluation.

Trainer, loggers, callbacks and the data module are the classes their settings name (`_target_`,
from conf/trainer, conf/logger, conf/callbacks, conf/data); a stage adds only what is its own
(checkpointing, pruning callbacks, a log folder).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import get_object, instantiate

from callbacks.epoch_order import EpochOrder
from callbacks.exact_resume import ExactResume
from lightning_modules.glue_datamodule import GlueDataModule
from lightning_modules.glue_module import GlueModule
from lottery.errors import ConfigError
from lottery.io import atomic_directory
from lottery.models import load_classifier, minilm_path, tiny_model
from pipeline.checkpoints import AtomicCheckpointIO, StepCheckpoint, resume_from
from pipeline.identity import record_settings
from pipeline.run import Run, load_tokenizer, tokenizer_source
from pipeline.settings.concerns import ExecutionSettings
from pipeline.stages import is_launching_process, run_stage

log = logging.getLogger("lottery")


# ----- models -----
def pretrained_model(run: Run) -> torch.nn.Module:
    """The pre-trained model with a fresh task head; the head's init follows the run's seed.

    `model.random_init`: a tiny random model of `model.family` (default bert; conf/model/tiny.yaml)."""
    pl.seed_everything(run.seed, workers=True, verbose=False)
    model_settings = run.settings.model
    if model_settings.random_init:
        model = tiny_model(model_settings.family_name, num_labels=run.task.num_labels, seed=0)
    else:
        model = load_classifier(model_settings.name_or_path or minilm_path(), run.task.num_labels,
                                pad_token_id=run.tokenizer.pad_token_id)
    if run.task.id2label:  # the class names travel with every model saved from it (config.json)
        model.config.id2label = run.task.id2label
        model.config.label2id = {name: index for index, name in run.task.id2label.items()}
    return model


def load_finetuned(run: Run) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    folder = run.finetune_dir / "model"
    return AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32).eval()


# ----- data, trainers, logging -----
def datamodule(run: Run, **overrides) -> GlueDataModule:
    """The run's data module (conf/data); `overrides` e.g. train_on="selection" for a search."""
    data = run.settings.data
    return get_object(data.target)(task=run.task, tokenizer=run.tokenizer, seed=run.seed, selection=run.split,
                                   **{**data.module_arguments(), **overrides})


def make_trainer(run: Run, run_dir: Path, job_type: str, callbacks: list | None = None, **overrides) -> pl.Trainer:
    settings = run.settings
    no_tf32(settings.execution)
    loggers = [instantiate(logger, _partial_=True)(run_dir=run_dir, job_type=job_type, run=run)
               for logger in (settings.loggers or {}).values() if logger]
    shared = [instantiate(callback) for callback in (settings.callbacks or {}).values() if callback]
    arguments = settings.execution.trainer_arguments()
    arguments.setdefault("max_epochs", settings.recipe.max_epochs)
    arguments.setdefault("gradient_clip_val", settings.recipe.grad_clip)
    if not arguments.get("enable_progress_bar", True) or overrides.get("enable_progress_bar") is False:
        shared = [callback for callback in shared if not isinstance(callback, pl.callbacks.ProgressBar)]
    trainer = instantiate(arguments, _partial_=True)
    overrides.setdefault("plugins", [AtomicCheckpointIO()])  # a failed checkpoint write keeps the previous one
    return trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=[*shared, *(callbacks or [])], **overrides)


def no_tf32(execution: ExecutionSettings) -> None:
    """On a GPU, float32 matmuls and convolutions in full fp32, never TF32: a fp32 run computes as the
    authors' (protocol.precision=fp32), a bf16-mixed one keeps its fp32 ops exact. torch's defaults
    differ (matmul off, cuDNN on) and another library may have changed them; a CPU has no TF32."""
    if execution.on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def finish_wandb() -> None:
    """Close the active W&B run so the next stage or multirun job starts its own."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def stage(run_dir: Path, work: Callable[[Path], dict], *, force: bool = False, inputs: dict | None = None) -> dict:
    """`pipeline.stages.run_stage` with the W&B run of the stage closed afterwards."""
    return run_stage(run_dir, work, force=force, inputs=inputs, on_finish=finish_wandb)


# ----- fitting and scoring -----
def evaluate(run: Run, module: pl.LightningModule, run_dir: Path, job_type: str, split: str = "dev") -> dict:
    """Metrics of `module` over a whole split: every dev split, or the searches' `selection` split."""
    trainer = make_trainer(run, run_dir, job_type)
    data = datamodule(run, evaluate_on="selection" if split == "selection" else "dev")
    outputs = trainer.validate(module, datamodule=data, verbose=False)
    metrics: dict[str, float] = {}
    for output in outputs:
        metrics.update({key.removeprefix("val/").split("/dataloader_idx")[0]: float(v) for key, v in output.items()})
    return metrics


def recipe_module(run: Run, model: torch.nn.Module, **kwargs) -> GlueModule:
    recipe, speed = run.settings.recipe, run.settings.speed
    return GlueModule(model, run.task, lr=recipe.lr, adam_eps=recipe.adam_eps, weight_decay=recipe.weight_decay,
                      warmup_ratio=recipe.warmup_ratio, adamw=speed.adamw,
                      finite_check_every_n_steps=speed.finite_check_every_n_steps,
                      log_every_step=speed.log_every_step, **kwargs)


def resumable_fit(run: Run, run_dir: Path, module: GlueModule, job_type: str, callbacks: list | None = None,
                  data: GlueDataModule | None = None, **trainer_overrides) -> pl.Trainer:
    """`trainer.fit` that checkpoints every few steps and resumes from `run_dir/checkpoints/last.ckpt`
    exactly where it stopped (batch order, dropout RNG, optimizer, schedule: `ExactResume`); every
    epoch trains on its own seeded order (`EpochOrder`)."""
    checkpoints = run_dir / "checkpoints"
    checkpoint = StepCheckpoint(checkpoints, every_n_train_steps=run.settings.recipe.checkpoint_every_n_steps)
    trainer_overrides.setdefault("limit_val_batches", 0)
    trainer = make_trainer(run, run_dir, job_type, [*(callbacks or []), EpochOrder(), ExactResume(), checkpoint],
                           **trainer_overrides)
    last = resume_from(checkpoints / "last.ckpt")  # an unloadable one is set aside: start from scratch
    if last is not None:
        log.info("resuming %s from %s", job_type, last)
    pl.seed_everything(run.seed, workers=True, verbose=False)
    trainer.fit(module, datamodule=data or datamodule(run), ckpt_path=str(last) if last is not None else None)
    return trainer


def fit(run: Run, run_dir: Path, model: torch.nn.Module, save: Callable[[torch.nn.Module, Path], None],
        job_type: str, callbacks: list | None = None, accumulation: int = 1) -> dict:
    """Fine-tune `model` with the run's recipe (resumable), score it on dev, save it to `run_dir/model`.
    `accumulation` > 1: the same effective batch in `accumulation` microbatches, gradients accumulated
    (the loss of each divided by `accumulation`, clipped once before the step, as run_glue.py:263-285)."""
    module = recipe_module(run, model)
    extra = {}
    if accumulation > 1:
        batch = run.settings.data.batch_size
        if batch % accumulation:
            raise ConfigError(f"a batch of {batch} cannot be cut into {accumulation} equal microbatches for gradient "
                              "accumulation: choose a recipe.batch_size divisible by it, or accumulation 1")
        extra = {"data": datamodule(run, batch_size=batch // accumulation), "accumulate_grad_batches": accumulation}
    trainer = resumable_fit(run, run_dir, module, job_type, callbacks, **extra)
    metrics = evaluate(run, module, run_dir, f"{job_type}-eval")
    if is_launching_process() and trainer.is_global_zero:
        with atomic_directory(run_dir / "model") as folder:
            save(module.model, folder)
            # A freshly loaded tokenizer: the run's one carries the truncation state of its last
            # call into tokenizer.json, which would depend on whether the data came from the cache.
            load_tokenizer(tokenizer_source(run.settings.model)).save_pretrained(str(folder))
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return metrics


def save_plain(model: torch.nn.Module, folder: Path) -> None:
    model.save_pretrained(str(folder))


def finetune(run: Run, force: bool = False) -> dict:
    """The fine-tuned model of (model, task, seed) and its dev metrics, shared by every experiment."""

    def work(run_dir: Path) -> dict:
        record_settings(run_dir, run.finetune_identity)
        return fit(run, run_dir, pretrained_model(run), save_plain, "finetune")

    return stage(run.finetune_dir, work, force=force)
