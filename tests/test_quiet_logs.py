"""A run's output has no library chatter (Lightning's tips and device lines, weights_only notes,
load reports of the new classifier head, loading bars, the search's by-design warnings), and
real warnings still show."""

import logging

import pytest
from safetensors.torch import load_file, save_file

from lottery.models import load_classifier, tiny_bert
from tests.helpers import ROOT, run_cli

CHATTER = ["Tip:", "litlogger", "litmodels", "GPU available", "TPU available", "weights_only", "LOAD REPORT",
           "Loading weights", "Writing model shards", "configure_optimizers` returned `None`",
           "have no `validation_step`", "in eval mode at the start of training", "LeafSpec", "SpearmanCorrcoef",
           "to estimate number of stepping batches", "`Trainer.fit` stopped"]


def test_a_structured_run_shows_real_warnings_and_no_chatter(tmp_path, tiny_glue):
    # log_every_n_steps larger than an epoch: a real warning of Lightning's, which must still show.
    result = run_cli(["model=tiny", "experiment=structured", "task=stsb", f"data.glue_dir={tiny_glue}",
                      f"paths.root={tmp_path}", "recipe.max_epochs=1", "recipe.batch_size=8", "recipe.eval_batch_size=8",
                      "structured.head_fraction=0.25", "tickets.cost=false", "trainer.log_every_n_steps=1000"], cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert [phrase for phrase in CHATTER if phrase in output] == []
    assert "smaller than the logging interval Trainer(log_every_n_steps=1000)" in output
    assert "| s-good pr |" in output


@pytest.fixture
def transformers_records():
    """The records transformers' loading code logs (after its logger's own filters)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_the_new_head_is_no_news_but_a_missing_encoder_weight_is(tmp_path, transformers_records):
    tiny_bert(num_labels=2, seed=0).bert.save_pretrained(tmp_path)  # an encoder without a task head
    model = load_classifier(tmp_path, num_labels=3)
    assert model.classifier.out_features == 3
    assert not [r for r in transformers_records if "LOAD REPORT" in r.getMessage()]
    weights = load_file(tmp_path / "model.safetensors")
    del weights["encoder.layer.0.output.dense.weight"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    load_classifier(tmp_path, num_labels=3)
    reports = [r.getMessage() for r in transformers_records if "LOAD REPORT" in r.getMessage()]
    assert len(reports) == 1 and "bert.encoder.layer.0.output.dense.weight" in reports[0]
