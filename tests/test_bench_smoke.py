"""`python -m bench --quick` writes both result files with every measurement (no timing assertions)."""

import json

from bench.cli import main

EXPECTED_IDS = {
    "masked_overhead",
    "pruned_vs_masked_half",
    "pruned_vs_masked_good",
    "importance_vs_training",
    "magnitude_enforced",
    "magnitude_step_minilm",
    "magnitude_step_bert_base",
    "eval_pruned_vs_full",
    "make_run_wall_time",
    "mrpc_padding",
}


def test_quick_bench_writes_json_and_markdown(tmp_path, capsys):
    # One thread: the smoke test checks the plumbing, and on a loaded machine 2 OpenMP threads wait on each other.
    assert main(["--quick", "--threads", "1", "--out", str(tmp_path)]) == 0

    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["meta"]["quick"] is True
    rows = {row["id"]: row for row in result["rows"]}
    assert set(rows) == EXPECTED_IDS
    for key, row in rows.items():
        if key not in ("make_run_wall_time", "mrpc_padding"):  # recorded by hand / skipped in quick mode
            assert isinstance(row["value"], float) and row["value"] > 0, key
        assert row["display"] and row["target"], key
    assert rows["make_run_wall_time"]["display"] == "not recorded" or rows["make_run_wall_time"]["value"] is not None
    assert rows["mrpc_padding"]["display"].startswith("not measured")

    markdown = (tmp_path / "bench.md").read_text()
    assert "| measurement | value | target | pass/fail |" in markdown
    for row in rows.values():
        assert row["measurement"] in markdown
    assert "| measurement | value | target | pass/fail |" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
