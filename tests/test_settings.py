"""The typed settings: one definition gives the defaults, the checks, the folder identity, the tags and
the protocol keys; built from the composed config or from keyword arguments alike."""

from dataclasses import dataclass, fields, replace

import pytest
from omegaconf import OmegaConf

from lottery.errors import ConfigError
from lottery.schema import PROTOCOL_KEYS
from pipeline.modes import MODES, get_mode
from pipeline.modes.super import SuperSettings
from pipeline.protocol import protocol_settings, with_protocol
from pipeline.run import make_run, run_of
from pipeline.settings import (
    ALWAYS,
    NEVER,
    DataSettings,
    ModelSettings,
    PathSettings,
    RecipeSettings,
    describe,
    setting,
)
from pipeline.settings.concerns import TRAINER_DEFAULTS, CostSettings, ExecutionSettings
from pipeline.settings.declare import walk
from tests.helpers import CONF, compose_config, tiny_overrides
from tests.test_folder_names import write_super_masks


def tiny_settings(mode: str, root, glue, **concerns):
    """A mode's settings for the tiny BERT, from keyword arguments (no config)."""
    settings_class = get_mode(mode).settings
    if "cost" in {item.name for item in fields(settings_class)}:  # conf/model/tiny.yaml: a quick cost stage
        concerns = {"cost": CostSettings(min_run_time_s=0.02), **concerns}
    return settings_class(model=ModelSettings(id="tiny", random_init=True, family="bert"), task="rte",
                          recipe=RecipeSettings(lr=1.0e-3), data=DataSettings(glue_dir=str(glue)),
                          paths=PathSettings(root=str(root)), **concerns)


@pytest.mark.parametrize("protocol", ["paper", "clean"])
@pytest.mark.parametrize("mode", ["finetune", "structured", "magnitude", "imp"])
def test_settings_from_keyword_arguments_are_those_of_the_default_config(tmp_path, tiny_glue, mode, protocol):
    settings = with_protocol(tiny_settings(mode, tmp_path, tiny_glue), protocol)
    composed = make_run(compose_config(["model=tiny", "task=rte", f"data.glue_dir={tiny_glue}", f"paths.root={tmp_path}",
                                        f"experiment={mode}", f"protocol={protocol}"]))
    built = run_of(settings)
    # the composed trainer node also names max_epochs and gradient_clip_val, which follow the recipe
    recipe_linked = {"max_epochs": settings.recipe.max_epochs, "gradient_clip_val": settings.recipe.grad_clip}
    trainer = {**settings.execution.trainer, **recipe_linked}
    assert replace(built.settings, execution=replace(settings.execution, trainer=trainer)) == composed.settings
    assert (built.finetune_dir, built.experiment_dir, built.protocol) == (composed.finetune_dir, composed.experiment_dir,
                                                                          composed.protocol)


def test_the_trainer_defaults_are_conf_trainer_cpus():
    node = OmegaConf.to_container(compose_config([]).trainer, resolve=True)
    typed = {item.name for item in fields(ExecutionSettings) if item.name != "trainer"}
    rest = {key: value for key, value in node.items() if key not in typed | {"max_epochs", "gradient_clip_val"}}
    assert rest == TRAINER_DEFAULTS
    assert {key: node[key] for key in typed if key in node} == {"accelerator": "cpu", "devices": 1, "precision": "32-true"}


def test_a_missing_value_and_a_bad_value_are_one_line_each():
    with pytest.raises(ConfigError, match=r"^model.id is missing: name the model for its output folder"):
        make_run(compose_config(["model=custom", "model.name_or_path=roberta-base"]))
    with pytest.raises(ConfigError, match=r"^recipe.batch_size must be a positive integer, got 0$"):
        RecipeSettings(batch_size=0)


