"""Results you can trust: settings that differ never share a stage, broken runs are never marked
done, edited or corrupt files are noticed, odd values get one clear line, read-only results
can be read, and the entry point tells a user's mistake from a bug."""

import json
import logging
import os
from pathlib import Path

import pytest

from lottery.errors import ConfigError, NonFiniteError, ReadOnlyError
from lottery.masks import StructuredMasks
from pipeline import train
from pipeline.run import make_run
from tests.helpers import ROOT, compose_config, experiment_dir, finetune_dir, run_cli, stage_metrics, tiny_overrides


def structured(root, glue, *extra):
    return tiny_overrides(root, glue, "experiment=structured", "task=rte", "structured.head_fraction=0.25",
                          "tickets.kinds=[good,random]", *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_glue):
    root = tmp_path_factory.mktemp("trust")
    return root, train(compose_config(structured(root, tiny_glue)))


# ----- which settings share a stage -----
def test_settings_that_change_a_result_get_their_own_folders(tmp_path, tiny_glue):
    def folders(*extra):
        run = make_run(compose_config(structured(tmp_path, tiny_glue, *extra)))
        return run.finetune_dir, run.experiment_dir

    base = folders()
    assert folders("recipe.checkpoint_every_n_steps=7") == base  # changes no result: shared
    assert folders("recipe.lr=1e-4")[0] != base[0]
    assert folders("data.train_limit=10")[0] != base[0]
    for extra in ("search.threshold=0.8", "protocol=clean", "importance.accumulate=per_batch",
                  "structured.head_fraction=0.5", "search.split=train_subset"):
        other = folders(extra)
        assert other[0] == base[0] and other[1] != base[1], extra  # the same fine-tune, its own experiment
    assert folders("protocol=clean")[1].name.startswith("structured-clean-")
    assert folders("importance.accumulate=per_batch")[1].name.startswith("structured-custom-")
    magnitude = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "experiment=magnitude", "task=rte")))
    assert magnitude.finetune_dir == base[0]  # shared by every experiment of (model, task, seed, recipe, data)


def test_the_data_content_is_part_of_the_fine_tunes_identity(tmp_path, tiny_glue):
    import shutil

    glue = tmp_path / "glue"
    shutil.copytree(tiny_glue, glue)
    before = make_run(compose_config(structured(tmp_path, glue))).finetune_dir
    with open(glue / "RTE" / "train.tsv", "a") as handle:
        handle.write("999\tone more\tsentence\tentailment\n")
    assert make_run(compose_config(structured(tmp_path, glue))).finetune_dir != before


def test_results_record_their_protocol_and_settings(finished):
    root, results = finished
    exp = experiment_dir(root, "rte", "structured-paper")
    assert json.loads((exp / "settings.json").read_text()) == results["settings"]
    assert results["settings"]["structured"]["search"]["threshold"] == 0.9
    assert results["protocol"]["keys"] == {"accumulate": "running", "phase_change": "failed", "sampling": "bernoulli",
                                           "batching": "uniform", "empty_layer_bias": "drop",
                                           "random_pairing": "separate"}


# ----- stuck, broken, edited and corrupt -----
def test_a_search_killed_after_its_last_checkpoint_is_wrapped_up(finished, tiny_glue, tmp_path, monkeypatch):
    import shutil

    from callbacks.structured_pruning import StructuredPruning

    root, results = finished
    source = finetune_dir(root, "rte")
    shutil.copytree(source, tmp_path / source.relative_to(root))

    def killed_before_recording(self):
        raise KeyboardInterrupt("killed after the last checkpoint")  # the fit (and its checkpoint) finished

    monkeypatch.setattr(StructuredPruning, "finished", killed_before_recording)
    with pytest.raises(KeyboardInterrupt):
        train(compose_config(structured(tmp_path, tiny_glue, "tickets.retrain=false")))
    monkeypatch.undo()
    search_dir = experiment_dir(tmp_path, "rte", "structured-paper") / "search"
    assert (search_dir / "checkpoints" / "last.ckpt").is_file() and not (search_dir / "metrics.json").exists()
    again = train(compose_config(structured(tmp_path, tiny_glue, "tickets.retrain=false")))
    assert again["search"] == results["search"]


def test_a_diverging_fine_tune_stops_and_is_not_marked_done(tmp_path, tiny_glue):
    cfg = compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", "recipe.lr=1e8", "recipe.grad_clip=null"))
    with pytest.raises(NonFiniteError, match=r"training loss is (nan|inf) at step \d+ \(learning rate [0-9.e+]+\)"):
        train(cfg)
    assert not list(tmp_path.rglob("metrics.json"))


