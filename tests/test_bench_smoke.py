"""`python -m bench --quick` writes both result files with every measurement (no timing assertions)."""

import json

import pytest
import torch

from bench.cli import main
from bench.throughput import device_label
from lottery.throughput import read_rates

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
    "resumable_state",
    "parallel_shared",
    "parallel_oversubscribed",
    "decoder_masked_overhead",
    "decoder_pruned_vs_masked",
    "fine_tune_vs_plain_tiny",
    "throughput_tiny",
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
    fine_tune = rows["fine_tune_vs_plain_tiny"]["details"]
    assert fine_tune["identical_weights"] and fine_tune["same_dev_metrics"]  # the plain loop does the same work
    # measurement 13's rates, saved for plan=true under this device's name (what pipeline.plan looks up)
    saved = read_rates(tmp_path / "throughput.json")[device_label()]
    assert [(e["model"], e["precision"], e["threads"]) for e in saved] == [("tiny BERT", "32", 1)]
    assert saved[0]["train_flops_per_s"] == pytest.approx(
        6 * saved[0]["params"] * saved[0]["train_tokens"] / saved[0]["train_s"])

    markdown = (tmp_path / "bench.md").read_text()
    assert "| measurement | value | target | pass/fail |" in markdown
    for row in rows.values():
        assert row["measurement"] in markdown
    assert "| measurement | value | target | pass/fail |" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_quick_bench_in_bf16_autocast_records_its_precision(tmp_path):
    # The GPU run uses bf16 autocast (as trainer=gpu does); the same code path runs on the CPU.
    assert main(["--quick", "--threads", "1", "--precision", "bf16", "--skip-fits", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["meta"]["precision"] == "bf16" and result["meta"]["device"].startswith("CPU")
    rows = {row["id"]: row for row in result["rows"]}
    assert rows["masked_overhead"]["value"] > 0 and rows["importance_vs_training"]["value"] > 0
    assert "bf16" in (tmp_path / "bench.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        main(["--quick", "--device", "cuda", "--out", str(tmp_path)])
    assert not (tmp_path / "bench.json").exists()
