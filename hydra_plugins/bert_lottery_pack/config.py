"""The launchers' settings, registered in Hydra's ConfigStore (imported when Hydra scans plugins).

`conf/hydra/launcher/pack.yaml` and `slurm_pack.yaml` extend these with the project's defaults
(the number of experiments per GPU comes from a measurement, cited there).
"""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from omegaconf import MISSING


@dataclass
class PackSettings:
    # experiments at once on each GPU (an integer), or `auto`: the best K of a saved packing
    # measurement of this GPU model (bench/results/packing.json, written by `python -m bench.packing`)
    jobs_per_device: Any = MISSING
    # the GPUs to use: `auto` (the visible ones: CUDA_VISIBLE_DEVICES, else nvidia-smi), a list of
    # ids (indices or UUIDs), or [] (none: run on the CPU even where GPUs are)
    gpus: Any = "auto"
    # without GPUs: experiments at once on this machine's CPUs (null: one per CPU, each one thread)
    cpu_jobs: int | None = None
    # CUDA MPS, so that the packed jobs' kernels run side by side: auto (start it when more than one
    # job shares a GPU, run without it if it cannot start), true (it must start), false (never)
    mps: Any = "auto"


@dataclass
class PackLauncherConf(PackSettings):
    _target_: str = "hydra_plugins.bert_lottery_pack.pack_launcher.PackLauncher"


@dataclass
class SlurmPackLauncherConf(PackSettings, SlurmQueueConf):
    _target_: str = "hydra_plugins.bert_lottery_pack.slurm_pack_launcher.SlurmPackLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="pack_base", node=PackLauncherConf,
                             provider="bert_lottery_pack")
ConfigStore.instance().store(group="hydra/launcher", name="slurm_pack_base", node=SlurmPackLauncherConf,
                             provider="bert_lottery_pack")
