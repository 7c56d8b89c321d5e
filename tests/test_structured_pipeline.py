"""The structured experiment end to end on the tiny BERT: files, tickets, resume and DDP."""

import json
import logging
import shutil

import pytest
from pytorch_lightning.callbacks import Callback

from callbacks.structured_pruning import StructuredPruning
from lottery.accounting import encoder_parameter_count
from lottery.errors import ConfigError
from lottery.masks import StructuredMasks
from lottery.pruning import load_pruned
from pipeline import train
from pipeline.modes.structured import search
from pipeline.run import make_run
from tests.helpers import compose_config, experiment_dir, finetune_dir, tiny_overrides

ITER_KEYS = {"head_mask", "mlp_mask", "score", "head_importance_raw", "head_importance", "mlp_importance_raw",
             "mlp_importance"}


def structured_overrides(root, glue, *extra):
    # lr 1e-4: the tiny model's STS-B fine-tune (uniform batches, seed 1337) then scores above 0 (+0.064;
    # -0.063 at the tiny model's lr), so the pass rule (0.9 x the full score) can accept masks
    return tiny_overrides(root, glue, "experiment=structured", "task=stsb", "structured.head_fraction=0.25",
                          "recipe.lr=1e-4", *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_glue):
    root = tmp_path_factory.mktemp("structured")
    results = train(compose_config(structured_overrides(root, tiny_glue)))
    return root, results


def test_results_and_files(finished):
    root, results = finished
    exp = experiment_dir(root, "stsb", "structured-paper")
    assert json.loads((exp / "results.json").read_text()) == results
    assert results["metric"] == "pearson_spearman" and set(results["tickets"]) == {"good", "random", "bad"}
    iterations = sorted((exp / "search").glob("iter_*.json"))
    assert iterations[0].name == "iter_000.json"
    first = json.loads(iterations[0].read_text())
    assert ITER_KEYS <= set(first) and all(v == 1 for row in first["head_mask"] for v in row)
    good = results["tickets"]["good"]
    assert results["tickets"]["bad"]["heads_kept"] == good["heads_kept"]  # bad: exactly good's size
    for kind in ("random", "bad"):
        assert results["tickets"][kind]["pruned"] and results["tickets"][kind]["retrained"]
    assert results["protocol"]["name"] == "paper" and results["protocol"]["keys"] == {
        "accumulate": "running", "phase_change": "failed", "sampling": "bernoulli", "batching": "uniform",
        "empty_layer_bias": "drop", "random_pairing": "separate", "precision": "fp32"}
    # protocol.random_pairing=separate: the random ticket is retrained with its own mask, recorded beside it
    own = results["tickets"]["random"]["retrained_mask"]
    assert own["mask_file"] == "tickets/random_retrained.json" and (exp / own["mask_file"]).is_file()
    assert json.loads((exp / "retrained" / "random" / "metrics.json").read_text())["inputs"] == {
        "mask_sha256": own["mask_sha256"]}
    assert all("retrained_mask" not in results["tickets"][kind] for kind in ("good", "bad"))
    assert results["precision"] == {"device": "cpu", "precision": "32-true"}  # what ran (protocol.precision: GPU only)
    assert json.loads((exp / "settings.json").read_text()) == results["settings"]


def test_good_ticket_passes_the_threshold_on_the_search_split(finished):
    _, results = finished
    search = results["search"]
    assert results["tickets"]["good"]["pruned"]["pearson_spearman"] == pytest.approx(
        max(search["threshold_score"], results["tickets"]["good"]["pruned"]["pearson_spearman"]))
    assert results["tickets"]["good"]["pruned"]["pearson_spearman"] >= search["threshold_score"] - 1e-6


def test_retrained_ticket_is_physically_smaller_as_accounted(finished):
    root, results = finished
    folder = experiment_dir(root, "stsb", "structured-paper") / "retrained" / "good" / "model"
    model = load_pruned(folder)
    assert encoder_parameter_count(model) == results["tickets"]["good"]["params_kept"]


def test_rerun_reuses_every_stage(finished, tiny_glue, caplog):
    root, results = finished
    with caplog.at_level(logging.INFO, logger="lottery"):
        again = train(compose_config(structured_overrides(root, tiny_glue)))
    assert again == results
    # finetune, search, and per ticket pruned, retrained and cost
    assert caplog.text.count("reusing finished result") == 1 + 1 + 3 + 3 + 3


