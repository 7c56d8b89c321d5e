"""One packed job, in its own process: `python -m hydra_plugins.bert_lottery_pack._job SWEEP I RESULT`.

Reads the sweep (pickled by the pack), composes job I's config and runs it as Hydra's launchers do
(`run_job`: its folder, `.hydra/` files and log), then writes its JobReturn to RESULT. A failing
job still writes its result (status FAILED, with the error); no result means the process died.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from pathlib import Path


def run(sweep: dict, position: int):
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    setup_globals()
    Singleton.set_state(sweep["singleton_state"])
    num = sweep["nums"][position]
    hydra_context = sweep["hydra_context"]
    config = hydra_context.config_loader.load_sweep_config(sweep["config"], list(sweep["overrides"][position]))
    with open_dict(config):
        config.hydra.job.id = f"{config.hydra.job.name}_{num}"
        config.hydra.job.num = num
    HydraConfig.instance().set_config(config)
    return run_job(hydra_context=hydra_context, config=config, task_function=sweep["task_function"],
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def portable(result):
    """The JobReturn as bytes the launcher can load: an error or value that does not pickle is
    replaced by a description of it."""
    import cloudpickle
    from hydra.core.utils import JobStatus

    try:
        data = cloudpickle.dumps(result)
        pickle.loads(data)
        return data
    except Exception as error:  # noqa: BLE001
        value = result._return_value
        if result.status == JobStatus.FAILED:
            result.return_value = RuntimeError(f"{type(value).__name__}: {value}")
        else:
            print(f"the job's return value cannot be sent back ({error}); returning None", file=sys.stderr)
            result.return_value = None
        return cloudpickle.dumps(result)


def main(argv: list[str]) -> None:
    from hydra_plugins.bert_lottery_pack._core import IGNORE_SIGNALS

    for name in filter(None, os.environ.get(IGNORE_SIGNALS, "").split(",")):
        signal.signal(getattr(signal, name), signal.SIG_IGN)  # meant for the launcher (see _core.run_jobs)
    sweep_path, position, result_path = argv
    with open(sweep_path, "rb") as file:
        sweep = pickle.load(file)
    data = portable(run(sweep, int(position)))
    partial = Path(f"{result_path}.partial")
    partial.write_bytes(data)
    os.replace(partial, result_path)


if __name__ == "__main__":
    main(sys.argv[1:])
