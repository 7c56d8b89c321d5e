"""A refused run says one line, exits 2 and writes nothing: not even Hydra's bookkeeping, and never
over a valid run's. The command line runs in process here (Hydra's own entry point), so each case
costs no interpreter start-up; one case runs as a real process."""

import errno
import sys

import pytest

from tests.helpers import ROOT, run_cli


def command_line(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    """`python -m lottery ARGS` in this process: (exit code, what it printed)."""
    from pipeline.cli import main

    monkeypatch.setattr(sys, "argv", ["lottery", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize(("overrides", "message"), [
    (["seed=1.5"], "seed must be an integer (e.g. seed=1337), got 1.5"),
    (["seed=-3"], "seed must lie in 0 <= seed < 2**32 = 4294967296 (what numpy and torch accept), got -3"),
    ([f"seed={2**66}"], f"seed must lie in 0 <= seed < 2**32 = 4294967296 (what numpy and torch accept), got {2**66}"),
    (["experiment=structured", "search.threshold=2"], "threshold must be a number in (0, 1]"),
    (["+recipe.learning_rate=1e-5"], ("recipe.learning_rate is not a setting: nothing reads it, so it would "
                                      "change nothing; did you mean recipe.lr?")),
    (["model=custom", "model.id=nowhere", "model.name_or_path=bert-lottery-tests/no-such-model"],
     ("cannot fetch 'bert-lottery-tests/no-such-model' from the Hugging Face hub (offline mode is on: HF_HUB_OFFLINE "
     "is set) and it is not in the local cache: download it where the hub is reachable (huggingface-cli download "
     "bert-lottery-tests/no-such-model --local-dir /path/to/no-such-model) and set "
     "model.name_or_path=/path/to/no-such-model")),
])
def test_a_refused_run_says_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, overrides, message):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    root = tmp_path / "outputs"
    # A valid run's Hydra record where the refused run's would go (same model, task, seed, mode).
    mode = "structured" if "experiment=structured" in overrides else "finetune"
    record = root / "tiny" / "rte" / "seed1337" / ".hydra" / mode / ".hydra" / "config.yaml"
    record.parent.mkdir(parents=True)
    record.write_text("search:\n  threshold: 0.9\n")
    before = sorted(root.rglob("*"))
    code, output = command_line(monkeypatch, capsys, ["model=tiny", "task=rte", f"paths.root={root}", *overrides])
    assert code == 2 and message in output and "Traceback" not in output, output
    assert len(output.strip().splitlines()) == 1, output
    assert sorted(root.rglob("*")) == before and record.read_text() == "search:\n  threshold: 0.9\n"


def test_a_hub_model_without_the_hub_fails_at_once_in_one_line(tmp_path):
    """Before: `model=roberta_base` without the hub retried for ~55 s and ended in 106 lines."""
    result = run_cli(["model=custom", "model.id=nowhere", "model.name_or_path=bert-lottery-tests/no-such-model",
                      f"paths.root={tmp_path / 'outputs'}"], cwd=ROOT,
                     env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"})  # nothing listens there
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output and "Retrying" not in output, output[-3000:]
    assert "cannot fetch 'bert-lottery-tests/no-such-model' from the Hugging Face hub (ConnectError" in output
    assert "set model.name_or_path=/path/to/no-such-model" in output
    assert len(output.strip().splitlines()) == 1 and not (tmp_path / "outputs").exists()


def test_a_full_disk_anywhere_is_one_line(tmp_path, monkeypatch, capsys):
    """A write that fails outside the project's own writers (a logger, a library) still ends in one line."""
    import pipeline

    def disk_full(cfg):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "logs" / "metrics.csv"))

    monkeypatch.setattr(pipeline, "train", disk_full)
    code, output = command_line(monkeypatch, capsys, ["model=tiny", "task=rte", f"paths.root={tmp_path}"])
    assert code == 2 and "Traceback" not in output
    assert f"DiskFullError: cannot write {tmp_path / 'logs' / 'metrics.csv'}: no space left on the device (" in output
