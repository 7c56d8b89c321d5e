"""What is inside a ticket: attention patterns of its heads, how importance moved during the search,
and what it costs to run; end to end on the tiny model, and the report's sections."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lottery.patterns import TYPES
from lottery.report import write_report
from lottery.report.evolution import consecutive_spearman, pruned_at, survivor_share_by_initial_rank
from pipeline import train
from tests.helpers import compose_config, experiment_dir, stage_metrics, tiny_overrides


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_glue):
    """Two seeds of the structured experiment and of the patterns experiment on the tiny model."""
    root = tmp_path_factory.mktemp("inside")
    results = {}
    for seed in (1, 2):
        base = tiny_overrides(root, tiny_glue, "task=rte", f"seed={seed}")
        results[seed] = train(compose_config([*base, "experiment=structured", "structured.head_fraction=0.25",
                                              "tickets.retrain=false", "cost.min_run_time_s=0.01"]))
        train(compose_config([*base, "experiment=patterns", "patterns.examples=8"]))
    return root, results


def test_patterns_json_has_a_type_per_head_for_both_models(sweep):
    root, _ = sweep
    data = json.loads((experiment_dir(root, "rte", "patterns-paper", seed=1) / "patterns.json").read_text())
    for model in ("pretrained", "finetuned"):
        types = data[model]["types"]
        assert len(types) == 2 and all(len(row) == 4 for row in types)
        assert {t for row in types for t in row} <= set(TYPES)
        assert set(data[model]["features"]) == {"vertical", "diagonal", "block", "concentration"}
        assert data[model]["examples"] == 8
    assert (experiment_dir(root, "rte", "patterns-paper", seed=1) / "maps_finetuned.npz").is_file()


def test_every_ticket_records_what_it_costs(sweep):
    _, results = sweep
    for ticket in results[1]["tickets"].values():
        cost = ticket["cost"]
        assert cost["params_full"] > cost["params_pruned"] or ticket["heads_kept"] == 8  # physically smaller
        assert cost["flops_per_example_pruned"] <= cost["flops_per_example_full"]
        assert cost["latency_ms_b1_full"] > 0 and cost["latency_ms_b64_pruned"] > 0
        assert cost["device"] == "cpu" and cost["precision"] == "fp32" and cost["threads"] == torch.get_num_threads()
        if "speedup_flops" in cost:
            assert cost["speedup_flops"] == pytest.approx(cost["flops_per_example_full"] / cost["flops_per_example_pruned"])
    root, _ = sweep
    folder = experiment_dir(root, "rte", "structured-paper", seed=1)
    on_disk = {kind: stage_metrics(folder / "cost" / kind) for kind in results[1]["tickets"]}
    for cost in on_disk.values():
        assert cost["device"] == "cpu" and cost["precision"] == "fp32" and cost["threads"] >= 1
    # the full model is timed once per experiment: every ticket compares against the same timing
    # (three timings of it would never agree to the last bit)
    for key in ("latency_ms_b1_full", "latency_ms_b64_full"):
        assert len({cost[key] for cost in on_disk.values()}) == 1, key


def test_the_report_draws_patterns_evolution_and_cost(sweep):
    root, _ = sweep
    written = write_report(root).written
    names = {path.name for path in written}
    assert {"importance_evolution_tiny_structured-paper_rte_seed1.png", "importance_evolution_tiny_structured-paper_rte_seed2.png",
            "pattern_shares_tiny_structured-paper_rte.png", "pattern_examples_tiny_rte.png"} <= names
    shares = pd.read_csv(root / "report" / "patterns" / "shares_tiny_structured-paper_rte.csv")
    for state in ("pre-trained", "fine-tuned"):
        part = shares[shares["model_state"] == state]
        assert set(part["seed"]) == {"1", "2", "pooled"} and set(part["type"]) == set(TYPES)
        for seed in ("1", "2"):
            rows = part[part["seed"] == seed]
            assert (rows["n_survivors"] + rows["n_pruned"] == 8).all()  # the tiny model's 8 heads
            if 0 < rows["n_survivors"].iloc[0] < 8:
                assert rows["survivors_share"].sum() == pytest.approx(1.0)
                assert rows["pruned_share"].sum() == pytest.approx(1.0)
    text = (root / "report" / "patterns" / "shares_tiny_structured-paper_rte.md").read_text()
    assert "randomly initialised model, not a masked-language-model checkpoint" in text
    table = (root / "report" / "table.md").read_text()
    assert "| s-good speed-up, batch 64 |" in table and "speed-up = eval latency of the full model" in table


def test_example_grid_of_single_sentences_has_no_block_share(tmp_path):
    """CoLA-like data has no pairs: the block share is stored as null and shown as "-"."""
    from lottery.io import write_json
    from lottery.report.patterns_section import example_grid

    nan = float("nan")
    features = {"vertical": [[0.9, 0.1]], "diagonal": [[0.0, 0.8]], "block": [[nan, nan]], "concentration": [[0.9, 0.8]]}
    write_json(tmp_path / "patterns.json", {"finetuned": {"types": [["vertical", "diagonal"]], "features": features}})
    data = json.loads((tmp_path / "patterns.json").read_text())
    assert data["finetuned"]["features"]["block"] == [[None, None]]
    np.savez(tmp_path / "maps_finetuned.npz", map_0=np.full((1, 2, 3, 3), 1 / 3))
    figure = example_grid({5: {**data, "task": "cola", "model": "tiny", "_folder": tmp_path}})
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["L1 H1  v 0.90 d 0.00\nb - c 0.90", "L1 H2  v 0.10 d 0.80\nb - c 0.80"]


def test_pattern_panels_by_hand(monkeypatch):
    """Pre-trained types hold for every seed; fine-tuned ones only for the seeds classified; survivors
    are compared with the pruned heads of the same seed."""
    from types import SimpleNamespace

    from lottery.report import patterns_section

    masks = {1: [[1, 1, 0, 0]], 2: [[1, 0, 1, 0]], 3: [[1, 1, 1, 0]]}
    tuned = {"task": "rte", "seed": 2, "recipe": {"lr": 1e-4}}
    group = [SimpleNamespace(results=SimpleNamespace(seed=seed, settings={**tuned, "seed": seed, "mode": "structured",
                                                                          "structured": {"split": "dev"}}))
             for seed in masks]
    monkeypatch.setattr(patterns_section, "structured_masks",
                        lambda run: (np.asarray(masks[run.results.seed]), np.ones(1, dtype=int)))
    pre = [["vertical", "diagonal", "block", "heterogeneous"]]
    patterns = {2: {"pretrained": {"types": pre}, "finetuned": {"types": [["block", "block", "vertical", "vertical"]]},
                    "finetune_settings": tuned}}
    found = patterns_section.panels(patterns, group)
    assert found["pre-trained"][0] == [1, 2, 3] and found["pre-trained"][1] == [pre] * 3
    assert found["fine-tuned"][0] == [2] and found["fine-tuned"][1] == [[["block", "block", "vertical", "vertical"]]]
    table = patterns_section.contrast_table(patterns_section.contrasts(patterns, group, permutations=200))
    table = table.set_index(["model_state", "seed", "type"])
    # seed 2, fine-tuned: survivors = heads 1, 3 = {block, vertical}; pruned = heads 2, 4 = {block, vertical}
    row = table.loc[("fine-tuned", 2, "block")]
    assert (row["survivors_share"], row["pruned_share"], row["difference"]) == (0.5, 0.5, 0.0)
    # seed 1, pre-trained: survivors {vertical, diagonal}, pruned {block, heterogeneous}
    row = table.loc[("pre-trained", 1, "vertical")]
    assert (row["survivors_share"], row["pruned_share"], row["n_survivors"], row["n_pruned"]) == (0.5, 0.0, 2, 2)
    # seed 3 keeps 3 of 4: vertical 1/3 among survivors, 0 among the pruned (heterogeneous)
    pooled = table.loc[("pre-trained", "pooled", "vertical")]
    assert pooled["difference"] == pytest.approx(np.mean([0.5, 0.5, 1 / 3]))
    # Seed 2's patterns of another fine-tune (another learning rate) say nothing of its ticket's heads.
    patterns[2]["finetune_settings"] = {**tuned, "recipe": {"lr": 2e-5}}
    assert set(patterns_section.panels(patterns, group)) == {"pre-trained"}


def test_pretraining_note_names_models_that_are_not_mlm_checkpoints():
    from types import SimpleNamespace

    from lottery.report.patterns_section import pretraining_note

    minilm = SimpleNamespace(model="minilm", settings={"model": {"name_or_path": None, "random_init": False}})
    assert "sentence-embedding model trained contrastively" in pretraining_note(minilm)
    assert "not a masked-language-model checkpoint" in pretraining_note(minilm)
    minilm.settings["model"]["random_init"] = True
    assert "randomly initialised" in pretraining_note(minilm)
    minilm.model, minilm.settings["model"] = "bert_base", {"name_or_path": "bert-base-uncased", "random_init": False}
    assert pretraining_note(minilm) is None


def _record(iteration, mask, importance, passed=True):
    return {"iteration": iteration, "passed": passed, "head_mask": mask, "head_importance": importance}


def test_importance_evolution_by_hand():
    records = [
        _record(0, [[1, 1, 1, 1]], [[0.1, 0.4, 0.3, 0.9]]),
        _record(1, [[0, 1, 1, 1]], [[0.0, 0.5, 0.2, 1.0]]),  # head 1 pruned; order of the rest kept
        _record(2, [[0, 1, 0, 1]], [[0.0, 0.9, 0.0, 0.1]]),  # head 3 pruned: only 2 heads in common with 1
        _record(3, [[0, 0, 0, 1]], [[0.0, 0.0, 0.0, 1.0]], passed=False),
    ]
    assert consecutive_spearman(records)[0] == pytest.approx(1.0)  # heads 2, 3, 4 keep their order
    assert np.isnan(consecutive_spearman(records)[1])  # fewer than 3 heads in common: no correlation
    good = np.array([[0, 1, 0, 1]])
    assert pruned_at(records, good).tolist() == [[1, -1, 2, -1]]  # the failed iteration does not count
    shares = survivor_share_by_initial_rank(records, good, bins=2)
    assert shares.tolist() == [0.0, 1.0]  # both survivors were among the more important half at first
