"""The settings every run shares, one frozen dataclass per concern (a config node), and `RunSettings`,
what a fine-tune run is made of; each experiment mode extends it with its own concerns
(`pipeline/modes/*.py`).

Each class is the one definition of its settings: the defaults (those of conf/), the checks (a wrong
value is one line naming the setting, before any work), the help text and the identity (see
`pipeline.settings.declare`). They are built from the composed config by
`pipeline.settings.from_config`, or directly from keyword arguments:

    RunSettings(model=ModelSettings(id="tiny", random_init=True), task="rte", seed=1)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from lottery.architectures import EMPTY_LAYER_BIASES
from lottery.errors import ConfigError
from lottery.importance import check_accumulation, get_criterion
from lottery.models import TINY_FAMILIES
from lottery.pass_rule import check_threshold
from lottery.samplers import BATCHINGS
from lottery.tickets import KINDS
from pipeline.config import PROJECT_ROOT, default_glue_dir
from pipeline.settings.declare import ALWAYS, NEVER, Concern, concern_fields, setting

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
SPLITS = ("dev", "train_holdout", "train_subset")
# 2: every epoch draws its own seeded order (1, before: every epoch repeated epoch 1's order), so
# no result trained under version 1 is ever reused.
EPOCH_ORDER_VERSION = 2
# The concerns that determine the fine-tuned model (the rest determine what an experiment does with it).
FINETUNE_CONCERNS = ("model", "recipe", "data", "execution")
# protocol.precision on a GPU -> Lightning's precision (a CPU always runs 32-true unless trainer.precision says)
GPU_PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}


SEED_LIMIT = 2**32  # numpy's seeds and Lightning's seed_everything take 0 <= seed < 2**32


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_integer(value: Any, name: str) -> None:
    if not is_integer(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ModelSettings(Concern):
    """Which pre-trained model (conf/model)."""

    id: str = setting(help="the model's output folder name (letters, digits, _ . -)", identity=NEVER,
                      missing="name the model for its output folder, e.g. model=custom "
                              "model.name_or_path=roberta-base model.id=roberta_base")
    name_or_path: str | None = setting(None, "a hub id or a local folder; None: the packaged MiniLM",
                                       identity=ALWAYS,
                                       missing="give a Hugging Face hub id (e.g. roberta-base) or a local model folder")
    random_init: bool = setting(False, "a tiny random model of `family` instead (tests, smoke runs)", identity=ALWAYS)
    family: str | None = setting(None, "the tiny random model's family (default bert)", identity=ALWAYS)
    hub_id: str | None = setting(None, "what a packaged model is on the hub (named in model cards)", identity=NEVER)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not re.fullmatch(r"[\w.-]+", self.id):
            raise ConfigError(f"model.id must be a folder-safe name (letters, digits, _ . -), got {self.id!r}")
        if self.random_init and self.family_name not in TINY_FAMILIES:
            raise ConfigError(f"model.family={self.family_name!r} is not a family with a tiny random model; choose one "
                              f"of {', '.join(TINY_FAMILIES)}")
        if self.name_or_path is None:
            return
        name = str(self.name_or_path)
        if Path(name).expanduser().is_dir():
            return
        looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep + os.sep in name
        if looks_like_path or not HUB_ID.match(name):
            raise ConfigError(f"model.name_or_path={name!r} is neither an existing folder nor a hub id like "
                              "'bert-base-uncased' or 'org/name': fix the path")

    @property
    def family_name(self) -> str:
        return str(self.family or "bert")

    def recorded(self) -> dict[str, Any]:
        """A random model's family is recorded unless it is BERT, so the tiny BERT's folders keep the
        hashes they had before other families existed."""
        model = {"name_or_path": self.name_or_path, "random_init": bool(self.random_init)}
        if model["random_init"] and self.family_name != "bert":
            model["family"] = self.family_name
        return model


@dataclass(frozen=True)
class RecipeSettings(Concern):
    """The fine-tuning recipe (conf/config.yaml: the paper's; model files may override it)."""

    lr: float = setting(2.0e-5, "peak learning rate (AdamW)", identity=ALWAYS)
    batch_size: int = setting(32, "training batch size", identity=ALWAYS)
    eval_batch_size: int = setting(64, "evaluation batch, also the importance passes' (the authors': 64)",
                                   identity=ALWAYS)
    max_epochs: int = setting(3, "training epochs", identity=ALWAYS)
    max_length: int = setting(128, "tokens per example at most", identity=ALWAYS)
    adam_eps: float = setting(1.0e-8, "AdamW epsilon", identity=ALWAYS)
    weight_decay: float = setting(0.0, "AdamW weight decay", identity=ALWAYS)
    warmup_ratio: float = setting(0.0, "share of the steps with a linear warm-up", identity=ALWAYS)
    grad_clip: float | None = setting(1.0, "gradient norm clipping (None: off)", identity=ALWAYS)
    checkpoint_every_n_steps: int = setting(200, "how much work a killed run can lose (resuming is exact either way)",
                                            identity=NEVER)

    def __post_init__(self) -> None:
        for key in ("batch_size", "eval_batch_size", "max_epochs", "max_length", "checkpoint_every_n_steps"):
            check_positive_integer(getattr(self, key), f"recipe.{key}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not self.lr > 0:
            raise ConfigError(f"recipe.lr must be a positive number, got {self.lr!r}")
        if not 0 <= float(self.warmup_ratio) < 1:
            raise ConfigError(f"recipe.warmup_ratio must lie in [0, 1), got {self.warmup_ratio!r}")


@dataclass(frozen=True)
class DataSettings(Concern):
    """The GLUE data (conf/data/glue.yaml): which examples, how they are batched. None: the recipe's value."""

    train_limit: int | None = setting(None, "the first N training examples only (debugging)", identity=ALWAYS)
    eval_limit: int | None = setting(None, "the first N dev examples only (debugging)", identity=ALWAYS)
    batching: str = setting("uniform", "uniform (the authors' RandomSampler, src/run_glue.py:154) | length_grouped "
                            "(less padding, faster; a speed setting); a new seeded order every epoch",
                            identity=ALWAYS, protocol="batching")
    pad_to: int | None = setting(None, "pad every batch to this length (benchmarks)", identity=ALWAYS)
    max_length: int | None = setting(None, "tokens per example (None: recipe.max_length)", identity=ALWAYS)
    batch_size: int | None = setting(None, "training batch (None: recipe.batch_size)", identity=ALWAYS)
    eval_batch_size: int | None = setting(None, "evaluation batch (None: recipe.eval_batch_size)", identity=ALWAYS)
    glue_dir: str | None = setting(help="the classic GLUE TSV folder; None: the Hugging Face hub (its content is "
                                        "hashed, not its place)", identity=NEVER,
                                   factory=lambda: os.environ.get("GLUE_DIR") or default_glue_dir())
    cache_dir: str | None = setting(None, "where tokenised splits are cached (None: paths.cache_dir)", identity=NEVER)
    num_workers: int = setting(0, "DataLoader workers", identity=NEVER)
    pin_memory: bool | str = setting("auto", "true | false | auto (= on a CUDA GPU): page-locked batches, copied to "
                                     "the GPU asynchronously; the same numbers", identity=NEVER)
    target: str = setting("lightning_modules.glue_datamodule.GlueDataModule", "the data module class",
                          identity=NEVER, config="_target_")

    def __post_init__(self) -> None:
        if self.pin_memory not in (True, False, "auto"):
            raise ConfigError(f"data.pin_memory must be true, false or auto, got {self.pin_memory!r}")
        if self.batching not in BATCHINGS:
            raise ConfigError(f"data.batching must be one of {BATCHINGS}, got {self.batching!r}")

    def module_arguments(self) -> dict[str, Any]:
        """Keyword arguments of the data module (everything but its class)."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name != "target"}


@dataclass(frozen=True)
class ExecutionSettings(Concern):
    """How the training runs (conf/trainer): what changes its result is recorded (a 2-process DDP
    fine-tune takes half the steps of twice the batch; a GPU's kernels do not round as the CPU's)."""

    accelerator: str = setting("cpu", "cpu | gpu | auto", identity=ALWAYS)
    devices: Any = setting(1, "devices per node (auto: every GPU here)", identity=ALWAYS)
    num_nodes: int = setting(1, "nodes", identity=ALWAYS)
    strategy: Any = setting(None, "a Lightning strategy: a name, or a {_target_: ...} config", identity=ALWAYS)
    precision: str | None = setting(None, "Lightning's precision (32-true | bf16-mixed | ...); null: from "
                                    "trainer.gpu_precision on a GPU, 32-true on a CPU. On a GPU it must agree with "
                                    "trainer.gpu_precision", identity=ALWAYS)
    gpu_precision: str = setting("fp32", "on a GPU: fp32 (the authors: full fp32, TF32 off) | bf16 (bf16-mixed); a CPU "
                                 "runs fp32 either way", identity=NEVER, protocol="precision")
    trainer: Mapping[str, Any] = setting(help="the other arguments of the Lightning Trainer, as given",
                                         identity=NEVER, config="*", factory=lambda: dict(TRAINER_DEFAULTS))

    def __post_init__(self) -> None:
        if self.gpu_precision not in GPU_PRECISIONS:
            raise ConfigError(f"protocol.precision (trainer.gpu_precision) must be one of {tuple(GPU_PRECISIONS)}, "
                              f"got {self.gpu_precision!r}")
        wanted = GPU_PRECISIONS[self.gpu_precision]
        if self.precision is not None and self.on_gpu and str(self.precision) != wanted:
            raise ConfigError(f"trainer.precision={self.precision} contradicts protocol.precision={self.gpu_precision} "
                              f"({wanted}) on a GPU: leave trainer.precision unset and choose protocol.precision "
                              f"({' | '.join(GPU_PRECISIONS)})")

    @property
    def on_gpu(self) -> bool:
        accelerator = str(self.accelerator)
        if accelerator == "auto":
            import torch

            return torch.cuda.is_available()
        return accelerator in ("gpu", "cuda")

    @property
    def lightning_precision(self) -> str:
        """The precision the Trainer runs at: trainer.precision if given, else protocol.precision's on a
        GPU (fp32 -> 32-true, bf16 -> bf16-mixed) and 32-true on a CPU."""
        if self.precision is not None:
            return str(self.precision)
        return GPU_PRECISIONS[self.gpu_precision] if self.on_gpu else "32-true"

    def numerics(self) -> dict[str, Any]:
        """What precision the fits run at, as results.json records it: the device kind, Lightning's
        precision and, on a GPU, whether TF32 is allowed (never: `pipeline.training.make_trainer`)."""
        return {"device": "gpu" if self.on_gpu else "cpu", "precision": self.lightning_precision,
                **({"tf32": False} if self.on_gpu else {})}

    @property
    def world_size(self) -> int:
        """How many processes train together: nodes x devices (`devices: auto` counts the GPUs here)."""
        devices = self.devices
        if devices in ("auto", -1, "-1"):
            import torch

            devices = torch.cuda.device_count() if str(self.accelerator) in ("gpu", "cuda", "auto") else 1
        count = len(devices) if isinstance(devices, (list, tuple)) else int(devices)
        return max(1, count) * int(self.num_nodes or 1)

    def recorded(self) -> dict[str, Any]:
        strategy = self.strategy
        target = strategy.get("_target_", "") if isinstance(strategy, Mapping) else str(strategy or "")
        size = self.world_size
        return {"accelerator": str(self.accelerator), "world_size": size,
                "strategy": target.rsplit(".", 1)[-1] if size > 1 else "single"}

    def trainer_arguments(self) -> dict[str, Any]:
        """Keyword arguments of the Trainer (with its `_target_`)."""
        typed = {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
                 "precision": self.lightning_precision,
                 **({"strategy": self.strategy} if self.strategy is not None else {})}
        return {"_target_": "pytorch_lightning.Trainer", **typed, **self.trainer}


# The other Trainer arguments of conf/trainer/cpu.yaml, the default (tests/test_settings.py keeps the two
# the same); max_epochs and gradient_clip_val follow the recipe unless given.
TRAINER_DEFAULTS = {"_target_": "pytorch_lightning.Trainer", "num_sanity_val_steps": 0, "log_every_n_steps": 10,
                    "use_distributed_sampler": False, "deterministic": True, "enable_progress_bar": True,
                    "enable_model_summary": False, "limit_train_batches": None}


ADAMW_IMPLEMENTATIONS = ("for_loop", "foreach", "fused")


@dataclass(frozen=True)
class SpeedSettings(Concern):
    """How fast a fit runs, not what it computes (conf/config.yaml `speed`). Each gives bit-identical
    weights on CPU for the same seed, except AdamW's implementation where it changes the numbers,
    which the fine-tune's identity records under `execution` (`adamw_identity`)."""

    adamw: str = setting("foreach", "torch's AdamW: for_loop | foreach (on CPU the same numbers as for_loop) | fused "
                         "(changes the last bits)", identity=NEVER)
    finite_check_every_n_steps: int = setting(50, "the training loss is checked for NaN/inf every N steps (and at "
                                              "checkpoints and epoch ends)", identity=NEVER)
    log_every_step: bool = setting(False, "Lightning's self.log every step (false: only at the steps the loggers "
                                   "write; the same metrics.csv)", identity=NEVER)

    def __post_init__(self) -> None:
        if self.adamw not in ADAMW_IMPLEMENTATIONS:
            raise ConfigError(f"speed.adamw must be one of {ADAMW_IMPLEMENTATIONS}, got {self.adamw!r}")
        check_positive_integer(self.finite_check_every_n_steps, "speed.finite_check_every_n_steps")

    def adamw_identity(self, accelerator: str) -> dict[str, str]:
        """AdamW's implementation where it changes the numbers: fused anywhere, for_loop off the CPU (on
        a CPU for_loop and foreach agree bit for bit). Recorded only then, so other folders keep their hashes."""
        if self.adamw == "fused" or (self.adamw == "for_loop" and str(accelerator) != "cpu"):
            return {"adamw": self.adamw}
        return {}


@dataclass(frozen=True)
class SelectionSettings(Concern):
    """Which data masks are selected on (the `search` node); a held-out slice is also left out of the
    fine-tune."""

    split: str = setting("dev", "dev (the paper) | train_holdout (a seeded slice of train held out of fine-tuning) | "
                         "train_subset (the authors' appendix: a seeded slice of the model's own train set)",
                         identity=ALWAYS, tag=3)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"search.split must be dev, train_holdout or train_subset, got {self.split!r}")


@dataclass(frozen=True)
class SearchSettings(SelectionSettings):
    """How every search selects masks (structured, magnitude, IMP)."""

    threshold: float = setting(0.9, "a mask passes while its score >= threshold x the full model's score",
                               identity=ALWAYS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", check_threshold(self.threshold))
        super().__post_init__()


@dataclass(frozen=True)
class ImportanceSettings(Concern):
    """The importance criterion of heads and MLPs (conf/importance, lottery/importance/)."""

    name: str = setting("michel", "michel (the paper) | taylor | weight_norm", identity=ALWAYS, tag=2)
    accumulate: str = setting("running", "running (the authors' code) | per_batch (Michel et al.); criteria "
                              "that need data only", identity=ALWAYS, protocol="accumulate")

    def __post_init__(self) -> None:
        if self.uses_data:
            check_accumulation(self.accumulate)

    @property
    def uses_data(self) -> bool:
        return get_criterion(self.name).uses_data

    def recorded(self) -> dict[str, Any]:
        return {"name": self.name, **({"accumulate": self.accumulate} if self.uses_data else {})}


@dataclass(frozen=True)
class TicketSettings(Concern):
    """Which tickets an experiment scores, and how."""

    kinds: tuple[str, ...] = setting(KINDS, "the tickets to draw and score", identity=NEVER)
    retrain: bool = setting(True, "re-fine-tune each ticket from the pre-trained weights", identity=NEVER)
    cost: bool = setting(True, "measure each ticket's parameters, FLOPs and latency against the full model",
                         identity=NEVER)
    retrain_processes: int | str = setting(1, "tickets retrained at once, each in its own process: 1 (one after "
                                           "the other) | K | auto (every ticket on a GPU; on a CPU one per 4 "
                                           "cores); the same files", identity=NEVER)

    def __post_init__(self) -> None:
        kinds = tuple(self.kinds)
        object.__setattr__(self, "kinds", kinds)
        if not kinds or any(kind not in KINDS for kind in kinds):
            raise ConfigError(f"tickets.kinds must be a non-empty list of {list(KINDS)}, got {list(kinds)}")
        if self.retrain_processes != "auto" and (not is_integer(self.retrain_processes) or self.retrain_processes < 1):
            raise ConfigError(f"tickets.retrain_processes must be a positive integer or auto, got {self.retrain_processes!r}")


@dataclass(frozen=True)
class HeadTicketSettings(TicketSettings):
    """Tickets that remove heads and whole MLPs (the structured and super modes)."""

    empty_layer_bias: str = setting("drop", "a layer with every head pruned: drop (the authors' prune_heads, "
                                    "src/model_bert.py:285-296: no attention output projection, so no bias) | "
                                    "keep (its bias, what masking computes); pruned, retrained and exported "
                                    "tickets alike", protocol="empty_layer_bias", unchanged="keep")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.empty_layer_bias not in EMPTY_LAYER_BIASES:
            raise ConfigError(f"tickets.empty_layer_bias must be one of {EMPTY_LAYER_BIASES}, "
                              f"got {self.empty_layer_bias!r}")


@dataclass(frozen=True)
class CostSettings(Concern):
    """What a ticket costs to run (tickets.cost): eval latency of the ticket as deployed against the full
    model, in the same process."""

    batch_sizes: tuple[int, ...] = setting((1, 64), "batch sizes timed", identity=NEVER)
    seq_len: int = setting(128, "tokens per example timed", identity=NEVER)
    min_run_time_s: float = setting(2.0, "timed seconds per model and batch size (torch.utils.benchmark's "
                                    "blocked_autorange: warm-up, synchronisation, blocks)", identity=NEVER)
    cpu: bool = setting(False, "also time on the CPU when the run trains on a GPU", identity=NEVER)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        if not self.batch_sizes or any(not is_integer(size) or size < 1 for size in self.batch_sizes):
            raise ConfigError(f"cost.batch_sizes must be positive integers, got {list(self.batch_sizes)}")
        check_positive_integer(self.seq_len, "cost.seq_len")
        if not isinstance(self.min_run_time_s, (int, float)) or not self.min_run_time_s > 0:
            raise ConfigError(f"cost.min_run_time_s must be a positive number of seconds, got {self.min_run_time_s!r}")


@dataclass(frozen=True)
class PathSettings(Concern):
    """Where outputs go (not part of any identity: a results folder can move)."""

    root: str = setting(str(PROJECT_ROOT / "outputs"), "every output of every run lives under here", identity=NEVER)
    cache_dir: str | None = setting(None, "tokenised splits (None: <root>/.cache/tokenized)", identity=NEVER)


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """A fine-tune run: one (model, task, seed) and how it trains. Each experiment mode's settings
    extend it with the concerns the mode reads."""

    model: ModelSettings
    task: str = setting(help="the task's name: a GLUE task (lottery/tasks.py) or a custom one's", identity=ALWAYS,
                        config="task.name")
    task_spec: Mapping[str, Any] = setting(help="the task node as given: a custom task's files, columns, labels and "
                                           "metric (conf/task/custom.yaml); its definition enters the identity",
                                           identity=NEVER, config="task", factory=dict)
    seed: int = setting(1337, "the run's seed", identity=ALWAYS)
    recipe: RecipeSettings = setting(factory=RecipeSettings)
    data: DataSettings = setting(factory=DataSettings)
    execution: ExecutionSettings = setting(factory=ExecutionSettings, config="trainer")
    speed: SpeedSettings = setting(factory=SpeedSettings)
    search: SelectionSettings = setting(factory=SelectionSettings)
    protocol: str = setting("paper", "the protocol preset (conf/protocol) its protocol keys default to",
                            identity=NEVER, config="protocol.name")
    paths: PathSettings = setting(factory=PathSettings)
    force: bool = setting(False, "redo this experiment's own stages instead of reusing finished results",
                          identity=NEVER)
    plan: bool = setting(False, "print the run's folder and each stage as reused or to run, then exit having "
                         "written nothing", identity=NEVER)
    loggers: Mapping[str, Any] = setting(help="Lightning loggers, {name: {_target_: ...}} (conf/logger)",
                                         identity=NEVER, config="logger",
                                         factory=lambda: {"csv": {"_target_": "pipeline.loggers.csv_logger"}})
    callbacks: Mapping[str, Any] = setting(help="callbacks every fit gets, {name: {_target_: ...}} (conf/callbacks)",
                                           identity=NEVER,
                                           factory=lambda: {"progress_bar": {"_target_": "callbacks.progress.progress_bar",
                                                                              "min_interval_s": 0.5}})

    def __post_init__(self) -> None:
        if not is_integer(self.seed):
            raise ConfigError(f"seed must be an integer (e.g. seed=1337), got {self.seed!r}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"seed must lie in 0 <= seed < 2**32 = {SEED_LIMIT} (what numpy and torch accept), "
                              f"got {self.seed}")
        if not self.task_spec:  # built in Python from a GLUE task's name
            object.__setattr__(self, "task_spec", {"name": self.task})
        paths = self.paths if self.paths.cache_dir else replace(self.paths, cache_dir=f"{self.paths.root}/.cache/tokenized")
        object.__setattr__(self, "paths", paths)
        recipe, data = self.recipe, self.data
        filled = {key: getattr(recipe, key) for key in ("max_length", "batch_size", "eval_batch_size")
                  if getattr(data, key) is None}
        if data.cache_dir is None:
            filled["cache_dir"] = paths.cache_dir
        if filled:
            object.__setattr__(self, "data", replace(data, **filled))

    # ----- identity -----
    def finetune_identity(self, files: Mapping[str, str], task_definition: Mapping[str, Any] | None = None
                          ) -> dict[str, Any]:
        """What determines the fine-tuned model and its dev metrics, as its folder records it; `files`:
        the content hash of every split it reads; `task_definition`: a custom task's (None for GLUE)."""
        identity = {
            "model": self.model.recorded(), "task": self.task,
            **({} if task_definition is None else {"task_definition": dict(task_definition)}),
            "seed": int(self.seed),
            "recipe": self.recipe.recorded(),
            "data": {**self.data.recorded(), "files": dict(files), "epoch_order": EPOCH_ORDER_VERSION},
            "holdout_excluded": self.search.split == "train_holdout", "precision": self.execution.lightning_precision,
            "execution": {**self.execution.recorded(), **self.speed.adamw_identity(self.execution.accelerator)},
        }
        for name in FINETUNE_CONCERNS:
            identity[name].update(getattr(self, name).changed())
        return identity

    def recorded(self) -> dict[str, Any]:
        """The mode's own settings that determine its results, as its folders record them (each mode
        overrides this; frozen: tests/test_folder_names.py)."""
        return {}

    def notes(self) -> dict[str, Any]:
        """What the experiment's settings.json records beside its identity (not hashed)."""
        return {}

    def experiment_identity(self) -> dict[str, Any]:
        """`recorded()` and, under each concern's name, its settings added since that differ from their default."""
        identity = self.recorded()
        for name, concern in concern_fields(self):
            changes = concern.changed()
            if name not in FINETUNE_CONCERNS and changes:
                identity.setdefault(name, {}).update(changes)
        return identity


@dataclass(frozen=True, kw_only=True)
class TicketRunSettings(RunSettings):
    """A run that draws tickets and scores them (structured, magnitude, IMP, super)."""

    search: SearchSettings = setting(factory=SearchSettings)
    tickets: TicketSettings = setting(factory=TicketSettings)
    cost: CostSettings = setting(factory=CostSettings)