def cli(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    """`python -m lottery ARGS` in this process (Hydra's own entry point): (exit code, stdout)."""
    import sys

    from pipeline.cli import main

    monkeypatch.setattr(sys, "argv", ["lottery", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().out


def test_a_plan_says_what_is_reused_and_what_runs_and_writes_nothing(finished, tiny_glue, tmp_path, monkeypatch,
                                                                     capsys):
    root, _ = finished
    before = sorted(root.rglob("*"))
    code, out = cli(monkeypatch, capsys, [*structured_overrides(root, tiny_glue), "plan=true"])
    assert code == 0 and sorted(root.rglob("*")) == before, out
    stages = [line.split()[:2] for line in out.splitlines() if line.startswith(("  reuse", "  run"))]
    kinds = ("good", "random", "bad")
    # fine-tune, search, and per ticket pruned, retrained and cost
    assert stages == [["reuse", "fine-tune"], ["reuse", "search"], *[["reuse", kind] for kind in kinds for _ in "prc"]]
    assert f"folder {experiment_dir(root, 'stsb', 'structured-paper')}" in out
    assert "results " in out and "(exists)" in out

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, out = cli(monkeypatch, capsys, ["-m", *structured_overrides(fresh, tiny_glue), "seed=1,2", "plan=true"])
    assert code == 0 and list(fresh.iterdir()) == [], out
    assert out.count("plan of structured on tiny / stsb / seed") == 2, out
    runs = [line for line in out.splitlines() if line.startswith("  run")]
    assert len(runs) == 2 * (2 + 3 * 3) and not any(line.startswith("  reuse") for line in out.splitlines())
    # the tiny STS-B files: 48 training examples, 24 dev (tests/conftest.py), one epoch
    assert "(48 training examples x 1 epochs, then 24 dev examples)" in runs[0], runs[0]
    assert "(24 dev examples per evaluation)" in runs[1], runs[1]
    # the sweep's total: the two jobs' stages (all run), projected or not (pipeline.plan.sweep_total_line)
    totals = [line for line in out.splitlines() if line.startswith("  total of the stages that run: ")]
    assert len(totals) == 2 and totals[0] == totals[1], totals
    sweep = out.splitlines()[-1]
    assert sweep.startswith("sweep plan: 2 jobs, "), out
    job, both = (float(text.split(" FLOPs")[0].split(", ")[-1].split(": ")[-1]) for text in (totals[0], sweep))
    assert both == pytest.approx(2 * job, rel=0.05)  # each printed to 2 significant digits


def test_killed_search_resumes_where_it_stopped(finished, tiny_glue, tmp_path, monkeypatch, caplog):
    root, results = finished
    # Reuse the finished fine-tune, then kill the search after two iterations.
    source = finetune_dir(root, "stsb")
    target = tmp_path / source.relative_to(root)
    target.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(source, target)
    original = StructuredPruning.on_train_epoch_end
    calls = {"n": 0}

    def killed_after_two(self, trainer, pl_module):
        original(self, trainer, pl_module)
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated kill")

    monkeypatch.setattr(StructuredPruning, "on_train_epoch_end", killed_after_two)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(compose_config(structured_overrides(tmp_path, tiny_glue, "tickets.retrain=false")))
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="lottery"):
        resumed = train(compose_config(structured_overrides(tmp_path, tiny_glue, "tickets.retrain=false")))
    assert "resuming the mask search" in caplog.text
    assert resumed["tickets"]["good"]["head_mask"] == results["tickets"]["good"]["head_mask"]
    assert resumed["search"] == results["search"]


class RecordMasks(Callback):
    """Writes, on every rank, the mask the rank holds when the fit ends (the last one evaluated)."""

    def __init__(self, folder):
        self.folder = folder

    def on_fit_end(self, trainer, pl_module):
        StructuredMasks(pl_module.masks.head, pl_module.masks.mlp).save_json(
            f"{self.folder}/rank{trainer.global_rank}.json")


def test_ddp_sim_search_gives_the_same_masks_on_both_ranks_and_as_one_process(finished, tiny_glue, tmp_path):
    root, results = finished
    cfg = compose_config(structured_overrides(root, tiny_glue, "trainer=ddp_sim"))
    run = make_run(cfg)
    # A 2-process fine-tune is another model (its own folder); search the one-process model.
    shutil.copytree(finetune_dir(root, "stsb"), run.finetune_dir, dirs_exist_ok=True)
    summary = search(run, tmp_path / "ddp", callbacks=[RecordMasks(tmp_path)])
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0 == rank1  # the mask each rank held at the end
    good = json.loads((tmp_path / "ddp" / "good.json").read_text())
    assert good["head_mask"] == results["tickets"]["good"]["head_mask"]
    assert good["mlp_mask"] == results["tickets"]["good"]["mlp_mask"]
    assert summary.full_score == pytest.approx(results["search"]["full_score"], abs=1e-5)
    assert summary.good_iteration == results["search"]["good_iteration"]


def test_wandb_offline_gets_the_results_table_and_mask_artifact(finished, tiny_glue, monkeypatch):
    from lottery.schema import Results
    from pipeline.wandb_results import log_results

    monkeypatch.setenv("WANDB_MODE", "offline")
    root, results = finished
    run = make_run(compose_config(structured_overrides(root, tiny_glue, "logger=wandb")))
    log_results(run, Results.from_dict(results), experiment_dir(root, "stsb", "structured-paper"))
    offline = list((root / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


def test_super_experiment_scores_super_tickets_from_the_report(finished, tiny_glue, tmp_path):
    root, results = finished
    source = tmp_path / "super" / "tiny" / "stsb" / "structured-paper"
    good = StructuredMasks.from_lists(results["tickets"]["good"]["head_mask"], results["tickets"]["good"]["mlp_mask"])
    for kind in ("good", "random", "bad"):
        good.save_json(source / f"super_{kind}.json")
    base = tiny_overrides(root, tiny_glue, "experiment=super", "task=stsb", "tickets.retrain=false", "recipe.lr=1e-4")
    super_results = train(compose_config([*base, f"super.dir={source}"]))
    assert super_results["mode"] == "super" and super_results["label_prefix"] == "super"
    assert super_results["tickets"]["good"]["pruned"] == results["tickets"]["good"]["pruned"]
    assert (experiment_dir(root, "stsb", "super-paper") / "results.json").is_file()
    with pytest.raises(ConfigError, match="super-ticket masks not found"):
        train(compose_config([*base, f"super.dir={tmp_path / 'nowhere'}"]))
