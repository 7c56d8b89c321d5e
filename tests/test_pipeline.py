"""The composed config end to end in process: fine-tune, evaluate, save, reuse, force, resume."""

import logging

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from lightning_modules.glue_module import GlueModule
from pipeline import train
from pipeline.run import make_run
from pipeline.training import evaluate
from tests.helpers import compose_config, finetune_dir, stage_metrics, tiny_overrides


def test_paper_recipe_is_the_default_and_minilm_overrides_the_lr():
    paper = compose_config(["model=bert_base"]).recipe
    assert (paper.max_length, paper.batch_size, paper.lr, paper.max_epochs, paper.adam_eps,
            paper.weight_decay, paper.warmup_ratio, paper.grad_clip) == (128, 32, 2e-5, 3, 1e-8, 0.0, 0.0, 1.0)
    assert compose_config(["model=minilm"]).recipe.lr == 5e-5
    assert compose_config(["model=minilm", "recipe.lr=1e-4"]).recipe.lr == 1e-4  # the command line wins


def test_fit_evaluate_save_and_reload(tmp_path, tiny_glue):
    cfg = compose_config(tiny_overrides(tmp_path, tiny_glue, "task=mrpc"))
    metrics = train(cfg)
    run_dir = finetune_dir(tmp_path, "mrpc")
    assert stage_metrics(run_dir) == metrics
    assert set(metrics) == {"accuracy", "f1"}
    assert not (run_dir / "checkpoints").exists()
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model")  # plain transformers
    run = make_run(cfg)
    again = evaluate(run, GlueModule(model, run.task), tmp_path / "check", "check")
    assert again == pytest.approx(metrics)


def test_regression_and_mnli_have_their_metrics(tmp_path, tiny_glue):
    assert set(train(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=stsb")))) == {
        "pearson", "spearman", "pearson_spearman"}
    assert set(train(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=mnli")))) == {"accuracy", "accuracy_mm"}


def test_rerun_reuses_and_force_redoes(tmp_path, tiny_glue, caplog):
    overrides = tiny_overrides(tmp_path, tiny_glue, "task=rte")
    train(compose_config(overrides))
    done = finetune_dir(tmp_path, "rte") / "metrics.json"
    stamp = done.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="lottery"):
        train(compose_config(overrides))
    assert "reusing finished result" in caplog.text and done.stat().st_mtime_ns == stamp
    train(compose_config([*overrides, "force=true"]))
    assert done.stat().st_mtime_ns != stamp


def test_same_seed_gives_the_same_metrics(tmp_path, tiny_glue):
    first = train(compose_config(tiny_overrides(tmp_path / "a", tiny_glue, "task=rte")))
    second = train(compose_config(tiny_overrides(tmp_path / "b", tiny_glue, "task=rte")))
    assert first == second


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, tiny_glue, monkeypatch, caplog):
    overrides = tiny_overrides(tmp_path, tiny_glue, "task=rte", "recipe.checkpoint_every_n_steps=1",
                               "recipe.max_epochs=2")
    calls = {"n": 0}

    def crash_after_three(self, outputs, batch, batch_idx):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("simulated kill")

    monkeypatch.setattr(GlueModule, "on_train_batch_end", crash_after_three, raising=False)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(compose_config(overrides))
    run_dir = finetune_dir(tmp_path, "rte")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model").exists()  # nothing half-written
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert step >= 6
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="lottery"):
        metrics = train(compose_config(overrides))
    assert "resuming finetune from" in caplog.text and "accuracy" in metrics
    assert (run_dir / "model" / "config.json").is_file()


def test_holdout_fine_tune_has_its_own_folder_and_train_subset_shares_the_plain_one(tmp_path, tiny_glue):
    folders = {split: make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", f"search.split={split}")))
               .finetune_dir for split in ("dev", "train_holdout", "train_subset")}
    assert folders["dev"] == folders["train_subset"] != folders["train_holdout"]


def test_ddp_sim_gives_the_same_dev_metrics_as_one_process(tmp_path, tiny_glue):
    metrics = train(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=mrpc")))
    model = AutoModelForSequenceClassification.from_pretrained(finetune_dir(tmp_path, "mrpc") / "model")
    ddp = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=mrpc", "trainer=ddp_sim")))
    assert evaluate(ddp, GlueModule(model, ddp.task), tmp_path / "ddp", "ddp") == pytest.approx(metrics)
    trained = train(compose_config(tiny_overrides(tmp_path / "fit", tiny_glue, "task=mrpc", "trainer=ddp_sim")))
    assert set(trained) == {"accuracy", "f1"}
    assert (finetune_dir(tmp_path / "fit", "mrpc") / "model" / "config.json").is_file()


def test_wandb_logger_works_offline_and_finishes_its_runs(tmp_path, tiny_glue, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    train(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", "logger=wandb")))
    import wandb

    assert wandb.run is None  # finished, so the next stage or sweep job starts its own
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))  # one run per stage: training and its dev scores


def test_how_a_run_executes_is_part_of_the_fine_tune_identity(tmp_path, tiny_glue):
    """A 2-process DDP fine-tune takes half the steps of twice the batch: another model, its own folder."""
    def folder(*extra):
        return make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", *extra))).finetune_dir

    single, ddp = folder(), folder("trainer=ddp_sim")
    assert single != ddp and ddp != folder("trainer=ddp_sim", "trainer.devices=3")
    assert single != folder("trainer.precision=bf16-mixed")
    settings = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", "trainer=ddp_sim"))).finetune_identity
    assert settings["execution"] == {"accelerator": "cpu", "world_size": 2, "strategy": "DDPStrategy"}
