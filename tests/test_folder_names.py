"""Finished results stay reusable: every preset's fine-tune folder, experiment folder and group hash
are pinned here, as they were computed before the settings became typed (commit db556e7).

A run finds its earlier results by these names (`<mode>-<tags>-<protocol>-<hash>`, the hash of the
settings that determine the result), so a change of any name below orphans every finished result
of that preset: change this table only on purpose (a fix that changes what is computed), and say
so. `python -m tests.test_folder_names` prints the table the current code computes.

The data's content is part of the hash, so the cases run on `write_tiny_glue`'s files (fixed
content); the folder the data lies in and `paths.root` are not.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from lottery.masks import StructuredMasks
from tests.conftest import write_tiny_glue
from tests.helpers import CONF

PROTOCOLS = ("paper", "clean")
SPLITS = ("dev", "train_holdout", "train_subset")


def cases() -> list[str]:
    """Override strings (space-separated), beside model=tiny task=rte and the data and output folders."""
    found = [
        # the fine-tune alone: model, trainer, task and recipe/data flips
        "model=tiny", "model=minilm", "model=bert_base", "model=tiny model.family=qwen2",
        "model=tiny model.family=roberta", "model=custom model.id=mine model.name_or_path=roberta-base",
        "trainer=ddp_sim", "trainer=gpu", "trainer=ddp trainer.devices=2", "trainer.precision=bf16-mixed",
        "task=stsb", "task=mnli", "task=sst2", "task=mrpc", "task=cola", "task=wnli", "task=qnli",
        "seed=42", "recipe.lr=1e-4", "recipe.max_epochs=2", "recipe.checkpoint_every_n_steps=7",
        "data.train_limit=10", "data.eval_limit=8", "data.batching=uniform", "data.pad_to=64",
        "recipe.batch_size=16", "recipe.max_length=64", "force=true", "search.split=train_holdout",
    ]
    for protocol in PROTOCOLS:
        for importance in ("michel", "taylor", "weight_norm"):
            for target in ("heads_mlps", "heads", "mlps"):
                found.append(f"experiment=structured protocol={protocol} importance={importance} "
                             f"structured.target={target}")
        for split in SPLITS[1:]:
            found.append(f"experiment=structured protocol={protocol} search.split={split}")
            found.append(f"experiment=structured protocol={protocol} search.split={split} importance=taylor "
                         "structured.target=heads")
    for flip in ("importance.accumulate=per_batch", "search.phase_change=passing", "tickets.sampling=exact",
                 "protocol.accumulate=per_batch", "search.threshold=0.8", "structured.head_fraction=0.25",
                 "structured.mlps_per_step=2", "tickets.kinds=[good,random]", "tickets.retrain=false",
                 "tickets.cost=false", "cost.min_run_time_s=0.5", "model=minilm", "model=bert_base", "trainer=ddp_sim",
                 "task=stsb", "task=mnli", "model=tiny model.family=qwen2", "seed=42"):
        found.append(f"experiment=structured {flip}")
    for mode in ("magnitude", "imp"):
        for protocol in PROTOCOLS:
            for split in SPLITS:
                found.append(f"experiment={mode} protocol={protocol} search.split={split}")
    for flip in ("magnitude.exit_mask=last_passing", "protocol.magnitude_exit=last_passing", "magnitude.fraction=0.2",
                 "magnitude.max_steps=5", "magnitude.include_biases=false", "search.threshold=0.8",
                 "magnitude.modules=[attention.self.query,attention.self.key,attention.self.value]",
                 "tickets.sampling=exact", "model=minilm", "task=stsb", "trainer=ddp_sim"):
        found.append(f"experiment=magnitude {flip}")
    for flip in ("imp.rounds=3", "imp.epochs_per_round=1", "imp.fraction=0.3", "imp.include_biases=false",
                 "search.threshold=0.5", "recipe.max_epochs=2", "imp.modules=[intermediate.dense,output.dense]",
                 "model=minilm", "task=stsb"):
        found.append(f"experiment=imp {flip}")
    for flip in ("", "protocol=clean", "tickets.kinds=[good,random]", "tickets.kinds=[bad]", "task=stsb"):
        found.append(f"experiment=super super.dir=SUPER {flip}".strip())
    for flip in ("", "patterns.examples=32", "patterns.hand_labels=LABELS", "task=stsb"):
        found.append(f"experiment=patterns {flip}".strip())
    return found


def write_super_masks(folder, flip: bool = False) -> None:
    """Fixed super-ticket masks for the tiny model (2 layers x 4 heads); `flip`: others."""
    for index, kind in enumerate(("good", "random", "bad")):
        head = [[1, 0, 1, 1], [0, 1, 1, (index + flip) % 2]]
        StructuredMasks.from_lists(head, [1, index % 2]).save_json(folder / f"super_{kind}.json")


def names(tmp_path, monkeypatch) -> dict[str, tuple[str, str, str]]:
    """{case: (fine-tune folder, experiment folder, group)}; the experiment folder and group of a
    fine-tune-only case are '-' (it has none)."""
    import pipeline.run
    import pipeline.training  # before the patch: it keeps its own load_tokenizer

    # Folder names need no tokenizer (and bert-base-uncased's cannot be downloaded here).
    monkeypatch.setattr(pipeline.run, "load_tokenizer", lambda source: None)
    glue = write_tiny_glue(tmp_path / "glue")
    (tmp_path / "super").mkdir()
    write_super_masks(tmp_path / "super")
    labels = tmp_path / "labels.tsv"
    labels.write_text("layer\thead\ttype\n1\t1\tvertical\n2\t3\tblock\n")
    found = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for case in cases():
            words = case.replace("SUPER", str(tmp_path / "super")).replace("LABELS", str(labels)).split()
            base = ["model=tiny", "task=rte", f"data.glue_dir={glue}", f"paths.root={tmp_path / 'out'}"]
            run = pipeline.run.make_run(compose(config_name="config", overrides=[*base, *words]))
            experiment = "experiment=" in case
            found[case] = (run.finetune_dir.name, run.experiment_dir.name if experiment else "-",
                           run.group if experiment else "-")
    return found


EXPECTED: dict[str, tuple[str, str, str]] = {
    'model=tiny': ('finetune-d88df837', '-', '-'),
    'model=minilm': ('finetune-0d73604e', '-', '-'),
    'model=bert_base': ('finetune-cc91c370', '-', '-'),
    'model=tiny model.family=qwen2': ('finetune-bb6dda06', '-', '-'),
    'model=tiny model.family=roberta': ('finetune-1fde0bc6', '-', '-'),
    'model=custom model.id=mine model.name_or_path=roberta-base': ('finetune-d1b86b0e', '-', '-'),
    'trainer=ddp_sim': ('finetune-49ac8c68', '-', '-'),
    'trainer=gpu': ('finetune-17d980f8', '-', '-'),
    'trainer=ddp trainer.devices=2': ('finetune-3569ed8f', '-', '-'),
    'trainer.precision=bf16-mixed': ('finetune-b26da7af', '-', '-'),
    'task=stsb': ('finetune-a6a9ad57', '-', '-'),
    'task=mnli': ('finetune-53435974', '-', '-'),
    'task=sst2': ('finetune-b744ae17', '-', '-'),
    'task=mrpc': ('finetune-d21f7382', '-', '-'),
    'task=cola': ('finetune-f4e23f33', '-', '-'),
    'task=wnli': ('finetune-c44e78f0', '-', '-'),
    'task=qnli': ('finetune-d06feb70', '-', '-'),
    'seed=42': ('finetune-f441c862', '-', '-'),
    'recipe.lr=1e-4': ('finetune-197f30ab', '-', '-'),
    'recipe.max_epochs=2': ('finetune-a406c1b9', '-', '-'),
    'recipe.checkpoint_every_n_steps=7': ('finetune-d88df837', '-', '-'),
    'data.train_limit=10': ('finetune-9d1fadae', '-', '-'),
    'data.eval_limit=8': ('finetune-4a37b947', '-', '-'),
    'data.batching=uniform': ('finetune-7dde5ced', '-', '-'),
    'data.pad_to=64': ('finetune-e81c0968', '-', '-'),
    'recipe.batch_size=16': ('finetune-f538f73e', '-', '-'),
    'recipe.max_length=64': ('finetune-067c40bd', '-', '-'),
    'force=true': ('finetune-d88df837', '-', '-'),
    'search.split=train_holdout': ('finetune-786512fc', '-', '-'),
    'experiment=structured protocol=paper importance=michel structured.target=heads_mlps': ('finetune-d88df837', 'structured-paper-7a469285', '936480f3'),
    'experiment=structured protocol=paper importance=michel structured.target=heads': ('finetune-d88df837', 'structured-heads-paper-4ecd6c27', '639cccff'),
    'experiment=structured protocol=paper importance=michel structured.target=mlps': ('finetune-d88df837', 'structured-mlps-paper-f54b5775', '9a680852'),
    'experiment=structured protocol=paper importance=taylor structured.target=heads_mlps': ('finetune-d88df837', 'structured-taylor-paper-a4139fd8', '73af652b'),
    'experiment=structured protocol=paper importance=taylor structured.target=heads': ('finetune-d88df837', 'structured-heads-taylor-paper-32e67dba', '019ac421'),
    'experiment=structured protocol=paper importance=taylor structured.target=mlps': ('finetune-d88df837', 'structured-mlps-taylor-paper-73a76283', '8b0c1c43'),
    'experiment=structured protocol=paper importance=weight_norm structured.target=heads_mlps': ('finetune-d88df837', 'structured-weight_norm-paper-388d941d', '84e0cd85'),
    'experiment=structured protocol=paper importance=weight_norm structured.target=heads': ('finetune-d88df837', 'structured-heads-weight_norm-paper-6a097612', '8f96cd8a'),
    'experiment=structured protocol=paper importance=weight_norm structured.target=mlps': ('finetune-d88df837', 'structured-mlps-weight_norm-paper-b182cb15', '7f27a836'),
    'experiment=structured protocol=paper search.split=train_holdout': ('finetune-786512fc', 'structured-train_holdout-paper-79a5a777', '9e6135c0'),
    'experiment=structured protocol=paper search.split=train_holdout importance=taylor structured.target=heads': ('finetune-786512fc', 'structured-heads-taylor-train_holdout-paper-020c1fd2', 'fa4f5ffe'),
    'experiment=structured protocol=paper search.split=train_subset': ('finetune-d88df837', 'structured-train_subset-paper-8cdc0a46', '1b53a086'),
    'experiment=structured protocol=paper search.split=train_subset importance=taylor structured.target=heads': ('finetune-d88df837', 'structured-heads-taylor-train_subset-paper-afebb2d7', 'c0cf807f'),
    'experiment=structured protocol=clean importance=michel structured.target=heads_mlps': ('finetune-d88df837', 'structured-clean-2651b4ca', '50d090e9'),
    'experiment=structured protocol=clean importance=michel structured.target=heads': ('finetune-d88df837', 'structured-heads-clean-a7a81089', '3d647ff6'),
    'experiment=structured protocol=clean importance=michel structured.target=mlps': ('finetune-d88df837', 'structured-mlps-clean-ea4c79aa', '8d8e8798'),
    'experiment=structured protocol=clean importance=taylor structured.target=heads_mlps': ('finetune-d88df837', 'structured-taylor-clean-f4c4c1d7', '23028185'),
    'experiment=structured protocol=clean importance=taylor structured.target=heads': ('finetune-d88df837', 'structured-heads-taylor-clean-a64a3450', 'bdae89f7'),
    'experiment=structured protocol=clean importance=taylor structured.target=mlps': ('finetune-d88df837', 'structured-mlps-taylor-clean-945ca3ec', 'd9bd53c4'),
    'experiment=structured protocol=clean importance=weight_norm structured.target=heads_mlps': ('finetune-d88df837', 'structured-weight_norm-clean-708dd7fe', '99896227'),
    'experiment=structured protocol=clean importance=weight_norm structured.target=heads': ('finetune-d88df837', 'structured-heads-weight_norm-clean-4f17a92a', 'e01c1a8f'),
    'experiment=structured protocol=clean importance=weight_norm structured.target=mlps': ('finetune-d88df837', 'structured-mlps-weight_norm-clean-6b142a64', '609a39ed'),
    'experiment=structured protocol=clean search.split=train_holdout': ('finetune-786512fc', 'structured-train_holdout-clean-2d482526', '157d6c1c'),
    'experiment=structured protocol=clean search.split=train_holdout importance=taylor structured.target=heads': ('finetune-786512fc', 'structured-heads-taylor-train_holdout-clean-bcb3dff0', 'c9260be8'),
    'experiment=structured protocol=clean search.split=train_subset': ('finetune-d88df837', 'structured-train_subset-clean-2f62aae9', '2b25e097'),
    'experiment=structured protocol=clean search.split=train_subset importance=taylor structured.target=heads': ('finetune-d88df837', 'structured-heads-taylor-train_subset-clean-443cd228', '2225028c'),
    'experiment=structured importance.accumulate=per_batch': ('finetune-d88df837', 'structured-custom-3e84dbdd', '30f148a7'),
    'experiment=structured search.phase_change=passing': ('finetune-d88df837', 'structured-custom-269775d0', '10531558'),
    'experiment=structured tickets.sampling=exact': ('finetune-d88df837', 'structured-custom-9d8dd8cf', 'e6abae2f'),
    'experiment=structured protocol.accumulate=per_batch': ('finetune-d88df837', 'structured-custom-3e84dbdd', '30f148a7'),
    'experiment=structured search.threshold=0.8': ('finetune-d88df837', 'structured-paper-f0234dcd', '43030982'),
    'experiment=structured structured.head_fraction=0.25': ('finetune-d88df837', 'structured-paper-5f26ae21', '1a6b320a'),
    'experiment=structured structured.mlps_per_step=2': ('finetune-d88df837', 'structured-paper-4cd48783', '35c1aaee'),
    'experiment=structured tickets.kinds=[good,random]': ('finetune-d88df837', 'structured-paper-7a469285', '936480f3'),
    'experiment=structured tickets.retrain=false': ('finetune-d88df837', 'structured-paper-7a469285', '936480f3'),
    'experiment=structured tickets.cost=false': ('finetune-d88df837', 'structured-paper-7a469285', '936480f3'),
    'experiment=structured cost.min_run_time_s=0.5': ('finetune-d88df837', 'structured-paper-7a469285', '936480f3'),
    'experiment=structured model=minilm': ('finetune-0d73604e', 'structured-paper-cefc6c9c', 'a492042b'),
    'experiment=structured model=bert_base': ('finetune-cc91c370', 'structured-paper-ad08af31', 'b871fa16'),
    'experiment=structured trainer=ddp_sim': ('finetune-49ac8c68', 'structured-paper-5d988520', '8bf308d5'),
    'experiment=structured task=stsb': ('finetune-a6a9ad57', 'structured-paper-df00b48a', 'd4a82c08'),
    'experiment=structured task=mnli': ('finetune-53435974', 'structured-paper-0b3af021', 'bb3912b9'),
    'experiment=structured model=tiny model.family=qwen2': ('finetune-bb6dda06', 'structured-paper-6c02c5a5', '6ebef919'),
    'experiment=structured seed=42': ('finetune-f441c862', 'structured-paper-5a04264e', '936480f3'),
    'experiment=magnitude protocol=paper search.split=dev': ('finetune-d88df837', 'magnitude-paper-a454ad32', '90960d48'),
    'experiment=magnitude protocol=paper search.split=train_holdout': ('finetune-786512fc', 'magnitude-train_holdout-paper-7d9850a9', '7494066d'),
    'experiment=magnitude protocol=paper search.split=train_subset': ('finetune-d88df837', 'magnitude-train_subset-paper-eca5ea9e', '92a7ac05'),
    'experiment=magnitude protocol=clean search.split=dev': ('finetune-d88df837', 'magnitude-clean-34fc88f9', '2f62b55c'),
    'experiment=magnitude protocol=clean search.split=train_holdout': ('finetune-786512fc', 'magnitude-train_holdout-clean-49322634', '3fd00156'),
    'experiment=magnitude protocol=clean search.split=train_subset': ('finetune-d88df837', 'magnitude-train_subset-clean-8ea21657', 'a64a56f0'),
    'experiment=imp protocol=paper search.split=dev': ('finetune-d88df837', 'imp-1d7b8ccb', 'cce7483f'),
    'experiment=imp protocol=paper search.split=train_holdout': ('finetune-786512fc', 'imp-train_holdout-894c171d', '4df96e02'),
    'experiment=imp protocol=paper search.split=train_subset': ('finetune-d88df837', 'imp-train_subset-0f1f7a88', '96e343ca'),
    'experiment=imp protocol=clean search.split=dev': ('finetune-d88df837', 'imp-1d7b8ccb', 'cce7483f'),
    'experiment=imp protocol=clean search.split=train_holdout': ('finetune-786512fc', 'imp-train_holdout-894c171d', '4df96e02'),
    'experiment=imp protocol=clean search.split=train_subset': ('finetune-d88df837', 'imp-train_subset-0f1f7a88', '96e343ca'),
    'experiment=magnitude magnitude.exit_mask=last_passing': ('finetune-d88df837', 'magnitude-custom-34fc88f9', '2f62b55c'),
    'experiment=magnitude protocol.magnitude_exit=last_passing': ('finetune-d88df837', 'magnitude-custom-34fc88f9', '2f62b55c'),
    'experiment=magnitude magnitude.fraction=0.2': ('finetune-d88df837', 'magnitude-paper-4a401765', '4921b260'),
    'experiment=magnitude magnitude.max_steps=5': ('finetune-d88df837', 'magnitude-paper-c0dcc568', '95cbb54a'),
    'experiment=magnitude magnitude.include_biases=false': ('finetune-d88df837', 'magnitude-paper-cfd8489a', 'df7c0d6e'),
    'experiment=magnitude search.threshold=0.8': ('finetune-d88df837', 'magnitude-paper-f91b2a35', '2d53479e'),
    'experiment=magnitude magnitude.modules=[attention.self.query,attention.self.key,attention.self.value]': ('finetune-d88df837', 'magnitude-paper-2bc1ba34', 'd23db38d'),
    'experiment=magnitude tickets.sampling=exact': ('finetune-d88df837', 'magnitude-paper-a454ad32', '90960d48'),
    'experiment=magnitude model=minilm': ('finetune-0d73604e', 'magnitude-paper-a6d23742', '235b6cd8'),
    'experiment=magnitude task=stsb': ('finetune-a6a9ad57', 'magnitude-paper-6ba3d4b1', 'ebd532d3'),
    'experiment=magnitude trainer=ddp_sim': ('finetune-49ac8c68', 'magnitude-paper-bc1f5fe4', '863c85e2'),
    'experiment=imp imp.rounds=3': ('finetune-d88df837', 'imp-0d64649b', 'cb3e71c9'),
    'experiment=imp imp.epochs_per_round=1': ('finetune-d88df837', 'imp-f59de547', '15b3e1fa'),
    'experiment=imp imp.fraction=0.3': ('finetune-d88df837', 'imp-3860fa50', '5fe4ba8f'),
    'experiment=imp imp.include_biases=false': ('finetune-d88df837', 'imp-de7f3872', 'cc0e18df'),
    'experiment=imp search.threshold=0.5': ('finetune-d88df837', 'imp-451baefe', 'f7e84a49'),
    'experiment=imp recipe.max_epochs=2': ('finetune-a406c1b9', 'imp-5c219fbf', 'ff485a73'),
    'experiment=imp imp.modules=[intermediate.dense,output.dense]': ('finetune-d88df837', 'imp-ee23d6ea', '9c2c5fc0'),
    'experiment=imp model=minilm': ('finetune-0d73604e', 'imp-54d527e1', '0e327ae2'),
    'experiment=imp task=stsb': ('finetune-a6a9ad57', 'imp-00dd7ceb', 'e13e3170'),
    'experiment=super super.dir=SUPER': ('finetune-d88df837', 'super-37fd456f', 'aba09e8f'),
    'experiment=super super.dir=SUPER protocol=clean': ('finetune-d88df837', 'super-37fd456f', 'aba09e8f'),
    'experiment=super super.dir=SUPER tickets.kinds=[good,random]': ('finetune-d88df837', 'super-9a94cd4f', 'd73c30b4'),
    'experiment=super super.dir=SUPER tickets.kinds=[bad]': ('finetune-d88df837', 'super-45cea7be', 'ded1d973'),
    'experiment=super super.dir=SUPER task=stsb': ('finetune-a6a9ad57', 'super-be06f06a', '547dae9e'),
    'experiment=patterns': ('finetune-d88df837', 'patterns-cbacf06c', '7679e39d'),
    'experiment=patterns patterns.examples=32': ('finetune-d88df837', 'patterns-ac2b3a6a', 'edb9a15d'),
    'experiment=patterns patterns.hand_labels=LABELS': ('finetune-d88df837', 'patterns-e5fbd8e0', '238e3657'),
    'experiment=patterns task=stsb': ('finetune-a6a9ad57', 'patterns-af2cd18a', 'a4977a01'),
}


def test_every_preset_keeps_its_folder_names(tmp_path, monkeypatch):
    computed = names(tmp_path, monkeypatch)
    assert set(computed) == set(EXPECTED)
    differing = {case: (EXPECTED[case], got) for case, got in computed.items() if got != EXPECTED[case]}
    assert not differing, differing


def test_the_cases_cover_every_mode_and_protocol_key():
    from pipeline.modes import MODES, get_mode
    from pipeline.protocol import protocol_settings

    get_mode("finetune")
    joined = " ".join(cases())
    assert all(f"experiment={mode}" in joined for mode in MODES if mode != "finetune")
    paths = {path for mode in MODES.values() for path in protocol_settings(mode.settings).values()}
    assert len(paths) == 4 and all(path in joined for path in paths), paths


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        table = names(Path(folder), patch)
    print("EXPECTED: dict[str, tuple[str, str, str]] = {")
    for case, value in table.items():
        print(f"    {case!r}: {value!r},")
    print("}")
