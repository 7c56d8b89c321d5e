"""A run's output has no library chatter (Lightning's tips and device lines, weights_only notes,
load reports of the new classifier head, loading bars, the search's by-design warnings), and
real warnings still show."""

import logging

import pytest
from safetensors.torch import load_file, save_file

from lottery.models import load_classifier, tiny_bert
from tests.helpers import ROOT, only, run_cli

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
    # For people: the stages, one line per search iteration, the table and where the results are, last.
    search = only(tmp_path.glob("tiny/stsb/seed1337/structured-*/search"))
    iterations = [line for line in output.splitlines() if "[lottery][INFO] search iteration " in line]
    assert len(iterations) == len(list(search.glob("iter_*.json"))) >= 2, output[-3000:]
    assert all(line.endswith((": pass", ": fail")) and " heads, " in line and " vs bar " in line
               for line in iterations), iterations
    assert "[lottery][INFO] running stage " in output and "[lottery][INFO] epoch 1/1 done" in output
    assert "epoch 1/100000" not in output  # a search's epochs are its iterations
    tail = result.stdout.strip().splitlines()[-10:]  # the log (warnings go to stderr)
    assert "| s-good pr |" in "\n".join(tail), tail
    assert tail[-1].endswith(f"results written to {search.parent / 'results.json'}"), tail
    run_log = only(tmp_path.glob("tiny/stsb/seed1337/.hydra/structured/*.log")).read_text()
    assert "| s-good pr |" in run_log and "results written to" in run_log


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