def test_an_edited_ticket_mask_redoes_its_scores(finished, tiny_glue, caplog):
    root, results = finished
    exp = experiment_dir(root, "rte", "structured-paper")
    masks = StructuredMasks.load_json(exp / "tickets" / "random.json")
    head = masks.head.clone()
    head[0] = 1 - head[0]  # another valid mask
    StructuredMasks(head, masks.mlp).save_json(exp / "tickets" / "random.json")
    with caplog.at_level(logging.INFO, logger="lottery"):
        edited = train(compose_config(structured(root, tiny_glue)))
    assert "an input changed" in caplog.text
    ticket = edited["tickets"]["random"]
    assert ticket["head_mask"] == head.int().tolist() and ticket["heads_kept"] == int(head.sum())
    assert ticket["mask_sha256"] == StructuredMasks(head, masks.mlp).content_sha256()
    assert stage_metrics(exp / "pruned" / "random") == ticket["pruned"]
    assert json.loads((exp / "pruned" / "random" / "metrics.json").read_text())["inputs"] == {
        "mask_sha256": ticket["mask_sha256"]}
    assert edited["tickets"]["good"] == results["tickets"]["good"]  # the others are reused


def test_corrupt_stage_and_mask_files_are_redone(finished, tiny_glue, caplog):
    root, results = finished
    exp = experiment_dir(root, "rte", "structured-paper")
    done = exp / "pruned" / "good" / "metrics.json"
    done.write_text(done.read_text()[:30])  # truncated
    good = exp / "tickets" / "good.json"
    good.write_text(good.read_text()[:20])
    with caplog.at_level(logging.WARNING, logger="lottery"):
        again = train(compose_config(structured(root, tiny_glue)))
    assert f"{done} is not valid JSON" in caplog.text and f"{good} is not valid JSON" in caplog.text
    assert again["tickets"]["good"]["pruned"] == results["tickets"]["good"]["pruned"]
    assert json.loads(done.read_text())["metrics"] == results["tickets"]["good"]["pruned"]


# ----- odd values -----
@pytest.mark.parametrize(("override", "message"), [
    ("seed=1.5", "seed must be an integer (e.g. seed=1337), got 1.5"),
    ("seed=abc", "seed must be an integer (e.g. seed=1337), got 'abc'"),
    ("search.threshold=-1", "threshold must be a number in (0, 1]"),
    ("search.threshold=2", "threshold must be a number in (0, 1]"),
    ("structured.target=attention", "structured.target must be one of"),
    ("tickets.sampling=uniform", "tickets.sampling must be one of"),
    ("tickets.kinds=[good,lucky]", "tickets.kinds must be a non-empty list of ['good', 'random', 'bad']"),
    ("importance=nonsense", None),
])
def test_odd_values_are_one_clear_error(tmp_path, tiny_glue, override, message):
    if message is None:  # an unknown config group option: Hydra lists the valid ones
        with pytest.raises(Exception, match="nonsense"):
            compose_config(structured(tmp_path, tiny_glue, override))
        return
    with pytest.raises(ConfigError) as error:
        train(compose_config(structured(tmp_path, tiny_glue, override)))
    assert message in str(error.value)
    assert not (tmp_path / "tiny").exists()  # refused before any work


