"""The registry of experiment modes: each mode owns its config file, its stages, its results rows
and the report sections that draw them; nothing outside this registry compares mode names.

A new mode is one module in this package that calls `register(Mode(...))`, plus one config file
`conf/experiment/<name>.yaml` that sets `mode: <name>` and the mode's own settings node. Every
module here is imported when the registry is first used.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from lottery.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.run import Run


def _nothing(cfg: DictConfig) -> Any:
    return None


@dataclass(frozen=True)
class Mode:
    """One experiment mode.

    run: the mode's stages, given the run (its fine-tune already done); returns its results dict.
    settings: what, beyond the fine-tune's settings, determines the mode's results (hashed into
        its folder name); protocol keys it uses are read from the config here.
    protocol_keys: the protocol keys (conf/protocol) the mode's results depend on.
    tags: readable parts of its folder name besides the mode and the protocol.
    check: validates the mode's own settings before any work starts (raise ConfigError).
    label_prefix, unit, figures: how the report labels (`lottery.schema.row_label`) and draws its
        results (`lottery.report.sections`).
    """

    name: str
    run: Callable[[Run], dict]
    description: str
    settings: Callable[[DictConfig], dict] = field(default=lambda cfg: {})
    protocol_keys: tuple[str, ...] = ()
    tags: Callable[[DictConfig], list[str]] = field(default=lambda cfg: [])
    check: Callable[[DictConfig], None] = _nothing
    label_prefix: str = ""
    unit: str = ""
    figures: tuple[str, ...] = ()


MODES: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    if mode.name in MODES:
        raise ValueError(f"two experiment modes are called {mode.name!r}")
    MODES[mode.name] = mode
    return mode


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def get_mode(name: str) -> Mode:
    _discover()  # every mode module registers itself when first imported
    if name not in MODES:
        raise ConfigError(f"unknown experiment mode {name!r}; choose experiment=<one of {sorted(MODES)}>")
    return MODES[name]
