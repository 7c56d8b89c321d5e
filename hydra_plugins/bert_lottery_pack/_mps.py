"""CUDA MPS for the jobs of one pack: a control daemon of its own, started and stopped by the pack.

Without MPS, processes that share a GPU take turns (time-slicing); under MPS their kernels run side
by side on one shared context, which is what lets many small fine-tunes fill a large GPU. The
daemon gets its own pipe folder (the named pipes and sockets that clients connect through: local,
short, unique to this pack, as NVIDIA recommends: /tmp) and log folder (under the sweep folder,
kept). Clients find it through CUDA_MPS_PIPE_DIRECTORY. `echo quit | nvidia-cuda-mps-control`
stops it. A pack killed outright (kill -9) cannot stop its daemon: the next pack on the same host
and sweep folder stops the daemons whose pack has died (their pipe folder is recorded beside their
logs).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

CONTROL = "nvidia-cuda-mps-control"
PIPE_RECORD = "pipe_dir.txt"


class Mps:
    """One MPS control daemon: `start()` says whether it runs; `client_env()` is what its clients need."""

    def __init__(self, log_root: Path, gpus: tuple[str, ...]):
        self.log_root = Path(log_root)
        self.gpus = gpus
        self.log_dir = self.log_root / f"{socket.gethostname()}-{os.getpid()}"
        self.pipe_dir: Path | None = None
        self.running = False

    def _env(self, pipe_dir: Path, log_dir: Path) -> dict[str, str]:
        return {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(log_dir)}

    def client_env(self) -> dict[str, str]:
        if not self.running:
            return {}
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def start(self) -> tuple[bool, str]:
        """Starts the daemon; returns (started, why not)."""
        control = shutil.which(CONTROL)
        if control is None:
            return False, f"{CONTROL} is not on PATH"
        stop_orphans(self.log_root)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pipe_dir = Path(tempfile.mkdtemp(prefix="lottery-mps-"))
        # The daemon sees exactly the pack's GPUs; its clients see them numbered from 0.
        env = {**self._env(self.pipe_dir, self.log_dir), "CUDA_VISIBLE_DEVICES": ",".join(self.gpus)}
        try:
            started = subprocess.run([control, "-d"], env=env, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            self._forget()
            return False, f"{CONTROL} -d failed: {error}"
        if started.returncode != 0:
            self._forget()
            return False, f"{CONTROL} -d exited {started.returncode}: {(started.stderr or started.stdout).strip()}"
        (self.log_dir / PIPE_RECORD).write_text(str(self.pipe_dir))
        self.running = True
        answer = _ask(control, env, "get_server_list")
        if answer is None:
            self.stop()
            return False, f"the MPS daemon started but does not answer (see {self.log_dir}/control.log)"
        return True, ""

    def stop(self) -> None:
        if not self.running:
            return
        control = shutil.which(CONTROL)
        if control is not None and _ask(control, self._env(self.pipe_dir, self.log_dir), "quit") is None:
            log.warning("the MPS daemon (pipe folder %s) did not answer `quit`; see %s", self.pipe_dir, self.log_dir)
        else:
            log.info("MPS daemon stopped (its logs: %s)", self.log_dir)
        self.running = False
        self._forget()

    def _forget(self) -> None:
        (self.log_dir / PIPE_RECORD).unlink(missing_ok=True)
        if self.pipe_dir is not None:
            shutil.rmtree(self.pipe_dir, ignore_errors=True)


def _ask(control: str, env: dict[str, str], command: str) -> str | None:
    """Sends one command to a running daemon; its answer, or None when it does not answer."""
    try:
        done = subprocess.run([control], input=command + "\n", env=env, capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphans(log_root: Path) -> None:
    """Stops the daemons that packs on this host started and could not stop (they were killed)."""
    control = shutil.which(CONTROL)
    host = socket.gethostname()
    for record in Path(log_root).glob(f"{host}-*/{PIPE_RECORD}"):
        pid = record.parent.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        pipe_dir = Path(record.read_text().strip())
        if control is not None and pipe_dir.is_dir():
            env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir),
                   "CUDA_MPS_LOG_DIRECTORY": str(record.parent)}
            stopped = _ask(control, env, "quit") is not None
            log.info("the MPS daemon of an earlier pack that was killed (pid %s): %s", pid,
                     "stopped" if stopped else "not answering")
            shutil.rmtree(pipe_dir, ignore_errors=True)
        record.unlink(missing_ok=True)
