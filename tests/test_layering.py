"""The layering of the tree, for every module in it (new modules are checked without listing them):

- the algorithms (`lottery`, but its report and entry point) import no Lightning, Hydra, OmegaConf or
  W&B, and none of the orchestration (`pipeline`) or the Lightning side (`callbacks`, `lightning_modules`);
- the report (`lottery.report`) likewise, except that its `wandb_push` module may import W&B;
- `callbacks` and `lightning_modules` never import `pipeline`; callbacks talk to a module through
  a protocol, so they never import `lightning_modules` either;
- nothing imports `pipeline` but `pipeline` itself, the entry point (`lottery.__main__`), the API's
  lazy re-export of `retrain` (`lottery/__init__.py`, at first use only) and bench/tests.

Checked from the source (every import statement, also those inside functions), and once at run time.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "wandb")


def modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        yield name, path


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def forbidden_for(module: str) -> set[str]:
    if module == "lottery.__main__":
        return set()  # the entry point
    if module == "lottery":  # the API: re-exports pipeline.api.retrain when first asked for (module __getattr__)
        return set(FRAMEWORKS) | {"callbacks", "lightning_modules"}
    if module.startswith("lottery.report"):
        allowed_wandb = {"wandb"} if module == "lottery.report.wandb_push" else set()
        return (set(FRAMEWORKS) - allowed_wandb) | {"pipeline", "callbacks", "lightning_modules"}
    if module.startswith("lottery"):
        return set(FRAMEWORKS) | {"pipeline", "callbacks", "lightning_modules"}
    if module.startswith("callbacks"):
        return {"pipeline", "lightning_modules", "hydra", "omegaconf", "wandb"}
    if module.startswith("lightning_modules"):
        return {"pipeline", "callbacks", "hydra", "omegaconf", "wandb"}
    return set()


def test_every_module_respects_the_layering():
    checked, violations = 0, []
    for package in ("lottery", "callbacks", "lightning_modules", "pipeline"):
        for module, path in modules(package):
            checked += 1
            bad = sorted(name for name in imported(path) if top(name) in forbidden_for(module))
            if bad:
                violations.append(f"{module} imports {bad}")
    assert checked > 40 and not violations, violations


def test_the_static_check_would_catch_a_violation(tmp_path):
    sneaky = tmp_path / "x.py"
    sneaky.write_text("def f():\n    import pytorch_lightning\n    from pipeline.run import Run\n")
    assert {"pytorch_lightning", "pipeline.run"} <= imported(sneaky)
    assert "pipeline" in forbidden_for("lottery.some_new_module")


def test_algorithms_import_without_lightning_hydra_or_wandb_at_run_time():
    names = [m for package in ("lottery",) for m, _ in modules(package) if m != "lottery.__main__"]
    code = (f"import sys\nfor name in {names!r}: __import__(name)\n"
            f"print([m for m in {list(FRAMEWORKS) + ['pipeline', 'callbacks', 'lightning_modules']!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
