"""`hydra/launcher=pack`: a sweep's jobs, K at a time on each GPU of this machine (see _core)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class PackLauncher(Launcher):
    def __init__(self, **settings: Any) -> None:
        self.settings = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                         for key, value in settings.items()}
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.bert_lottery_pack import _core  # lazy: plugin discovery stays fast

        return _core.launch(self, job_overrides, initial_job_idx)
