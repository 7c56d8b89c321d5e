"""The typed settings of a run, built from the config Hydra composed: the one place that reads it.

Each field of the mode's settings class (`Mode.settings`) is read from the node of the same name
(or the one its `config` metadata names); a concern's fields from that node's keys. A key the node
does not set takes the field's default, or for a protocol key the protocol preset's value; a key
left `???` is one line naming it. Lists become tuples and nodes plain dicts, so the settings hold
no OmegaConf objects.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from lottery.errors import ConfigError
from pipeline.settings.concerns import RunSettings
from pipeline.settings.declare import concern_type, meta


def plain(value: Any) -> Any:
    if isinstance(value, ListConfig):
        return tuple(plain(item) for item in value)
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


_ABSENT = object()


def _lookup(cfg: DictConfig, path: str, missing: str | None) -> Any:
    """The plain value at `path`, or _ABSENT; a value left `???` is a ConfigError naming it."""
    try:
        value = OmegaConf.select(cfg, path, default=_ABSENT, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(f"{path} is missing" + (f": {missing}" if missing else "")) from None
    return value if value is _ABSENT else plain(value)


def _concern(kind: type, cfg: DictConfig, path: str) -> Any:
    node = OmegaConf.select(cfg, path)
    if node is None:
        return kind()
    values, named = {}, set()
    for item in fields(kind):
        key = meta(item, "config") or item.name
        if key == "*":
            continue
        named.add(key)
        value = _lookup(cfg, f"{path}.{key}", meta(item, "missing"))
        protocol = meta(item, "protocol")
        if value is _ABSENT and protocol is not None:
            value = _lookup(cfg, f"protocol.{protocol}", None)
        if value is not _ABSENT:
            values[item.name] = value
    for item in fields(kind):
        if meta(item, "config") == "*":
            values[item.name] = {key: plain(node[key]) for key in node if key not in named}
    return kind(**values)


def settings_from_config(cfg: DictConfig, settings_class: type[RunSettings]) -> RunSettings:
    """`settings_class` (a mode's settings) from the composed config; raises ConfigError on a bad value."""
    values = {}
    for item in fields(settings_class):
        path = meta(item, "config") or item.name
        kind = concern_type(settings_class, item)
        value = _concern(kind, cfg, path) if kind is not None else _lookup(cfg, path, meta(item, "missing"))
        if value is not _ABSENT:
            values[item.name] = value
    return settings_class(**values)
