"""The registry of experiment modes: each mode owns its settings, its config file, its stages, its
results rows and the report sections that draw them; nothing outside this registry compares mode names.

A new mode is one module in this package that calls `register(Mode(...))`, plus one config file
`conf/experiment/<name>.yaml` that sets `mode: <name>` and the defaults of its settings node. Every
module here is imported when the registry is first used.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lottery.errors import ConfigError
from lottery.schema import PRUNINGS
from pipeline.settings import RunSettings

if TYPE_CHECKING:
    from pipeline.run import Run


@dataclass(frozen=True)
class Mode:
    """One experiment mode.

    run: the mode's stages, given the run; returns its results dict.
    settings: the mode's settings class (`RunSettings` extended with the concerns it reads): its
        fields give the defaults, checks, folder identity, readable tags and protocol keys.
    label_prefix, pruning, figures: how the report labels (`lottery.schema.row_label`) and draws its
        results (`lottery.report.sections`); `pruning` is what its tickets mask ("structured": heads
        and MLPs, "weights": single weights).
    """

    name: str
    run: Callable[[Run], dict]
    description: str
    settings: type[RunSettings] = RunSettings
    label_prefix: str = ""
    pruning: str = ""
    figures: tuple[str, ...] = ()


MODES: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    if mode.name in MODES:
        raise ValueError(f"two experiment modes are called {mode.name!r}")
    if mode.pruning not in ("", *PRUNINGS):
        raise ValueError(f"mode {mode.name!r}: pruning must be one of {PRUNINGS} (or empty), got {mode.pruning!r}")
    if any(other.settings is mode.settings for other in MODES.values()):
        raise ValueError(f"mode {mode.name!r} shares its settings class with another mode: give it its own")
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


def mode_of(settings: RunSettings) -> Mode:
    """The mode whose settings these are."""
    _discover()
    for mode in MODES.values():
        if type(settings) is mode.settings:
            return mode
    raise ConfigError(f"{type(settings).__name__} is no registered mode's settings")
