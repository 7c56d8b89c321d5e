"""The installable package: every code package and config group is in the wheel, and the built
wheel, installed into a fresh virtual environment, runs `bert-lottery` from any folder."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("lottery", "lightning_modules", "callbacks", "pipeline", "hydra_plugins")


def listed_packages() -> set[str]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_code_package_and_config_group_is_listed_for_the_wheel():
    code = {".".join(path.parent.relative_to(ROOT).parts) for top in PACKAGES
            for path in (ROOT / top).rglob("__init__.py")}
    groups = {".".join(("lottery.conf", *path.parent.relative_to(ROOT / "conf").parts))
              for path in (ROOT / "conf").rglob("*.yaml") if path.parent.name != "local"}
    missing = sorted((code | groups) - listed_packages())
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def _copy_tree(target: Path) -> Path:
    """The checkout without its environment and outputs (building writes build/ and *.egg-info)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "outputs", "multirun", "wandb", "build", "dist", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".ruff_cache", "local")
    return Path(shutil.copytree(ROOT, target, ignore=ignore))


def _run(command, cwd, env=None, timeout=180) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.e2e
def test_the_wheel_installs_and_runs_from_another_folder(tmp_path, tiny_glue):
    source = _copy_tree(tmp_path / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
          str(source)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("bert_lottery-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"lottery/conf/config.yaml", "lottery/conf/__init__.py", "lottery/conf/task/custom.yaml",
            "pipeline/cli.py"} <= names

    # A fresh environment whose dependencies (torch and the rest) come from this one's site-packages,
    # appended by a .pth file; this checkout is not on its path, so it imports the installed wheel.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=tmp_path).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "GLUE_DIR")}
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="1")
    code = "import lottery, pipeline.config as c; print(lottery.__file__); print(c.IN_CHECKOUT, c.project_root(), " \
           "c.default_glue_dir())"
    where = _run([str(python), "-c", code], cwd=elsewhere, env=env).stdout
    assert where.splitlines()[0].startswith(purelib)
    assert where.splitlines()[1] == f"False {elsewhere} None"  # outputs under the current folder; no GLUE guess

    command = venv / "bin" / "bert-lottery"
    help_text = _run([str(command), "--help"], cwd=elsewhere, env=env).stdout
    assert "task: cola, custom, mnli" in help_text and "experiment: finetune, imp, magnitude" in help_text

    _run([str(command), "model=tiny", "task=rte", f"data.glue_dir={tiny_glue}", "debug=fast",
          "trainer.enable_progress_bar=false"], cwd=elsewhere, env=env, timeout=300)
    finetunes = list((elsewhere / "outputs" / "tiny" / "rte" / "seed1337").glob("finetune-*/metrics.json"))
    assert len(finetunes) == 1
