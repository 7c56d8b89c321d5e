"""A Hydra app whose jobs only record where and when they ran: the pack launcher's tests run it
(`python tests/pack_app/app.py -m job=0,1,2 out=DIR`) to check the launcher without a fine-tune."""

import json
import os
import signal
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> int:
    # The first `meet` jobs wait (up to a minute) until `meet` jobs run at once: proof that they do.
    running = Path(cfg.out, "running")
    running.mkdir(exist_ok=True)
    (running / str(cfg.job)).touch()
    # The first to see them all leaves a sign, so a job descheduled while another one finished still
    # knows they met (counting the markers again could miss one that already left).
    deadline = time.time() + (60 if cfg.job < cfg.meet else 0)
    sign = Path(cfg.out, "met")
    while not sign.exists() and time.time() < deadline:
        if len(list(running.iterdir())) >= cfg.meet:
            sign.touch()
            break
        time.sleep(0.05)
    met = cfg.meet if cfg.job < cfg.meet and sign.exists() else len(list(running.iterdir()))
    start = time.time()
    time.sleep(cfg.sleep)
    end = time.time()
    (running / str(cfg.job)).unlink()
    record = {"job": cfg.job, "pid": os.getpid(), "met": met, "start": start, "end": end,
              **{name: os.environ.get(name) for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                                                         "CUDA_MPS_PIPE_DIRECTORY")}}
    Path(cfg.out, f"job{cfg.job}.json").write_text(json.dumps(record))
    if cfg.job == cfg.fail:
        raise ValueError(f"job {cfg.job} fails on purpose")
    if cfg.job == cfg.die:
        os.kill(os.getpid(), signal.SIGKILL)
    return cfg.job


if __name__ == "__main__":
    main()
