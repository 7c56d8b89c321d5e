"""The magnitude experiment end to end on the tiny BERT: one-shot (paper) and IMP with rewinding."""

import itertools
import json
import logging

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from callbacks.magnitude_pruning import IterativeMagnitudePruning
from lottery.magnitude import load_weight_masks
from pipeline import train
from pipeline.modes import imp
from pipeline.run import make_run
from pipeline.training import finetune
from tests.helpers import compose_config, experiment_dir, tiny_overrides


def magnitude_overrides(root, glue, *extra):
    return tiny_overrides(root, glue, "experiment=magnitude", "task=stsb", "magnitude.fraction=0.3", *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_glue):
    root = tmp_path_factory.mktemp("magnitude")
    return root, train(compose_config(magnitude_overrides(root, tiny_glue)))


def test_results_share_the_structured_schema_with_sparsity(finished):
    root, results = finished
    exp = experiment_dir(root, "stsb", "magnitude-paper")
    assert json.loads((exp / "results.json").read_text()) == results
    assert results["mode"] == "magnitude" and set(results["tickets"]) == {"good", "random", "bad"}
    good = results["tickets"]["good"]
    assert 0 < good["sparsity"] < 1 and len(good["head_survival"]) == 2 and len(good["mlp_survival"]) == 2
    assert good["pruned"]["pearson_spearman"] >= results["search"]["threshold_score"] - 1e-6
    masks = {kind: load_weight_masks(exp / results["tickets"][kind]["mask_file"]) for kind in results["tickets"]}
    assert masks["random"].num_kept() == masks["bad"].num_kept() == masks["good"].num_kept()
    assert masks["bad"] != masks["good"]


def test_each_step_prunes_the_fraction_of_the_remaining_weights(finished):
    root, _results = finished
    steps = sorted((experiment_dir(root, "stsb", "magnitude-paper") / "search").glob("step_*.json"))
    sparsities = [json.loads(path.read_text())["sparsity"] for path in steps]
    for before, after in itertools.pairwise(sparsities):
        assert 1 - after == pytest.approx((1 - before) * 0.7, abs=1e-4)


def test_retrained_ticket_keeps_pruned_weights_at_zero(finished):
    root, _results = finished
    from transformers import AutoModelForSequenceClassification

    exp = experiment_dir(root, "stsb", "magnitude-paper")
    model = AutoModelForSequenceClassification.from_pretrained(exp / "retrained" / "good" / "model")
    masks = load_weight_masks(exp / "tickets" / "good.npz")
    parameters = dict(model.named_parameters())
    assert all(torch.count_nonzero(parameters[name].detach()[~mask]) == 0 for name, mask in masks.items())


class RecordImpMasks(Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_fit_end(self, trainer, pl_module):
        callback = next(c for c in trainer.callbacks if isinstance(c, IterativeMagnitudePruning))
        callback.masks.save(f"{self.folder}/rank{trainer.global_rank}.npz")


def imp_overrides(root, glue, *extra):
    # RTE: accuracy stays positive on the untrained tiny model, so every round passes 0.01 x full.
    return tiny_overrides(root, glue, "experiment=imp", "task=rte", "imp.fraction=0.3", "imp.rounds=3",
                          "imp.epochs_per_round=1", "search.threshold=0.01", "recipe.checkpoint_every_n_steps=1",
                          "tickets.retrain=false", *extra)


def test_imp_resumes_after_a_kill_mid_round(tmp_path, tiny_glue, monkeypatch, caplog):
    reference = train(compose_config(imp_overrides(tmp_path / "whole", tiny_glue)))
    assert [h["step"] for h in reference["search"]["history"]] == [0, 1, 2, 3]  # the full model, then 3 rounds
    original = IterativeMagnitudePruning.on_train_batch_end
    calls = {"n": 0}

    def killed(self, trainer, pl_module, outputs, batch, batch_idx):
        original(self, trainer, pl_module, outputs, batch, batch_idx)
        calls["n"] += 1
        if calls["n"] == 8:  # round 2 of 3 (tiny: 6 batches a round)
            raise RuntimeError("simulated kill")

    monkeypatch.setattr(IterativeMagnitudePruning, "on_train_batch_end", killed)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(compose_config(imp_overrides(tmp_path / "killed", tiny_glue)))
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="lottery"):
        resumed = train(compose_config(imp_overrides(tmp_path / "killed", tiny_glue)))
    assert "resuming imp from" in caplog.text
    assert [h["sparsity"] for h in resumed["search"]["history"]] == [
        h["sparsity"] for h in reference["search"]["history"]]


def test_imp_under_ddp_sim_holds_identical_masks_on_both_ranks(tmp_path, tiny_glue, monkeypatch):
    run = make_run(compose_config(imp_overrides(tmp_path, tiny_glue, "trainer=ddp_sim", "imp.rounds=2")))
    finetune(run)
    original = imp.resumable_fit

    def with_recorder(run, run_dir, module, job_type, callbacks=None, **kwargs):
        return original(run, run_dir, module, job_type, [*(callbacks or []), RecordImpMasks(tmp_path)], **kwargs)

    monkeypatch.setattr(imp, "resumable_fit", with_recorder)
    summary = imp.imp_search(run, tmp_path / "imp")
    assert load_weight_masks(tmp_path / "rank0.npz") == load_weight_masks(tmp_path / "rank1.npz")
    # the search as it ended in the spawned ranks, not this process's untouched callback
    assert [record["step"] for record in summary.history] == [0, 1, 2] and summary.good_iteration == 2
    assert load_weight_masks(tmp_path / "imp" / "good.npz") == load_weight_masks(tmp_path / "rank0.npz")


def test_a_deleted_good_mask_of_a_finished_search_redoes_the_search(finished, tiny_glue, caplog):
    root, results = finished
    good = experiment_dir(root, "stsb", "magnitude-paper") / "search" / "good.npz"
    content = good.read_bytes()
    good.unlink()
    with caplog.at_level(logging.WARNING, logger="lottery"):
        again = train(compose_config(magnitude_overrides(root, tiny_glue)))
    assert f"stage {good.parent} is not finished" in caplog.text
    assert good.read_bytes() == content and again == results
