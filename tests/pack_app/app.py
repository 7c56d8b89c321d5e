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
    start = time.time()
    time.sleep(cfg.sleep)
    record = {"job": cfg.job, "pid": os.getpid(), "start": start, "end": time.time(),
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
