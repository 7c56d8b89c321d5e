"""Crash-safe file output: atomic JSON writes, atomic folders, and an inter-process lock.

A run that is killed mid-write must never leave a half-written `metrics.json` or model folder,
because the presence of those files is what marks a stage as finished. Everything is written to
a hidden temporary beside its target (`.<name>~<host>~<pid>~<random>.tmp`), then renamed over it;
a temporary whose writer was killed is deleted by the next write of the same target (or by
`remove_stale_temporaries`). A write that fails for want of space or on an I/O error becomes one
`WriteError` line naming the path (and, for a full disk, the free space and what was needed).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import filelock

from lottery.errors import CorruptFileError, DiskFullError, WriteError


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


# ----- failed writes -----
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
WRITE_ERRNOS = (*FULL_ERRNOS, errno.EIO, errno.EROFS, errno.EFBIG)


def human_size(size: int | None) -> str:
    if size is None:
        return "an unknown amount"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def free_space(path: str | Path) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    try:
        return shutil.disk_usage(existing).free if existing is not None else None
    except OSError:
        return None


def _errno_of(error: BaseException) -> int | None:
    """The errno of a failed write; libraries that wrap the OS error (safetensors' Rust writer:
    `I/O error: No space left on device (os error 28)`) carry it only in their message."""
    if isinstance(error, OSError):
        return error.errno
    found = re.search(r"\(os error (\d+)\)|Os \{ code: (\d+)", str(error))
    return int(found.group(1) or found.group(2)) if found else None


def write_error(error: BaseException, path: str | Path, needed: int | None = None,
                written: int | None = None) -> WriteError | None:
    """The one-line error for a failed write of `path` (None if `error` is not a failed write).

    `needed`: the size of what was being written, if known; `written`: how much got written
    before the failure (a lower bound of what is needed)."""
    code = _errno_of(error)
    if isinstance(error, WriteError) or code not in WRITE_ERRNOS:
        return None
    if code in FULL_ERRNOS:
        what = "the disk quota is exceeded" if code == errno.EDQUOT else "no space left on the device"
        if needed is not None:
            need = f"it needs about {human_size(needed)}"
        elif written:
            need = f"it needs more than the {human_size(written)} written before the disk filled"
        else:
            need = "it needs more"
        return DiskFullError(f"cannot write {path}: {what} ({human_size(free_space(Path(path).parent))} free there; "
                             f"{need}); free some space and rerun (nothing half-written was kept, and a run "
                             "continues from its finished stages and last checkpoint)")
    return WriteError(f"cannot write {path}: {os.strerror(code)} ({errno.errorcode.get(code, code)}); rerun once "
                      "the disk works again (nothing half-written was kept)")


@contextlib.contextmanager
def reporting_write_errors(path: str | Path, needed: int | None = None) -> Iterator[None]:
    """Turn a failed write of `path` (disk full, quota, I/O error) into its one-line `WriteError`."""
    try:
        yield
    except Exception as error:
        explained = write_error(error, path, needed)
        if explained is None:
            raise
        raise explained from error


# ----- temporaries -----
_ACTIVE: set[str] = set()  # the temporaries this process is writing now
_TEMPORARY = re.compile(r"^\.(?P<name>.+)~(?P<host>[^~]*)~(?P<pid>\d+)~[^~]*\.tmp$")


def _temporary_prefix(name: str) -> str:
    """Names the writer, so a later write can tell a temporary left by a killed process."""
    return f".{name}~{socket.gethostname()}~{os.getpid()}~"


def _writer_is_gone(path: Path) -> bool:
    match = _TEMPORARY.match(path.name)
    if match is None or os.path.abspath(path) in _ACTIVE or match["host"] != socket.gethostname():
        return False  # not ours, being written now, or written on another machine: unknown
    pid = int(match["pid"])
    if pid == os.getpid():
        return True  # this process is not writing it (not in _ACTIVE): an earlier process had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temporaries(folder: str | Path, name: str | None = None, recursive: bool = False) -> list[Path]:
    """Delete the temporaries (files or folders) in `folder` that a killed writer left: of the
    target `name`, or of every target; `recursive`: in every subfolder too. A temporary whose
    writer still runs, or ran on another machine, is kept."""
    folder = Path(folder)
    pattern = f".{glob.escape(name)}~*.tmp" if name is not None else ".*~*.tmp"
    try:
        found = list(folder.rglob(pattern) if recursive else folder.glob(pattern))
    except OSError:
        return []
    removed = []
    for path in found:
        if not _writer_is_gone(path):
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _size(path: str | Path) -> int | None:
    try:
        path = Path(path)
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return None


def _open_temporary(fd: int, target: Path) -> IO[bytes]:
    """The file object that writes the temporary of `target` (one place to fake a full disk in tests)."""
    return os.fdopen(fd, "wb")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], size: int | None = None) -> Path:
    """Write `path` through a temp file in its folder (fsynced, then renamed over it), so a reader
    or a crash never sees half a file. `size`: how many bytes `write` writes, if known (a full
    disk's message says how much was needed)."""
    path = Path(path)
    with reporting_write_errors(path, size):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path.name), suffix=".tmp")
    _ACTIVE.add(os.path.abspath(tmp))
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: results are for the whole team
        with _open_temporary(fd, path) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        written = _size(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        explained = write_error(error, path, size, written) if isinstance(error, Exception) else None
        if explained is not None:
            raise explained from error
        raise
    finally:
        _ACTIVE.discard(os.path.abspath(tmp))
    return path


def write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    return atomic_write(path, lambda handle: handle.write(data), size=len(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


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


def _apply_umask(folder: Path) -> None:
    """Give every file and folder under `folder` the modes the user's umask allows: some writers
    (safetensors' atomic save) create their files 0600, readable by their owner only."""
    mask = _umask()
    for root, folders, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, (0o666 | (os.stat(path).st_mode & 0o111)) & ~mask)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path` in one rename.

    An existing `path` is moved aside first and deleted only after the new one is in place, so
    at every instant either the old or the new complete folder exists. Its files get the modes
    of the user's umask.
    """
    path = Path(path)
    with reporting_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path.name), suffix=".tmp"))
    _ACTIVE.add(os.path.abspath(tmp))
    try:
        try:
            yield tmp
            _apply_umask(tmp)
        except BaseException as error:
            written = _size(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            explained = write_error(error, path, written=written) if isinstance(error, Exception) else None
            if explained is not None:
                raise explained from error
            raise
        with reporting_write_errors(path):
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                if old is not None:
                    os.replace(old, path)  # the previous folder back in place
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        _ACTIVE.discard(os.path.abspath(tmp))


def file_lock(path: str | Path) -> filelock.FileLock:
    """An exclusive inter-process lock on `path` (a context manager); blocks until it is free.

    Two sweep jobs that need the same fine-tune take this lock on its run folder: the second
    waits, then finds the finished result instead of training it again.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(path))
