"""One run: a (model, task, seed) taken through one experiment mode, and the folders it writes.

    <paths.root>/<model.id>/<task>/seed<seed>/
        finetune-<hash>/                 the fine-tuned model and its dev metrics (shared)
        <mode>[-<tags>]-<protocol>-<hash>/   the experiment's stages and results.json
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from omegaconf import DictConfig
from transformers import AutoTokenizer

from lottery.hub import fetching
from lottery.models import minilm_path
from lottery.tasks import Task, task_from_settings
from pipeline.identity import digest, finetune_identity, stage_folder, without_seed
from pipeline.modes import Mode, get_mode, mode_of
from pipeline.protocol import protocol_record
from pipeline.settings import ModelSettings, RunSettings, protocol_values, tags
from pipeline.settings.from_config import settings_from_config


@dataclass
class Run:
    """What every stage of one run needs, derived once from its settings."""

    settings: RunSettings
    task: Task
    mode: Mode

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def identity_dir(self) -> Path:
        return Path(self.settings.paths.root) / self.settings.model.id / self.task.name / f"seed{self.seed}"

    @property
    def split(self) -> str:
        return self.settings.search.split

    @cached_property
    def tokenizer(self):
        return load_tokenizer(tokenizer_source(self.settings.model))

    @cached_property
    def finetune_identity(self) -> dict:
        return finetune_identity(self.settings, self.task)

    @property
    def finetune_dir(self) -> Path:
        return stage_folder(self.identity_dir, "finetune", self.finetune_identity)

    @cached_property
    def protocol(self) -> dict:
        return protocol_record(self.settings)

    @cached_property
    def identity(self) -> dict:
        """Everything that determines this experiment's results (hashed into its folder name)."""
        return {**self.finetune_identity, "mode": self.mode.name, self.mode.name: self.settings.experiment_identity()}

    @property
    def recorded_settings(self) -> dict:
        """What the experiment folder's settings.json holds: its identity and the mode's notes."""
        return {**self.identity, **self.settings.notes()}

    @property
    def variant(self) -> str:
        """The readable part of the experiment's folder name: mode, its tags, the protocol label."""
        protocol = [self.protocol["name"]] if protocol_values(self.settings) else []
        return "-".join([self.mode.name, *tags(self.settings), *protocol])

    @property
    def group(self) -> str:
        """The hash shared by the seeds of this variant (what the report averages over)."""
        return digest(without_seed(self.identity))

    @property
    def experiment_dir(self) -> Path:
        return stage_folder(self.identity_dir, self.variant, self.identity)


def tokenizer_source(model: ModelSettings) -> str | Path:
    return model.name_or_path or minilm_path()


def load_tokenizer(source: str | Path):
    """The model's tokenizer; one without a padding token (decoders) pads with its end-of-sequence
    token, which `lottery.models.load_classifier` then gives the model as its pad_token_id."""
    with fetching(source):  # a hub id the hub cannot give: one line at once, not minutes of retries
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def run_of(settings: RunSettings) -> Run:
    """The run of typed settings (built in Python, or from a config); nothing is written yet."""
    return Run(settings=settings, task=task_from_settings(settings.task_spec),
               mode=mode_of(settings))


def make_run(cfg: DictConfig) -> Run:
    """Check the composed config's settings and derive the run; nothing is written yet."""
    return run_of(settings_from_config(cfg, get_mode(str(cfg.mode)).settings))
