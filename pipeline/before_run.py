"""A refused run writes nothing: its settings are checked before Hydra writes its bookkeeping.

Hydra creates the run's folder and writes `.hydra/config.yaml` (beside the results, keyed by model,
task, seed and mode: conf/hydra/default.yaml) before the task function starts, so a run refused
for a bad value used to leave folders (`seed1.5/.hydra/...`) and to overwrite the `.hydra` record
of a valid run with the refused settings. This Hydra callback (registered in
conf/hydra/default.yaml) derives the run (`pipeline.run.make_run`: every check, nothing written)
at `on_run_start`, before Hydra writes anything (and asks the hub for a model named by a hub id:
`lottery.hub.check_fetchable`), and ends a refused run there with the CLI's one
line and exit code 2. Anything that is not a user's mistake is left to the run itself, which
fails again with its full traceback. A multirun's jobs are checked by each job, as before.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from lottery.errors import LotteryError


class CheckBeforeWriting(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from lottery.hub import check_fetchable
        from pipeline.run import make_run, tokenizer_source

        settings = copy.deepcopy(config)
        with read_write(settings), open_dict(settings):
            del settings["hydra"]
        try:
            run = make_run(settings)
            check_fetchable(tokenizer_source(run.settings.model))  # the run loads it lazily, after Hydra wrote
        except LotteryError as error:
            print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
            sys.exit(2)
        except Exception:  # noqa: BLE001  (a bug: the run raises it again, with its traceback)
            return