# A value other than the default for every setting that is part of a result's identity, per mode
# (those of the fine-tune for every mode): a new ALWAYS setting must be added here.
FLIPS = {
    "model.name_or_path": "bert-base-uncased", "model.random_init": False, "model.family": "roberta", "task": "mrpc",
    "seed": 7, "recipe.lr": 1e-4, "recipe.batch_size": 16, "recipe.eval_batch_size": 32, "recipe.max_epochs": 2,
    "recipe.max_length": 64, "recipe.adam_eps": 1e-6, "recipe.weight_decay": 0.01, "recipe.warmup_ratio": 0.1,
    "recipe.grad_clip": None, "data.train_limit": 10, "data.eval_limit": 10, "data.batching": "length_grouped",
    "data.pad_to": 64, "data.max_length": 32, "data.batch_size": 4, "data.eval_batch_size": 4,
    "execution.accelerator": "gpu", "execution.devices": 2, "execution.num_nodes": 2,
    "execution.strategy": {"_target_": "pytorch_lightning.strategies.DDPStrategy"}, "execution.precision": "bf16-mixed",
    "search.split": "train_holdout", "search.threshold": 0.8, "search.phase_change": "passing",
    "structured.target": "heads", "structured.head_fraction": 0.25, "structured.mlps_per_step": 2,
    "importance.name": "taylor", "importance.accumulate": "per_batch", "tickets.sampling": "exact",
    "magnitude.fraction": 0.2, "magnitude.max_steps": 3, "magnitude.exit_mask": "last_passing",
    "magnitude.include_biases": False, "magnitude.modules": ("intermediate.dense", "output.dense"),
    "imp.fraction": 0.2, "imp.rounds": 3, "imp.epochs_per_round": 1, "imp.include_biases": False,
    "imp.modules": ("intermediate.dense",), "patterns.examples": 8, "tickets.kinds": ("good",),
}
# A strategy changes nothing in one process: flip it with two devices.
CONTEXT = {"execution.strategy": {"execution.devices": 2}}
# Settings that change no result, and another value for each: the folder stays.
KEPT = {
    "model.hub_id": "org/name", "recipe.checkpoint_every_n_steps": 7, "data.cache_dir": "/elsewhere",
    "data.num_workers": 2, "data.target": "my.DataModule", "execution.trainer": {"log_every_n_steps": 1},
    "paths.cache_dir": "/elsewhere", "force": True, "plan": True, "loggers": {}, "callbacks": {}, "tickets.kinds": ("good",),
    "tickets.retrain": False, "tickets.cost": False, "cost.batch_sizes": (1,), "cost.seq_len": 16, "cost.min_run_time_s": 0.5,
    "cost.cpu": True, "search.threshold": 0.5, "data.pin_memory": True, "speed.adamw": "for_loop",
    "speed.finite_check_every_n_steps": 1, "speed.log_every_step": True,
    "tickets.retrain_processes": 3,
}
# Not part of the hash, but of the folder's place or readable name: model.id and paths.root (its
# place), protocol (the label), data.glue_dir (its content is hashed, not its place), task_spec (a
# custom task's definition enters the identity as task_definition: tests/test_custom_tasks.py).
ELSEWHERE = ("model.id", "paths.root", "protocol", "data.glue_dir", "task_spec")


def flipped(settings, path: str, value):
    """`settings` with the setting at a dotted path set to `value`."""
    if "." not in path:
        return replace(settings, **{path: value})
    head, rest = path.split(".", 1)
    return replace(settings, **{head: flipped(getattr(settings, head), rest, value)})


@pytest.mark.parametrize("mode", ["finetune", "structured", "magnitude", "imp", "patterns", "super"])
def test_every_setting_of_the_identity_changes_the_folder_and_no_other_does(tmp_path, tiny_glue, mode):
    files = {}
    for name in ("masks", "other_masks"):
        (tmp_path / name).mkdir()
        write_super_masks(tmp_path / name, flip=name == "other_masks")
        files[name] = str(tmp_path / name)
    files["labels"] = tmp_path / "labels.tsv"
    files["labels"].write_text("layer\thead\ttype\n1\t1\tvertical\n")
    extra = {"super_tickets": SuperSettings(dir=files["masks"])} if mode == "super" else {}
    flips = {**FLIPS, "patterns.hand_labels": str(files["labels"]), "super_tickets.dir": files["other_masks"]}
    base = run_of(tiny_settings(mode, tmp_path, tiny_glue, **extra))
    folder = base.experiment_dir if mode != "finetune" else base.finetune_dir
    for path, item, _ in walk(base.settings):
        identity = item.metadata.get("identity")
        if identity == ALWAYS:
            assert path in flips, f"{path} is part of the identity: give it a value in FLIPS"
            start = base.settings
            for other_path, value in CONTEXT.get(path, {}).items():
                start = flipped(start, other_path, value)
            before, after = run_of(start), run_of(flipped(start, path, flips[path]))
            place = (lambda run: run.experiment_dir) if mode != "finetune" else (lambda run: run.finetune_dir)
            assert place(after) != place(before), path
        elif identity == NEVER and path not in ELSEWHERE:
            assert path in KEPT, f"{path} changes no result: give it another value in KEPT"
            other = run_of(flipped(base.settings, path, KEPT[path]))
            assert (other.experiment_dir, other.finetune_dir) == (folder if mode != "finetune" else base.experiment_dir,
                                                                  base.finetune_dir), path