def test_magnitude_values_are_checked_before_any_work(tmp_path, tiny_glue):
    for override, message in (("magnitude.fraction=2", "magnitude.fraction must be a number in (0, 1)"),
                              ("magnitude.max_steps=-1", "max_steps must be an integer >= 0"),
                              ("magnitude.exit_mask=first", "exit_mask must be one of")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            train(compose_config(tiny_overrides(tmp_path, tiny_glue, "experiment=magnitude", "task=rte", override)))
    assert not (tmp_path / "tiny").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(("overrides", "message"), [
    (["model=custom", "model.name_or_path=roberta-base"], "model.id is missing"),
    (["model=custom", "model.id=mine", "model.name_or_path=/no/such/model"], "is neither an existing folder nor a hub id"),
    (["seed=1.5"], "seed must be an integer"),
])
def test_the_command_line_says_one_line_and_no_traceback(tmp_path, overrides, message):
    result = run_cli([*overrides, f"paths.root={tmp_path}"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and message in output and "Traceback" not in output, output[-2000:]


@pytest.mark.e2e
def test_a_bug_keeps_its_traceback(tmp_path):
    code = ("import sys, pipeline.training as t\n"
            "def broken(run): raise ValueError('a bug deep in the stack')\n"
            "t.pretrained_model = broken\n"
            "from pipeline.cli import main\n"
            f"sys.argv = ['lottery', 'model=tiny', 'task=rte', 'paths.root={tmp_path}']\n"
            "main()\n")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "WANDB_MODE": "offline"})
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" in output and "a bug deep in the stack" in output


# ----- read-only results -----
def _read_only(monkeypatch, root: Path) -> None:
    """Make `root` read-only as the pipeline sees it (the tests may run as root, whom modes do not stop)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path).is_relative_to(root) else
                        real_access(path, mode))


def test_rerunning_a_finished_experiment_needs_no_write_access(finished, tiny_glue, monkeypatch):
    root, results = finished
    train(compose_config(structured(root, tiny_glue)))  # settle the folder after the tests above
    before = {path: path.stat().st_mtime_ns for path in root.rglob("*") if ".hydra" not in path.parts}
    _read_only(monkeypatch, root)
    again = train(compose_config(structured(root, tiny_glue)))
    assert again["tickets"]["good"] == results["tickets"]["good"]
    after = {path: path.stat().st_mtime_ns for path in root.rglob("*") if ".hydra" not in path.parts}
    assert after == before  # nothing created, nothing rewritten


def test_a_stage_that_must_run_on_a_read_only_root_fails_with_one_line(finished, tiny_glue, monkeypatch):
    root, _ = finished
    _read_only(monkeypatch, root)
    with pytest.raises(ReadOnlyError, match="read-only.*set paths.root to a writable folder"):
        train(compose_config(structured(root, tiny_glue, "search.threshold=0.5")))


# ----- a broken mask file: one line, and the advice works -----
def measured_alike(results: dict) -> dict:
    """Results without the tickets' cost: a redrawn ticket's latency is measured again, never the same."""
    return {**results, "tickets": {kind: {key: value for key, value in ticket.items() if key != "cost"}
                                   for kind, ticket in results["tickets"].items()}}


def test_a_ticket_mask_with_values_other_than_0_and_1_is_one_line_naming_the_file(finished, tiny_glue):
    from lottery.masks import MaskValueError

    root, results = finished
    path = experiment_dir(root, "rte", "structured-paper") / "tickets" / "random.json"
    content = path.read_text()
    try:
        data = json.loads(content)
        data["head_mask"][0][0], data["mlp_mask"][1] = 0.5, 2
        path.write_text(json.dumps(data))
        with pytest.raises(MaskValueError) as error:
            train(compose_config(structured(root, tiny_glue)))
        assert f"from file {path}" in str(error.value) and "[0.5]" in str(error.value)
        assert "delete it if bert-lottery wrote it" in str(error.value)
        path.unlink()  # the advice: deleting it draws the ticket again
        assert measured_alike(train(compose_config(structured(root, tiny_glue)))) == measured_alike(results)
    finally:
        if not path.is_file():
            path.write_text(content)


def test_a_damaged_good_mask_of_a_finished_search_redoes_the_search(finished, tiny_glue, caplog):
    """Before: a truncated search/good.json said "delete it", and deleting it ended in FileNotFoundError
    (a deleted one: tests/test_magnitude_pipeline.py)."""
    root, results = finished
    good = experiment_dir(root, "rte", "structured-paper") / "search" / "good.json"
    content = good.read_text()
    good.write_text(content[:25])
    with caplog.at_level(logging.WARNING, logger="lottery"):
        again = train(compose_config(structured(root, tiny_glue)))
    assert f"stage {good.parent} is not finished" in caplog.text and "redoing it" in caplog.text
    assert good.read_text() == content and measured_alike(again) == measured_alike(results)


def test_a_weight_mask_file_with_other_values_is_one_line_naming_the_file(tmp_path):
    import numpy as np

    from lottery.magnitude import MASK_FILE_FORMAT, load_weight_masks
    from lottery.masks import MaskValueError

    path = tmp_path / "good.npz"
    np.savez(path, format=np.array(MASK_FILE_FORMAT), names=np.array(["w"]), bits_0=np.array([0.5, 2.0]),
             shape_0=np.array([2]))
    with pytest.raises(MaskValueError, match=rf"{path}: the mask of 'w' holds float64 values such as \[0.5, 2.0\]"):
        load_weight_masks(path)
