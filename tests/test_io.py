"""Crash-safe writing: a failed write is one line naming the path and the space, a killed writer's
temporaries are cleaned up by the next write, and files get the user's umask."""

import errno
import os
import socket
import stat
import subprocess
import sys

import pytest

from lottery.errors import DiskFullError, WriteError
from lottery.io import atomic_directory, atomic_write, remove_stale_temporaries, write_error, write_json, write_text


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def temporary(folder, name: str, pid: int, host: str | None = None, directory: bool = False):
    path = folder / f".{name}~{host or socket.gethostname()}~{pid}~abc123.tmp"
    path.mkdir() if directory else path.write_text("half a file")
    return path


def test_the_next_write_removes_what_a_killed_writer_left_and_nothing_else(tmp_path):
    stale = temporary(tmp_path, "metrics.json", dead_pid())
    stale_folder = temporary(tmp_path, "model", dead_pid(), directory=True)
    running = temporary(tmp_path, "metrics.json", os.getppid())  # its writer still runs
    elsewhere = temporary(tmp_path, "metrics.json", dead_pid(), host="another-node")  # cannot tell: kept
    other_file = temporary(tmp_path, "results.json", dead_pid())  # another target: left to its own writes
    write_json(tmp_path / "metrics.json", {"a": 1})
    assert not stale.exists() and running.exists() and elsewhere.exists() and other_file.exists()
    with atomic_directory(tmp_path / "model") as folder:
        (folder / "config.json").write_text("{}")
    assert not stale_folder.exists() and (tmp_path / "model" / "config.json").is_file()
    assert remove_stale_temporaries(tmp_path) == [other_file]  # a stage's start sweeps all its targets


def test_a_full_disk_is_one_line_with_the_free_space_and_what_was_needed(tmp_path, monkeypatch):
    import lottery.io

    def full(fd, target):
        os.close(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lottery.io, "_open_temporary", full)
    with pytest.raises(DiskFullError) as error:
        write_text(tmp_path / "table.md", "x" * 3000)
    message = str(error.value)
    assert message.startswith(f"cannot write {tmp_path / 'table.md'}: no space left on the device (")
    assert "free there; it needs about 2.9 KiB); free some space and rerun" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temporary


def test_a_full_disk_while_filling_a_folder_keeps_the_previous_folder(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights").write_bytes(b"old")
    full = pytest.raises(DiskFullError, match=r"cannot write .*model: no space left .* it needs more than the 5 bytes")
    with full, atomic_directory(tmp_path / "model") as folder:
        (folder / "weights").write_bytes(b"12345")
        # safetensors reports a full disk in its own error type
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (tmp_path / "model" / "weights").read_bytes() == b"old"


def test_other_write_errors_are_one_line_and_other_errors_pass_through(tmp_path):
    assert isinstance(write_error(OSError(errno.EIO, "I/O error"), tmp_path / "x"), WriteError)
    assert "cannot write" in str(write_error(OSError(errno.EIO, "I/O error"), tmp_path / "x"))
    assert write_error(PermissionError(errno.EACCES, "denied"), tmp_path / "x") is None
    assert write_error(ValueError("a bug"), tmp_path / "x") is None


def test_files_get_the_users_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.json", lambda handle: handle.write(b"{}"))
        with atomic_directory(tmp_path / "model") as folder:
            fd = os.open(folder / "model.safetensors", os.O_CREAT | os.O_WRONLY, 0o600)  # as safetensors does
            os.close(fd)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "model" / "model.safetensors").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o750
