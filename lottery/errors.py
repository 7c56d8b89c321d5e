"""The project's own errors: one base class, so the entry point can tell a user's mistake (bad
config, missing or corrupt file, wrong mask) from a bug.

`python -m lottery` prints a `LotteryError` as one line naming what is wrong and how to fix it;
anything else is a bug and keeps its full traceback. Subclasses also derive from the built-in
class that describes them (ValueError, FileNotFoundError, ...) so callers can catch either.
"""

from __future__ import annotations


class LotteryError(Exception):
    """A problem the user can fix: its message says what is wrong and how to fix it."""


class ConfigError(LotteryError, ValueError):
    """A setting has a value the project cannot use (wrong type, out of range, missing)."""


class CorruptFileError(LotteryError, ValueError):
    """A file the project wrote earlier cannot be read back (truncated, edited, wrong format)."""


class NonFiniteError(LotteryError, FloatingPointError):
    """A loss, score or label is NaN or infinite."""


class ReadOnlyError(LotteryError, PermissionError):
    """Something must be written under a folder that cannot be written."""


class WriteError(LotteryError, OSError):
    """A file could not be written (an I/O error, a read-only file system); nothing half-written
    was kept and nothing unfinished was marked done, so rerunning once it is fixed continues."""


class DiskFullError(WriteError):
    """The disk (or the user's quota) is full: the message names the path, the free space and
    roughly how much more the write needed."""


class HubUnavailableError(LotteryError, OSError):
    """A model or tokenizer named by a hub id could not be fetched and is not in the local cache."""
