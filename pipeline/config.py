"""Where the project lies, and the OmegaConf resolvers conf/ uses (the settings themselves and their
checks: `pipeline.settings`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from lottery.custom_tasks import default_task_name

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Run from a checkout (or an editable install of one), or installed from a wheel (site-packages).
IN_CHECKOUT = (PROJECT_ROOT / "conf" / "config.yaml").is_file() and (PROJECT_ROOT / "pyproject.toml").is_file()
CONFIG_PACKAGE = "lottery.conf"  # where a wheel carries conf/ (pyproject.toml)
# Hydra's config search path: the checkout's conf/ itself, else the installed package's copy.
CONFIG_PATH = str(PROJECT_ROOT / "conf") if IN_CHECKOUT else f"pkg://{CONFIG_PACKAGE}"
SHARED_GLUE = PROJECT_ROOT.parent / "shared" / "data" / "glue"


def conf_dir() -> Path:
    """The folder holding the Hydra configs (conf/ in a checkout, `lottery.conf` when installed)."""
    if IN_CHECKOUT:
        return PROJECT_ROOT / "conf"
    import importlib.resources

    return Path(str(importlib.resources.files(CONFIG_PACKAGE)))


def project_root() -> str:
    """Where `paths.root` (outputs/) lives by default: the checkout's root, or, for an installed
    bert-lottery, the current folder."""
    return str(PROJECT_ROOT) if IN_CHECKOUT else os.getcwd()


def default_glue_dir() -> str | None:
    """No GLUE_DIR set: the GLUE folder beside the checkout if present, else None (the hub)."""
    return str(SHARED_GLUE) if IN_CHECKOUT and SHARED_GLUE.is_dir() else None


def writable_or_temporary(path: str) -> str:
    """`path` if it can be created and written, else a folder under the system's temporary one.

    Hydra writes its bookkeeping (resolved config, log) before the run starts; on a read-only
    results root (reading finished results) that bookkeeping goes elsewhere.
    """
    target = Path(path)
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is not None and os.access(existing, os.W_OK | os.X_OK):
        return str(target)
    relative = str(target).lstrip(os.sep).replace(os.sep, "_")
    return str(Path(tempfile.gettempdir()) / "bert-lottery-hydra" / relative)


def tiny_model_id(family: str | None) -> str:
    """The output folder name of a tiny random model: `tiny` for BERT (as before other families
    existed), `tiny_<family>` for the others."""
    return "tiny" if family in (None, "bert") else f"tiny_{family}"


def register_resolvers() -> None:
    resolvers = {
        "project_root": project_root,
        "tiny_id": tiny_model_id,
        "default_glue_dir": default_glue_dir,
        "hydra_dir": writable_or_temporary,
        "custom_task_name": default_task_name,
    }
    for name, function in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


register_resolvers()
