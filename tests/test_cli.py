"""The command line as a user meets it: clear errors for mistakes, multirun of two jobs."""

import pytest

from lottery.models import ModelLayoutError, load_classifier
from tests.helpers import ROOT, finetune_dir, run_cli, stage_metrics, tiny_overrides


@pytest.mark.e2e
def test_unknown_task_lists_valid_names_without_a_traceback(tmp_path):
    result = run_cli(["task=squad", f"paths.root={tmp_path}"], cwd=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "squad" in output and "rte" in output and "stsb" in output and "Traceback" not in output


@pytest.mark.e2e
def test_unknown_model_lists_valid_names(tmp_path):
    result = run_cli(["model=gpt2", f"paths.root={tmp_path}"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "minilm" in output and "bert_base" in output and "Traceback" not in output


@pytest.mark.e2e
def test_missing_glue_folder_names_the_file_and_both_ways(tmp_path):
    result = run_cli(tiny_overrides(tmp_path, tmp_path / "no_glue", "task=rte"), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert str(tmp_path / "no_glue" / "RTE" / "train.tsv") in output and "GLUE_DIR" in output and "hub" in output
    assert "Traceback" not in output


def test_a_model_that_is_not_bert_like_fails_early(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_head=2, n_embd=8).save_pretrained(tmp_path)
    with pytest.raises(ModelLayoutError, match="BERT-layout"):
        load_classifier(tmp_path, num_labels=2)


@pytest.mark.e2e
def test_multirun_of_two_jobs(tmp_path, tiny_glue):
    result = run_cli(["-m", *tiny_overrides(tmp_path, tiny_glue, "task=rte"), "seed=1,2"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (1, 2):
        assert "accuracy" in stage_metrics(finetune_dir(tmp_path, "rte", seed=seed))
