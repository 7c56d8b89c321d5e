"""Projected compute of a run's stages: FLOPs from parameters and tokens, time from a measured rate.

FLOPs follow the dense-transformer estimate that `bench.matrix_rate` uses for a GPU's use: a
training step costs about 6 x N x T (forward 2, backward 4) and an evaluation about 2 x N x T, for
N non-embedding parameters (`lottery.accounting`: everything but the embedding module) and T
non-padding tokens. `make bench` times the project's own fine-tune and evaluation, expresses them
in those FLOPs per second and saves the rates per device in bench/results/throughput.json
(`record_rate`); a plan divides each stage's FLOPs by the rate of the measured model closest in size
(`nearest_rate`). A projection counts the compute only: start-up, loading and tokenising are not in it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from torch import nn

from lottery.accounting import embedding_parameter_count
from lottery.cost import parameter_count
from lottery.errors import ConfigError
from lottery.io import write_json

FLOPS_PER_TOKEN = {"train": 6, "eval": 2}
THROUGHPUT_FORMAT = 1


def non_embedding_parameter_count(model: nn.Module) -> int:
    """All parameters but the embedding module's (works on a model built on the meta device)."""
    return parameter_count(model) - embedding_parameter_count(model)


def stage_flops(kind: str, params: int, tokens: float) -> float:
    """FLOPs of training (`kind` train: forward and backward) or evaluating (eval) `tokens` tokens."""
    return FLOPS_PER_TOKEN[kind] * params * tokens


def read_rates(path: str | Path) -> dict[str, list[dict]]:
    """The measured rates per device name ({} when `path` does not exist)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is not readable JSON ({error}); delete it and run make bench") from error
    if not isinstance(data, dict) or data.get("format") != THROUGHPUT_FORMAT or not isinstance(data.get("devices"), dict):
        raise ConfigError(f"{path} is not a throughput file of format {THROUGHPUT_FORMAT}; delete it and run make bench")
    return data["devices"]


def record_rate(path: str | Path, device: str, entry: dict) -> Path:
    """Add `entry` (model, params, precision, threads, train_flops_per_s, eval_flops_per_s, ...) to
    `device`'s rates in `path`, replacing an earlier one of the same model, precision and threads;
    written atomically, other devices' rates kept."""
    for key in ("model", "params", "precision", "train_flops_per_s", "eval_flops_per_s"):
        if key not in entry:
            raise ValueError(f"a throughput entry needs {key!r}")
    devices = read_rates(path)
    same = ("model", "precision", "threads")
    kept = [old for old in devices.get(device, []) if any(old.get(k) != entry.get(k) for k in same)]
    devices[device] = [*kept, entry]
    return write_json(path, {"format": THROUGHPUT_FORMAT, "devices": devices})


def nearest_rate(entries: list[dict], params: int, precision: str | None = None) -> dict | None:
    """The entry measured on the model closest to `params` parameters (by ratio), among those of
    `precision` when there are any."""
    matching = [e for e in entries if e.get("precision") == precision] or list(entries)
    if not matching:
        return None
    return min(matching, key=lambda e: abs(math.log(max(e["params"], 1) / max(params, 1))))


def format_flops(flops: float) -> str:
    return f"{flops:.2g} FLOPs".replace("e+", "e")


def format_seconds(seconds: float) -> str:
    """3.2 s, 4 min 05 s, 2 h 07 min."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
