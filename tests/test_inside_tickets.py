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
from tests.helpers import compose_config, experiment_dir, tiny_overrides


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
    data = json.loads((experiment_dir(root, "rte", "patterns", seed=1) / "patterns.json").read_text())
    for model in ("pretrained", "finetuned"):
        types = data[model]["types"]
        assert len(types) == 2 and all(len(row) == 4 for row in types)
        assert {t for row in types for t in row} <= set(TYPES)
        assert set(data[model]["features"]) == {"vertical", "diagonal", "block", "concentration"}
        assert data[model]["examples"] == 8
    assert (experiment_dir(root, "rte", "patterns", seed=1) / "maps_finetuned.npz").is_file()


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


def test_the_report_draws_patterns_evolution_and_cost(sweep):
    root, _ = sweep
    written = write_report(root).written
    names = {path.name for path in written}
    assert {"importance_evolution_tiny_structured-paper_rte_seed1.png", "importance_evolution_tiny_structured-paper_rte_seed2.png",
            "pattern_shares_tiny_structured-paper_rte.png", "pattern_examples_tiny_rte.png"} <= names
    shares = pd.read_csv(root / "report" / "patterns" / "shares_tiny_structured-paper_rte.csv")
    every = shares[(shares["model_state"] == "fine-tuned") & (shares["heads"] == "all heads")].iloc[0]
    assert every["n"] == 2 * 8  # both seeds' 8 heads
    assert sum(every[t] for t in TYPES) == pytest.approx(1.0)
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


def test_pattern_shares_by_hand(monkeypatch):
    """Pre-trained types hold for every seed; fine-tuned ones only for the seeds classified."""
    from types import SimpleNamespace

    from lottery.report import patterns_section

    masks = {1: [[1, 1, 0, 0]], 2: [[1, 0, 1, 0]], 3: [[1, 1, 1, 0]]}  # super-survivor: head 1 only
    tuned = {"task": "rte", "seed": 2, "recipe": {"lr": 1e-4}}
    group = [SimpleNamespace(results=SimpleNamespace(seed=seed, settings={**tuned, "seed": seed, "mode": "structured",
                                                                          "structured": {"split": "dev"}}))
             for seed in masks]
    monkeypatch.setattr(patterns_section, "structured_masks",
                        lambda run: (np.asarray(masks[run.results.seed]), np.ones(1, dtype=int)))
    pre = [["vertical", "diagonal", "block", "heterogeneous"]]
    patterns = {2: {"pretrained": {"types": pre}, "finetuned": {"types": [["block", "block", "vertical", "vertical"]]},
                    "finetune_settings": tuned}}
    panels = patterns_section.shares(patterns, group)
    assert panels["pre-trained"]["all heads"] == pre[0] * 3
    assert panels["pre-trained"]["good survivors"] == ["vertical", "diagonal", "vertical", "block",
                                                       "vertical", "diagonal", "block"]
    assert panels["pre-trained"]["super-survivors"] == ["vertical"]
    assert panels["fine-tuned"] == {"all heads": ["block", "block", "vertical", "vertical"],
                                    "good survivors": ["block", "vertical"], "super-survivors": ["block"]}
    table = patterns_section.shares_table(panels).set_index(["model_state", "heads"])
    assert table.loc[("pre-trained", "good survivors"), "vertical"] == pytest.approx(3 / 7)
    assert table.loc[("pre-trained", "good survivors"), "n"] == 7
    # Seed 2's patterns of another fine-tune (another learning rate) say nothing of its ticket's heads.
    patterns[2]["finetune_settings"] = {**tuned, "recipe": {"lr": 2e-5}}
    assert set(patterns_section.shares(patterns, group)) == {"pre-trained"}


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