@dataclass(frozen=True)
class RecipeWithSmoothing(RecipeSettings):
    """A setting added after folders were written: one field with its default."""

    label_smoothing: float = setting(0.0, "label smoothing of the loss")


def test_a_setting_added_later_keeps_every_folder_until_it_is_changed(tmp_path, tiny_glue):
    plain = run_of(tiny_settings("structured", tmp_path, tiny_glue))
    later = run_of(replace(plain.settings, recipe=RecipeWithSmoothing(lr=1.0e-3)))
    assert (later.finetune_dir, later.experiment_dir) == (plain.finetune_dir, plain.experiment_dir)
    smoothed = run_of(replace(plain.settings, recipe=RecipeWithSmoothing(lr=1.0e-3, label_smoothing=0.1)))
    assert smoothed.finetune_dir != plain.finetune_dir
    assert smoothed.finetune_identity["recipe"]["label_smoothing"] == 0.1


def test_protocol_keys_and_tags_come_from_the_fields(tmp_path, tiny_glue):
    get_mode("finetune")
    declared = {key: path for mode in MODES.values() for key, path in protocol_settings(mode.settings).items()}
    assert declared == {"accumulate": "importance.accumulate", "phase_change": "search.phase_change",
                        "sampling": "tickets.sampling", "magnitude_exit": "magnitude.exit_mask",
                        "batching": "data.batching", "empty_layer_bias": "tickets.empty_layer_bias",
                        "random_accumulation": "magnitude.random_accumulation",
                        "random_pairing": "tickets.random_pairing", "super_random": "tickets.super_random"}
    assert set(declared) == set(PROTOCOL_KEYS)  # the report pairs protocols by the same keys
    for key in declared:  # each preset sets each key
        assert all(key in OmegaConf.load(path) for path in (CONF / "protocol").glob("*.yaml"))
    run = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "experiment=structured", "task=rte",
                                                 "importance=taylor", "search.split=train_subset",
                                                 "structured.target=mlps", "tickets.sampling=exact")))
    assert run.variant == "structured-mlps-taylor-train_subset-custom"
    assert run.protocol["differs_from_preset"] == ["sampling"]


def test_every_setting_has_its_help():
    lines = describe(get_mode("structured").settings)
    assert "search.threshold = 0.9: a mask passes while its score >= threshold x the full model's score" in lines
    undocumented = [line for line in lines if ": " not in line]
    assert not undocumented, undocumented


def test_a_key_nothing_reads_is_one_line_naming_the_setting_meant(tmp_path, monkeypatch, capsys):
    """`+recipe.learning_rate=1e-5` was accepted and ignored (the rate stayed the recipe's); now it is
    refused before anything is hashed, naming recipe.lr; a misspelling names the closest key."""
    import sys

    from pipeline.cli import main

    for overrides, message in [
        (["+recipe.learning_rate=1e-5"], ("recipe.learning_rate is not a setting: nothing reads it, so it would "
                                          "change nothing; did you mean recipe.lr?")),
        (["experiment=structured", "+search.treshold=0.8"], "did you mean search.threshold?"),
        (["+nothing_like_it=1"], "nothing_like_it is not a setting"),
    ]:
        with pytest.raises(ConfigError) as error:
            make_run(compose_config(["model=tiny", f"paths.root={tmp_path}", *overrides]))
        assert message in str(error.value)
    # Keys read whole (the Trainer's other arguments, a custom task's node) stay open.
    make_run(compose_config(["model=tiny", f"paths.root={tmp_path}", "+trainer.benchmark=false"]))

    root = tmp_path / "outputs"
    monkeypatch.setattr(sys, "argv", ["lottery", "model=tiny", "task=rte", f"paths.root={root}",
                                      "+recipe.learning_rate=1e-5"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and "did you mean recipe.lr?" in captured.out + captured.err
    assert not list(root.rglob("finetune-*")) and not list(root.rglob("*.json"))
