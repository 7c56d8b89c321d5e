"""How a setting is declared: one dataclass field says its default, its help, whether it is part of
the result's identity (the folder hash), whether it is a readable tag of the folder name, and which
protocol key (conf/protocol) it is.

    threshold: float = setting(0.9, "a mask passes while its score >= threshold x the full score")
    accumulate: str = setting("running", "...", protocol="accumulate", identity=ALWAYS)

Identity: what determines a result is recorded in its folder's settings.json and hashed into the
folder name. The settings that existed when the first results were written are recorded ALWAYS,
laid out as those folders hold them (each mode's `recorded()`; pinned by tests/test_folder_names.py).
A setting added since is recorded IF_CHANGED: only when it differs from its default (or from
`unchanged`, the value that reproduces what the code did before the setting existed), so the
folders written before it stay valid and reusable. NEVER: it changes no result (how often to
checkpoint, where files lie, which tickets to score).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any, get_type_hints

ALWAYS = "always"
IF_CHANGED = "if_changed"
NEVER = "never"


def setting(default: Any = MISSING, help: str = "", *, identity: str = IF_CHANGED, protocol: str | None = None,
            tag: int | None = None, config: str | None = None, missing: str | None = None, unchanged: Any = MISSING,
            factory: Any = MISSING) -> Any:
    """A settings field.

    protocol: the protocol key it is (a key of conf/protocol/*.yaml and of `lottery.schema.PROTOCOL_KEYS`).
    tag: its value is a readable part of the folder name when it differs from the default, at this
        position (1 first).
    config: where the composed config holds it, relative to its concern's node (default: its name;
        "*": every other key of the node, as a dict).
    missing: what to say when the config leaves it unset (`???`).
    unchanged: for IF_CHANGED, the value that reproduces what the code did before the setting existed
        (default: the default).
    """
    if identity not in (ALWAYS, IF_CHANGED, NEVER):
        raise ValueError(f"identity must be ALWAYS, IF_CHANGED or NEVER, got {identity!r}")
    metadata = {"help": help, "identity": identity, "protocol": protocol, "tag": tag, "config": config,
                "missing": missing, "unchanged": unchanged}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def meta(item: Field, key: str) -> Any:
    return item.metadata.get(key)


def default_of(item: Field) -> Any:
    if item.default is not MISSING:
        return item.default
    return item.default_factory() if item.default_factory is not MISSING else MISSING


class Concern:
    """A group of settings read from one config node (`node`, default: the field's name in the run's
    settings). Subclasses are frozen dataclasses whose fields are declared with `setting`."""

    def recorded(self) -> dict[str, Any]:
        """The ALWAYS fields, in their order (a concern whose folders record them otherwise overrides this)."""
        return {item.name: getattr(self, item.name) for item in fields(self) if meta(item, "identity") == ALWAYS}

    def changed(self) -> dict[str, Any]:
        """The IF_CHANGED fields that differ from their unchanged value."""
        found = {}
        for item in fields(self):
            if meta(item, "identity") != IF_CHANGED:
                continue
            unchanged = meta(item, "unchanged")
            baseline = default_of(item) if unchanged is MISSING else unchanged
            if getattr(self, item.name) != baseline:
                found[item.name] = getattr(self, item.name)
        return found

    def identity(self) -> dict[str, Any]:
        return {**self.recorded(), **self.changed()}


def concern_fields(settings: Any) -> Iterator[tuple[str, Concern]]:
    """(name, concern) of every Concern-valued field of a run's settings, in declaration order."""
    for item in fields(settings):
        value = getattr(settings, item.name)
        if isinstance(value, Concern):
            yield item.name, value


def walk(settings: Any, prefix: str = "") -> Iterator[tuple[str, Field, Any]]:
    """(dotted path, field, value) of every leaf setting, concerns expanded."""
    for item in fields(settings):
        value = getattr(settings, item.name)
        if is_dataclass(value) and isinstance(value, Concern):
            yield from walk(value, f"{prefix}{item.name}.")
        else:
            yield f"{prefix}{item.name}", item, value


def tags(settings: Any) -> list[str]:
    """The readable parts of a folder name: each `tag` setting whose value differs from its default."""
    found = [(meta(item, "tag"), str(value)) for _, item, value in walk(settings)
             if meta(item, "tag") is not None and value != default_of(item)]
    return [value for _, value in sorted(found)]


def protocol_values(settings: Any) -> dict[str, Any]:
    """{protocol key: this run's value} for every protocol setting the run has, in declaration order."""
    return {meta(item, "protocol"): value for _, item, value in walk(settings) if meta(item, "protocol")}


def concern_type(cls: type, item: Field) -> type[Concern] | None:
    """The Concern class a field of `cls` holds, or None for a plain value."""
    kind = get_type_hints(cls).get(item.name)
    return kind if isinstance(kind, type) and issubclass(kind, Concern) else None


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per setting of a settings class: its dotted path, default and help."""
    lines = []
    for item in fields(cls):
        kind = concern_type(cls, item)
        if kind is not None:
            lines += describe(kind, f"{prefix}{item.name}.")
            continue
        default = default_of(item)
        shown = "required" if default is MISSING else repr(default)
        lines.append(f"{prefix}{item.name} = {shown}" + (f": {meta(item, 'help')}" if meta(item, "help") else ""))
    return lines
