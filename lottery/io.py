"""Crash-safe file output: atomic JSON writes, atomic folders, and an inter-process lock.

A run that is killed mid-write must never leave a half-written `metrics.json` or model folder,
because the presence of those files is what marks a stage as finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import filelock

from lottery.errors import CorruptFileError


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # torch / numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write `path` through a temp file in its folder (fsynced, then renamed over it), so a reader
    or a crash never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: results are for the whole team
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (NaN and infinity become null)."""
    return write_text(path, json.dumps(to_jsonable(data), indent=2) + "\n")


def content_hash(data: Any) -> str:
    """sha256 of JSON-able data in a canonical form (what a mask or a settings dict is, not how it was written)."""
    canonical = json.dumps(to_jsonable(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a truncated or malformed file raises CorruptFileError naming it."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"{path} is not valid JSON ({error}); delete it (or rerun with force=true) "
                               "to recompute it") from None


def read_json_or_none(path: str | Path) -> Any:
    """A JSON file's content, or None if it is missing or unreadable."""
    try:
        return read_json(path)
    except (FileNotFoundError, CorruptFileError):
        return None


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path` in one rename.

    An existing `path` is moved aside first and deleted only after the new one is in place, so
    at every instant either the old or the new complete folder exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def file_lock(path: str | Path) -> filelock.FileLock:
    """An exclusive inter-process lock on `path` (a context manager); blocks until it is free.

    Two sweep jobs that need the same fine-tune take this lock on its run folder: the second
    waits, then finds the finished result instead of training it again.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(path))
