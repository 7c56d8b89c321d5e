"""lottery's algorithms stay plain torch/numpy: importable without Lightning, Hydra or W&B."""

import subprocess
import sys

ALGORITHMS = ["lottery.tasks", "lottery.glue_data", "lottery.features", "lottery.samplers", "lottery.models",
              "lottery.masks", "lottery.pruning", "lottery.accounting", "lottery.importance", "lottery.search",
              "lottery.tickets", "lottery.magnitude", "lottery.stability", "lottery.baselines", "lottery.io",
              "lottery.report"]
FORBIDDEN = ["lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "wandb"]


def test_algorithms_import_without_lightning_hydra_or_wandb():
    code = (f"import sys\nfor name in {ALGORITHMS!r}: __import__(name)\n"
            f"print([m for m in {FORBIDDEN!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_check_would_catch_a_forbidden_import():
    code = "import sys, lightning_modules.glue_module; print('pytorch_lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False).stdout.strip() == "True"
