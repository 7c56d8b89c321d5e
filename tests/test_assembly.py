"""The assembly: one registry of modes, objects built from config, one results schema, each job's
share of the CPUs."""

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

from lottery.errors import ConfigError, CorruptFileError
from lottery.schema import RESULTS_VERSION, Results, Ticket, read_results, row_label, write_results
from pipeline import threads
from pipeline.modes import MODES, get_mode
from tests.helpers import ROOT, compose_config

MODE_NAMES = ("finetune", "structured", "magnitude", "imp", "super", "patterns")


def test_every_experiment_config_names_a_registered_mode_and_back():
    get_mode("finetune")  # fills the registry
    configs = {OmegaConf.load(path)["mode"] for path in (ROOT / "conf" / "experiment").glob("*.yaml")}
    assert configs == set(MODES) == set(MODE_NAMES)
    with pytest.raises(ConfigError, match=r"unknown experiment mode 'pruning'; choose experiment=<one of \["):
        get_mode("pruning")


def test_nothing_outside_the_registry_compares_mode_names():
    # a mode (cfg.mode, run.mode.name, results.mode, ...) compared with a mode's name; a ticket's
    # `unit` ("structured" or "weights") is data, and may be compared
    names = "|".join(MODE_NAMES)
    pattern = re.compile(rf"""mode\w*(\.name)?\s*(==|!=|\bin)\s*\(?["']({names})["']""")
    assert pattern.search('if run.mode.name == "finetune":') and pattern.search("if cfg.mode in ('imp', 'magnitude'):")
    offenders = []
    for package in ("lottery", "pipeline", "callbacks", "lightning_modules"):
        for path in (ROOT / package).rglob("*.py"):
            if "modes" in path.relative_to(ROOT).parts:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                          if pattern.search(line)]
    assert not offenders, offenders


def test_trainer_loggers_callbacks_and_data_are_built_from_their_targets(tmp_path, tiny_glue):
    from pipeline.run import make_run
    from pipeline.training import datamodule, make_trainer

    cfg = compose_config(["model=tiny", "task=rte", f"paths.root={tmp_path}", f"data.glue_dir={tiny_glue}",
                          "trainer.max_epochs=4", "trainer.enable_progress_bar=true", "logger=wandb"])
    run = make_run(cfg)
    trainer = make_trainer(run, tmp_path / "stage", "job")
    assert trainer.max_epochs == 4  # from conf/trainer, not rebuilt by hand
    assert [type(logger).__name__ for logger in trainer.loggers] == ["ResumableCSVLogger", "WandbLogger"]
    assert any(isinstance(c, (RichProgressBar, TQDMProgressBar)) for c in trainer.callbacks)
    data = datamodule(run, train_on="selection")
    assert type(data).__name__ == "GlueDataModule" and data.train_on == "selection" and data.seed == 1337


def test_the_progress_bar_is_rich_in_a_terminal_and_plain_in_a_log(monkeypatch):
    import sys

    from callbacks.progress import progress_bar

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert isinstance(progress_bar(), RichProgressBar)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert isinstance(progress_bar(), TQDMProgressBar)


def test_results_schema_round_trip_and_refusals(tmp_path):
    results = Results(model="m", task="rte", seed=1, mode="structured", variant="structured-paper", group="abc",
                      settings={"seed": 1}, protocol={"name": "paper"}, pruning="structured", label_prefix="s",
                      figures=["bars"], metric="accuracy", table_metric="accuracy", metrics=["accuracy"],
                      num_layers=2, num_heads=4, full={"accuracy": 0.7}, majority_baseline={"accuracy": 0.5},
                      tickets={"good": Ticket(size_pct=50.0, size_pct_all=10.0, mask_file="tickets/good.json",
                                              mask_sha256="0" * 64, heads_kept=4)})
    path = write_results(tmp_path / "results.json", results)
    assert read_results(path) == results
    data = path.read_text()
    path.write_text(data.replace(f'"version": {RESULTS_VERSION}', '"version": 1'))
    with pytest.raises(CorruptFileError, match="version 1.*rerun the experiment"):
        read_results(path)
    assert row_label("s", "good", "retrained") == "s-good re"


@pytest.mark.parametrize(("cpus", "slurm", "n_jobs", "omp", "expected"), [
    (16, None, None, None, 16),     # alone: every CPU it may run on
    (16, "4", None, None, 4),       # a SLURM task: its allocation
    (2, None, 2, None, 1),          # joblib, 2 jobs on 2 cores: one thread each
    (8, None, -1, None, 1),         # joblib with all cores as jobs
    (16, "8", 2, None, 4),          # both
    (16, None, 2, "3", None),       # OMP_NUM_THREADS set: the user decided
])
def test_each_job_takes_its_share_of_the_cpus(monkeypatch, cpus, slurm, n_jobs, omp, expected):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    for name, value in (("SLURM_CPUS_PER_TASK", slurm), ("OMP_NUM_THREADS", omp)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(threads, "parallel_jobs", lambda: 1 if n_jobs is None else
                        (threads.available_cpus() if n_jobs < 0 else n_jobs))
    assert threads.cpu_share() == expected
    before = torch.get_num_threads()
    try:
        threads.share_cpus()
        assert torch.get_num_threads() == (expected or before)
    finally:
        torch.set_num_threads(before)


def test_one_threshold_drives_every_search():
    cfg = compose_config(["experiment=magnitude", "search.threshold=0.8"])
    assert "threshold" not in cfg.magnitude and cfg.search.threshold == 0.8
    assert not Path(ROOT / "conf" / "pruning").exists()  # the old group with its second threshold is gone
