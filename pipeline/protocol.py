"""The protocol (conf/protocol): which of the authors' procedural choices a run follows.

`protocol=paper` does every point as the authors' code does it, `protocol=clean` as the papers
define it; each key can also be flipped alone. A protocol key is a setting declared with
`protocol=<key>` (`pipeline.settings.setting`); a run records the preset it started from, the
value of each protocol key its settings have, and a label: the preset's name when every such key
has the preset's value, else "custom".
"""

from __future__ import annotations

from dataclasses import fields, replace
from functools import cache
from typing import Any

from omegaconf import OmegaConf

from lottery.schema import PROTOCOL_KEYS
from pipeline.config import conf_dir
from pipeline.settings import RunSettings, protocol_values
from pipeline.settings.declare import Concern, concern_type, meta


@cache
def presets() -> dict[str, dict[str, Any]]:
    """Every preset in conf/protocol: name -> {key: value}."""
    found = {}
    for path in sorted((conf_dir() / "protocol").glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(path))
        found[values.pop("name")] = values
    return found


def protocol_settings(settings_class: type[RunSettings]) -> dict[str, str]:
    """{protocol key: the config path of the setting that holds it} for a mode's settings class."""
    found = {}
    for item in fields(settings_class):
        kind = concern_type(settings_class, item)
        if kind is None:
            continue
        for inner in fields(kind):
            if meta(inner, "protocol"):
                found[meta(inner, "protocol")] = f"{meta(item, 'config') or item.name}.{meta(inner, 'config') or inner.name}"
    return found


def protocol_record(settings: RunSettings) -> dict[str, Any]:
    """{"name", "preset", "keys": {key: value}, "differs_from_preset": [keys]} of a run's protocol keys."""
    preset = settings.protocol
    found = protocol_values(settings)
    values = {key: found[key] for key in PROTOCOL_KEYS if key in found}
    reference = presets().get(preset, {})
    differs = sorted(key for key, value in values.items() if reference.get(key) != value)
    return {"name": "custom" if differs else preset, "preset": preset, "keys": values, "differs_from_preset": differs}


def with_protocol(settings: RunSettings, preset: str) -> RunSettings:
    """`settings` with every protocol key set to `preset`'s value (what `protocol=<preset>` does in a config)."""
    values = presets()[preset]
    changed = {}
    for item in fields(settings):
        concern = getattr(settings, item.name)
        if isinstance(concern, Concern):
            keys = {inner.name: values[meta(inner, "protocol")] for inner in fields(concern) if meta(inner, "protocol")}
            if keys:
                changed[item.name] = replace(concern, **keys)
    return replace(settings, protocol=preset, **changed)
