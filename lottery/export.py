"""Physically pruned tickets that load anywhere, without bert-lottery.

A pruned ticket's weights are smaller than its architecture's config says, so plain
`from_pretrained` cannot build it. `make_portable` puts next to the weights what the Hub's custom-
architecture convention needs: a copy of `lottery/architectures.py` (self-contained: torch and
transformers only) and a small modeling file whose class is the original architecture's class
that cuts the recorded structure out of itself on construction; `config.json` names it in
`auto_map`. Then

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

builds the full architecture, shrinks it, and loads the weights, on any machine with transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

from lottery import architectures
from lottery.errors import LotteryError
from lottery.io import write_text

ARCHITECTURES_FILE = "lottery_architectures.py"
MODELING_FILE = "modeling_lottery_ticket.py"
MODEL_CLASS = "LotteryTicketForSequenceClassification"

MODELING_TEMPLATE = '''"""A lottery ticket of bert-lottery: {base} with some attention units and MLP blocks removed.

The config records which (`pruned_structure`); this class builds the full architecture and cuts
them out (lottery_architectures.py, copied from bert-lottery) before the weights are loaded, so
the checkpoint loads with `from_pretrained(folder, trust_remote_code=True)` and no bert-lottery.
"""

from transformers import {base} as _Architecture

from .lottery_architectures import apply_recorded_structure


class {model_class}(_Architecture):
    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        apply_recorded_structure(self)
'''


class ExportError(LotteryError, ValueError):
    """A folder that cannot be made loadable on its own."""


def make_portable(folder: str | Path) -> Path:
    """Add the modeling code and `auto_map` to a pruned model's folder (written by save_pruned)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    base = (config.get("architectures") or [None])[0]
    if base in (None, MODEL_CLASS):
        base = config.get("lottery_base_architecture")
    if not base:
        raise ExportError(f"{config_path} names no architecture class (`architectures`); save the model with "
                          "save_pretrained first")
    write_text(folder / ARCHITECTURES_FILE, Path(architectures.__file__).read_text())
    write_text(folder / MODELING_FILE, MODELING_TEMPLATE.format(base=base, model_class=MODEL_CLASS))
    config["lottery_base_architecture"] = base
    config["auto_map"] = {"AutoModelForSequenceClassification": f"{MODELING_FILE.removesuffix('.py')}.{MODEL_CLASS}"}
    write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder
