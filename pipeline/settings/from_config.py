"""The typed settings of a run, built from the config Hydra composed: the one place that reads it.

Each field of the mode's settings class (`Mode.settings`) is read from the node of the same name
(or the one its `config` metadata names); a concern's fields from that node's keys. A key the node
does not set takes the field's default, or for a protocol key the protocol preset's value; a key
left `???` is one line naming it. Lists become tuples and nodes plain dicts, so the settings hold
no OmegaConf objects.

Every key of the config must be read by some mode's settings (`check_every_key_is_read`): a key
added with `+` that nothing reads (`+recipe.learning_rate=1e-5`) would change nothing, so it is one
line naming it and the setting it most likely meant, before anything is hashed or written.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
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


# Keys read outside the settings: the mode (which settings class: pipeline.run.make_run), what conf/
# itself reads (through interpolations), and Hydra's own node.
CONFIG_ONLY_KEYS = ("mode", "paths.project_root", "hydra")


def read_keys(settings_class: type) -> dict[str, str]:
    """{config path: help} of every key `settings_class` reads; a node read whole (a concern's "*"
    field, a dict setting such as `task` or `logger`) is its path: every key under it is read."""
    keys = {}
    for item in fields(settings_class):
        path = meta(item, "config") or item.name
        kind = concern_type(settings_class, item)
        if kind is None:
            keys[path] = meta(item, "help") or ""
            continue
        for sub in fields(kind):
            key = meta(sub, "config") or sub.name
            keys[path if key == "*" else f"{path}.{key}"] = meta(sub, "help") or ""
            if meta(sub, "protocol"):
                keys[f"protocol.{meta(sub, 'protocol')}"] = meta(sub, "help") or ""
    return keys


def _leaves(node: DictConfig, prefix: str = "") -> Iterable[str]:
    for key in node:
        child = node._get_node(key)
        path = f"{prefix}{key}"
        if isinstance(child, DictConfig) and len(child) > 0:
            yield from _leaves(child, path + ".")
        else:
            yield path


def closest_key(key: str, known: dict[str, str]) -> str | None:
    """The read key `key` most likely meant: one of its node whose help names it in words
    (`recipe.learning_rate` -> `recipe.lr`, "peak learning rate"), else the closest spelling."""
    node, _, name = key.rpartition(".")
    words = name.replace("_", " ").lower()
    for path, help_text in known.items():
        if path.rpartition(".")[0] == node and words in help_text.lower():
            return path
    matches = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def check_every_key_is_read(cfg: DictConfig, settings_classes: Iterable[type]) -> None:
    """A ConfigError naming the first key of `cfg` that none of `settings_classes` reads."""
    known: dict[str, str] = {key: "" for key in CONFIG_ONLY_KEYS}
    for settings_class in settings_classes:
        known.update(read_keys(settings_class))
    for path in _leaves(cfg):
        if any(path == key or path.startswith(key + ".") for key in known):
            continue
        match = closest_key(path, known)
        hint = f"; did you mean {match}?" if match else ""
        raise ConfigError(f"{path} is not a setting: nothing reads it, so it would change nothing{hint} "
                          f"(pipeline/settings/concerns.py and pipeline/modes/ declare every setting)")


def settings_from_config(cfg: DictConfig, settings_class: type[RunSettings]) -> RunSettings:
    """`settings_class` (a mode's settings) from the composed config; raises ConfigError on a bad value,
    or on a key that no mode reads (`check_every_key_is_read`)."""
    from pipeline.modes import all_settings_classes  # the registry imports the settings

    check_every_key_is_read(cfg, all_settings_classes())
    values = {}
    for item in fields(settings_class):
        path = meta(item, "config") or item.name
        kind = concern_type(settings_class, item)
        value = _concern(kind, cfg, path) if kind is not None else _lookup(cfg, path, meta(item, "missing"))
        if value is not _ABSENT:
            values[item.name] = value
    return settings_class(**values)
