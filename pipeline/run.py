"""One run: a (model, task, seed) taken through one experiment mode, and the folders it writes.

    <paths.root>/<model.id>/<task>/seed<seed>/
        finetune-<hash>/                 the fine-tuned model and its dev metrics (shared)
        <mode>[-<tags>]-<protocol>-<hash>/   the experiment's stages and results.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from omegaconf import DictConfig
from transformers import AutoTokenizer

from lottery.hub import fetching
from lottery.models import minilm_path
from lottery.tasks import GlueTask, get_task
from pipeline.config import check_config
from pipeline.identity import digest, finetune_settings, stage_folder, without_seed
from pipeline.modes import Mode, get_mode
from pipeline.protocol import protocol_record


@dataclass
class Run:
    """What every stage of one run needs, derived once from the config."""

    cfg: DictConfig
    task: GlueTask
    mode: Mode
    tokenizer: object = field(repr=False)

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def identity_dir(self) -> Path:
        return Path(self.cfg.paths.root) / str(self.cfg.model.id) / self.task.name / f"seed{self.seed}"

    @property
    def split(self) -> str:
        return str(self.cfg.search.split)

    @cached_property
    def finetune_settings(self) -> dict:
        return finetune_settings(self.cfg, self.task)

    @property
    def finetune_dir(self) -> Path:
        return stage_folder(self.identity_dir, "finetune", self.finetune_settings)

    @cached_property
    def protocol(self) -> dict:
        return protocol_record(self.cfg, self.mode.protocol_keys)

    @cached_property
    def settings(self) -> dict:
        """Everything that determines this experiment's results (hashed into its folder name)."""
        return {**self.finetune_settings, "mode": self.mode.name, self.mode.name: self.mode.settings(self.cfg)}

    @property
    def variant(self) -> str:
        """The readable part of the experiment's folder name: mode, its tags, the protocol label."""
        protocol = [self.protocol["name"]] if self.mode.protocol_keys else []
        return "-".join([self.mode.name, *self.mode.tags(self.cfg), *protocol])

    @property
    def group(self) -> str:
        """The hash shared by the seeds of this variant (what the report averages over)."""
        return digest(without_seed(self.settings))

    @property
    def experiment_dir(self) -> Path:
        return stage_folder(self.identity_dir, self.variant, self.settings)


def tokenizer_source(cfg: DictConfig) -> str | Path:
    return cfg.model.name_or_path or minilm_path()


def load_tokenizer(source: str | Path):
    """The model's tokenizer; one without a padding token (decoders) pads with its end-of-sequence
    token, which `lottery.models.load_classifier` then gives the model as its pad_token_id."""
    with fetching(source):  # a hub id the hub cannot give: one line at once, not minutes of retries
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def make_run(cfg: DictConfig) -> Run:
    """Check the settings and derive the run; nothing is written yet."""
    check_config(cfg)
    mode = get_mode(str(cfg.mode))
    mode.check(cfg)
    task = get_task(cfg.task.name)
    tokenizer = load_tokenizer(tokenizer_source(cfg))
    return Run(cfg=cfg, task=task, mode=mode, tokenizer=tokenizer)
