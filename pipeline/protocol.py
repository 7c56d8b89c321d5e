"""The protocol (conf/protocol): which of the authors' procedural choices a run follows.

`protocol=paper` does every point as the authors' code does it, `protocol=clean` as the papers
define it; each key can also be flipped alone. A run records the preset it started from, the
effective value of each key its mode uses, and a label: the preset's name when every such key
has the preset's value, else "custom".
"""

from __future__ import annotations

from functools import cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.config import conf_dir

# protocol key -> where a run reads it (its own key, overridable on its own)
KEY_PATHS = {
    "accumulate": "importance.accumulate",
    "phase_change": "search.phase_change",
    "sampling": "tickets.sampling",
    "magnitude_exit": "magnitude.exit_mask",
}


@cache
def presets() -> dict[str, dict[str, Any]]:
    """Every preset in conf/protocol: name -> {key: value}."""
    found = {}
    for path in sorted((conf_dir() / "protocol").glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(path))
        found[values.pop("name")] = values
    return found


def effective_keys(cfg: DictConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    """The value each of `keys` has in this run (the key's own setting, which defaults to the protocol's)."""
    return {key: OmegaConf.select(cfg, KEY_PATHS[key], default=cfg.protocol[key]) for key in keys}


def protocol_record(cfg: DictConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    preset = str(cfg.protocol.name)
    values = effective_keys(cfg, keys)
    reference = presets().get(preset, {})
    differs = sorted(key for key, value in values.items() if reference.get(key) != value)
    return {"name": "custom" if differs else preset, "preset": preset, "keys": values, "differs_from_preset": differs}
