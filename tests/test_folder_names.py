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
        "data.train_limit=10", "data.eval_limit=8", "data.batching=length_grouped", "data.pad_to=64",
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
                 "tickets.empty_layer_bias=keep", "tickets.random_pairing=same",
                 "task=stsb", "task=mnli", "model=tiny model.family=qwen2", "seed=42"):
        found.append(f"experiment=structured {flip}")
    for mode in ("magnitude", "imp"):
        for protocol in PROTOCOLS:
            for split in SPLITS:
                found.append(f"experiment={mode} protocol={protocol} search.split={split}")
    for flip in ("magnitude.exit_mask=last_passing", "protocol.magnitude_exit=last_passing", "magnitude.fraction=0.2",
                 "magnitude.random_accumulation=1",
                 "magnitude.max_steps=5", "magnitude.include_biases=false", "search.threshold=0.8",
                 "magnitude.modules=[attention.self.query,attention.self.key,attention.self.value]",
                 "tickets.sampling=exact", "model=minilm", "task=stsb", "trainer=ddp_sim"):
        found.append(f"experiment=magnitude {flip}")
    for flip in ("imp.rounds=3", "imp.epochs_per_round=1", "imp.fraction=0.3", "imp.include_biases=false",
                 "search.threshold=0.5", "recipe.max_epochs=2", "imp.modules=[intermediate.dense,output.dense]",
                 "model=minilm", "task=stsb"):
        found.append(f"experiment=imp {flip}")
    for flip in ("", "protocol=clean", "tickets.kinds=[good,random]", "tickets.kinds=[bad]", "task=stsb",
                 "tickets.super_random=once"):
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
    'model=tiny': ('finetune-7dde5ced', '-', '-'),
    'model=minilm': ('finetune-85a4a1bc', '-', '-'),
    'model=bert_base': ('finetune-0f58c75c', '-', '-'),
    'model=tiny model.family=qwen2': ('finetune-4462c654', '-', '-'),
    'model=tiny model.family=roberta': ('finetune-3d5eb8fc', '-', '-'),
    'model=custom model.id=mine model.name_or_path=roberta-base': ('finetune-83fb8b23', '-', '-'),
    'trainer=ddp_sim': ('finetune-ba0ed0f8', '-', '-'),
    'trainer=gpu': ('finetune-d4bb8df6', '-', '-'),
    'trainer=ddp trainer.devices=2': ('finetune-82fcd6f3', '-', '-'),
    'trainer.precision=bf16-mixed': ('finetune-c79fb12b', '-', '-'),
    'task=stsb': ('finetune-2bdd9adf', '-', '-'),
    'task=mnli': ('finetune-d8edb877', '-', '-'),
    'task=sst2': ('finetune-02811775', '-', '-'),
    'task=mrpc': ('finetune-b72024bf', '-', '-'),
    'task=cola': ('finetune-a491a7e6', '-', '-'),
    'task=wnli': ('finetune-1915b060', '-', '-'),
    'task=qnli': ('finetune-f0b5d22a', '-', '-'),
    'seed=42': ('finetune-e8dcc333', '-', '-'),
    'recipe.lr=1e-4': ('finetune-6fe400ea', '-', '-'),
    'recipe.max_epochs=2': ('finetune-322ffc6d', '-', '-'),
    'recipe.checkpoint_every_n_steps=7': ('finetune-7dde5ced', '-', '-'),
    'data.train_limit=10': ('finetune-9b4733eb', '-', '-'),
    'data.eval_limit=8': ('finetune-c28319d5', '-', '-'),
    'data.batching=length_grouped': ('finetune-d88df837', '-', '-'),
    'data.pad_to=64': ('finetune-22ca4185', '-', '-'),
    'recipe.batch_size=16': ('finetune-54e40668', '-', '-'),
    'recipe.max_length=64': ('finetune-c4fa5992', '-', '-'),
    'force=true': ('finetune-7dde5ced', '-', '-'),
    'search.split=train_holdout': ('finetune-b88e675c', '-', '-'),
    'experiment=structured protocol=paper importance=michel structured.target=heads_mlps': ('finetune-7dde5ced', 'structured-paper-8a3219d7', '066dc862'),
    'experiment=structured protocol=paper importance=michel structured.target=heads': ('finetune-7dde5ced', 'structured-heads-paper-58202e23', 'fa4c9602'),
    'experiment=structured protocol=paper importance=michel structured.target=mlps': ('finetune-7dde5ced', 'structured-mlps-paper-01226e80', '79d5965b'),
    'experiment=structured protocol=paper importance=taylor structured.target=heads_mlps': ('finetune-7dde5ced', 'structured-taylor-paper-24450882', 'ecab2541'),
    'experiment=structured protocol=paper importance=taylor structured.target=heads': ('finetune-7dde5ced', 'structured-heads-taylor-paper-dcf4c5a1', '0036a4dd'),
    'experiment=structured protocol=paper importance=taylor structured.target=mlps': ('finetune-7dde5ced', 'structured-mlps-taylor-paper-9e179ef2', 'd5bf6fe5'),
    'experiment=structured protocol=paper importance=weight_norm structured.target=heads_mlps': ('finetune-7dde5ced', 'structured-weight_norm-paper-9a8e20d9', '39f13da7'),
    'experiment=structured protocol=paper importance=weight_norm structured.target=heads': ('finetune-7dde5ced', 'structured-heads-weight_norm-paper-559cf38f', '15300c05'),
    'experiment=structured protocol=paper importance=weight_norm structured.target=mlps': ('finetune-7dde5ced', 'structured-mlps-weight_norm-paper-e526b39d', '9ba5f62d'),
    'experiment=structured protocol=paper search.split=train_holdout': ('finetune-b88e675c', 'structured-train_holdout-paper-b3917e67', '1e1d5644'),
    'experiment=structured protocol=paper search.split=train_holdout importance=taylor structured.target=heads': ('finetune-b88e675c', 'structured-heads-taylor-train_holdout-paper-6c6904cd', 'e2c482a6'),
    'experiment=structured protocol=paper search.split=train_subset': ('finetune-7dde5ced', 'structured-train_subset-paper-6d53a454', '7c086574'),
    'experiment=structured protocol=paper search.split=train_subset importance=taylor structured.target=heads': ('finetune-7dde5ced', 'structured-heads-taylor-train_subset-paper-5d289cfc', '3e74c7d1'),
    'experiment=structured protocol=clean importance=michel structured.target=heads_mlps': ('finetune-7dde5ced', 'structured-clean-11160710', '2c8c32c7'),
    'experiment=structured protocol=clean importance=michel structured.target=heads': ('finetune-7dde5ced', 'structured-heads-clean-6afa96f2', '85617c2b'),
    'experiment=structured protocol=clean importance=michel structured.target=mlps': ('finetune-7dde5ced', 'structured-mlps-clean-7fdcf4f7', '780b47e4'),
    'experiment=structured protocol=clean importance=taylor structured.target=heads_mlps': ('finetune-7dde5ced', 'structured-taylor-clean-f66b0fc8', 'f29f519f'),
    'experiment=structured protocol=clean importance=taylor structured.target=heads': ('finetune-7dde5ced', 'structured-heads-taylor-clean-0cddcd3b', 'f4d5263d'),
    'experiment=structured protocol=clean importance=taylor structured.target=mlps': ('finetune-7dde5ced', 'structured-mlps-taylor-clean-51a0afbc', '28f68bc0'),
    'experiment=structured protocol=clean importance=weight_norm structured.target=heads_mlps': ('finetune-7dde5ced', 'structured-weight_norm-clean-6b724019', '792dbbe9'),
    'experiment=structured protocol=clean importance=weight_norm structured.target=heads': ('finetune-7dde5ced', 'structured-heads-weight_norm-clean-bfc09c0b', '34944974'),
    'experiment=structured protocol=clean importance=weight_norm structured.target=mlps': ('finetune-7dde5ced', 'structured-mlps-weight_norm-clean-1734ad18', 'd43473a6'),
    'experiment=structured protocol=clean search.split=train_holdout': ('finetune-b88e675c', 'structured-train_holdout-clean-5aad03f2', '9323e0e9'),
    'experiment=structured protocol=clean search.split=train_holdout importance=taylor structured.target=heads': ('finetune-b88e675c', 'structured-heads-taylor-train_holdout-clean-b7d4ab88', '6e4ebada'),
    'experiment=structured protocol=clean search.split=train_subset': ('finetune-7dde5ced', 'structured-train_subset-clean-f3b16251', 'f19bbb0e'),
    'experiment=structured protocol=clean search.split=train_subset importance=taylor structured.target=heads': ('finetune-7dde5ced', 'structured-heads-taylor-train_subset-clean-adb2cb68', '4a89a697'),
    'experiment=structured importance.accumulate=per_batch': ('finetune-7dde5ced', 'structured-custom-644540be', '51faa8c6'),
    'experiment=structured search.phase_change=passing': ('finetune-7dde5ced', 'structured-custom-79bcb1d1', '6a143d47'),
    'experiment=structured tickets.sampling=exact': ('finetune-7dde5ced', 'structured-custom-e8f60172', 'c056c582'),
    'experiment=structured protocol.accumulate=per_batch': ('finetune-7dde5ced', 'structured-custom-644540be', '51faa8c6'),
    'experiment=structured search.threshold=0.8': ('finetune-7dde5ced', 'structured-paper-8646cb78', '762d7c2a'),
    'experiment=structured structured.head_fraction=0.25': ('finetune-7dde5ced', 'structured-paper-2d27e332', '05573265'),
    'experiment=structured structured.mlps_per_step=2': ('finetune-7dde5ced', 'structured-paper-035dadf7', 'd528fed2'),
    'experiment=structured tickets.kinds=[good,random]': ('finetune-7dde5ced', 'structured-paper-8a3219d7', '066dc862'),
    'experiment=structured tickets.retrain=false': ('finetune-7dde5ced', 'structured-paper-8a3219d7', '066dc862'),
    'experiment=structured tickets.cost=false': ('finetune-7dde5ced', 'structured-paper-8a3219d7', '066dc862'),
    'experiment=structured cost.min_run_time_s=0.5': ('finetune-7dde5ced', 'structured-paper-8a3219d7', '066dc862'),
    'experiment=structured model=minilm': ('finetune-85a4a1bc', 'structured-paper-6cdc54a1', '8f55c911'),
    'experiment=structured model=bert_base': ('finetune-0f58c75c', 'structured-paper-e5790c94', '2f7e21be'),
    'experiment=structured trainer=ddp_sim': ('finetune-ba0ed0f8', 'structured-paper-d89c220d', '7c6716ea'),
    'experiment=structured tickets.empty_layer_bias=keep': ('finetune-7dde5ced', 'structured-custom-c3eac32a', '4217b84d'),
    'experiment=structured tickets.random_pairing=same': ('finetune-7dde5ced', 'structured-custom-48b0e950', 'b718c311'),
    'experiment=structured task=stsb': ('finetune-2bdd9adf', 'structured-paper-8820bcea', '2686a569'),
    'experiment=structured task=mnli': ('finetune-d8edb877', 'structured-paper-37ab58ab', '13585387'),
    'experiment=structured model=tiny model.family=qwen2': ('finetune-4462c654', 'structured-paper-84da9aa6', '744f24f5'),
    'experiment=structured seed=42': ('finetune-e8dcc333', 'structured-paper-a2283a24', '066dc862'),
    'experiment=magnitude protocol=paper search.split=dev': ('finetune-7dde5ced', 'magnitude-paper-7e269916', 'a114408b'),
    'experiment=magnitude protocol=paper search.split=train_holdout': ('finetune-b88e675c', 'magnitude-train_holdout-paper-9ed5edab', '83b409e2'),
    'experiment=magnitude protocol=paper search.split=train_subset': ('finetune-7dde5ced', 'magnitude-train_subset-paper-729b74d2', '23e830ef'),
    'experiment=magnitude protocol=clean search.split=dev': ('finetune-7dde5ced', 'magnitude-clean-6a8ba02c', 'a0600cfb'),
    'experiment=magnitude protocol=clean search.split=train_holdout': ('finetune-b88e675c', 'magnitude-train_holdout-clean-ac51d3cd', '29d94201'),
    'experiment=magnitude protocol=clean search.split=train_subset': ('finetune-7dde5ced', 'magnitude-train_subset-clean-4a303c2b', '5744308f'),
    'experiment=imp protocol=paper search.split=dev': ('finetune-7dde5ced', 'imp-paper-d92c8639', '4871ab08'),
    'experiment=imp protocol=paper search.split=train_holdout': ('finetune-b88e675c', 'imp-train_holdout-paper-a914e340', 'a38013b3'),
    'experiment=imp protocol=paper search.split=train_subset': ('finetune-7dde5ced', 'imp-train_subset-paper-9a679042', '00425caa'),
    'experiment=imp protocol=clean search.split=dev': ('finetune-7dde5ced', 'imp-clean-d92c8639', '4871ab08'),
    'experiment=imp protocol=clean search.split=train_holdout': ('finetune-b88e675c', 'imp-train_holdout-clean-a914e340', 'a38013b3'),
    'experiment=imp protocol=clean search.split=train_subset': ('finetune-7dde5ced', 'imp-train_subset-clean-9a679042', '00425caa'),
    'experiment=magnitude magnitude.exit_mask=last_passing': ('finetune-7dde5ced', 'magnitude-custom-885b7268', '3afb2e45'),
    'experiment=magnitude protocol.magnitude_exit=last_passing': ('finetune-7dde5ced', 'magnitude-custom-885b7268', '3afb2e45'),
    'experiment=magnitude magnitude.fraction=0.2': ('finetune-7dde5ced', 'magnitude-paper-c0fbfeb5', 'fe7318f1'),
    'experiment=magnitude magnitude.random_accumulation=1': ('finetune-7dde5ced', 'magnitude-custom-cbc6be0d', 'c25fa1ff'),
    'experiment=magnitude magnitude.max_steps=5': ('finetune-7dde5ced', 'magnitude-paper-61b6d524', 'b7316115'),
    'experiment=magnitude magnitude.include_biases=false': ('finetune-7dde5ced', 'magnitude-paper-1972f682', '287bbbd6'),
    'experiment=magnitude search.threshold=0.8': ('finetune-7dde5ced', 'magnitude-paper-d5c9f5b2', 'b31dec78'),
    'experiment=magnitude magnitude.modules=[attention.self.query,attention.self.key,attention.self.value]': ('finetune-7dde5ced', 'magnitude-paper-2e61914b', 'e55c21a7'),
    'experiment=magnitude tickets.sampling=exact': ('finetune-7dde5ced', 'magnitude-paper-7e269916', 'a114408b'),
    'experiment=magnitude model=minilm': ('finetune-85a4a1bc', 'magnitude-paper-c7027fa5', '1bcdb59c'),
    'experiment=magnitude task=stsb': ('finetune-2bdd9adf', 'magnitude-paper-3ddb5ad5', '95182735'),
    'experiment=magnitude trainer=ddp_sim': ('finetune-ba0ed0f8', 'magnitude-paper-93ebd73b', '2b459dcf'),
    'experiment=imp imp.rounds=3': ('finetune-7dde5ced', 'imp-paper-b73b489f', 'b8bd9546'),
    'experiment=imp imp.epochs_per_round=1': ('finetune-7dde5ced', 'imp-paper-51e6048f', '6f6129bd'),
    'experiment=imp imp.fraction=0.3': ('finetune-7dde5ced', 'imp-paper-2d5a6d79', '522a7004'),
    'experiment=imp imp.include_biases=false': ('finetune-7dde5ced', 'imp-paper-798fc8e2', '67dc30bb'),
    'experiment=imp search.threshold=0.5': ('finetune-7dde5ced', 'imp-paper-2c4d1d42', '049b75e9'),
    'experiment=imp recipe.max_epochs=2': ('finetune-322ffc6d', 'imp-paper-aa993813', 'ea963c03'),
    'experiment=imp imp.modules=[intermediate.dense,output.dense]': ('finetune-7dde5ced', 'imp-paper-85b05349', '7961e4a6'),
    'experiment=imp model=minilm': ('finetune-85a4a1bc', 'imp-paper-21e7f88e', 'da2d30b5'),
    'experiment=imp task=stsb': ('finetune-2bdd9adf', 'imp-paper-75bdcc95', '71e15603'),
    'experiment=super super.dir=SUPER': ('finetune-7dde5ced', 'super-paper-72f01729', 'd9b64181'),
    'experiment=super super.dir=SUPER protocol=clean': ('finetune-7dde5ced', 'super-clean-0f91c5c6', '2eb9ac8e'),
    'experiment=super super.dir=SUPER tickets.kinds=[good,random]': ('finetune-7dde5ced', 'super-paper-72f01729', 'd9b64181'),
    'experiment=super super.dir=SUPER tickets.kinds=[bad]': ('finetune-7dde5ced', 'super-paper-fcf68137', '047edcf8'),
    'experiment=super super.dir=SUPER task=stsb': ('finetune-2bdd9adf', 'super-paper-8ec64c36', '5a40b2b5'),
    'experiment=super super.dir=SUPER tickets.super_random=once': ('finetune-7dde5ced', 'super-custom-c5c3ad56', '5e1761f6'),
    'experiment=patterns': ('finetune-7dde5ced', 'patterns-paper-10320ca2', 'd642a480'),
    'experiment=patterns patterns.examples=32': ('finetune-7dde5ced', 'patterns-paper-8e598e41', 'dae75547'),
    'experiment=patterns patterns.hand_labels=LABELS': ('finetune-7dde5ced', 'patterns-paper-8033e1c8', '93268b47'),
    'experiment=patterns task=stsb': ('finetune-2bdd9adf', 'patterns-paper-883d7e7e', 'cc75ce4f'),
}


def test_every_preset_keeps_its_folder_names(tmp_path, monkeypatch):
    computed = names(tmp_path, monkeypatch)
    assert set(computed) == set(EXPECTED)
    differing = {case: (EXPECTED[case], got) for case, got in computed.items() if got != EXPECTED[case]}
    assert not differing, differing


def test_the_cases_cover_every_mode_and_protocol_key():
    from lottery.schema import PROTOCOL_KEYS
    from pipeline.modes import MODES, get_mode
    from pipeline.protocol import protocol_settings

    get_mode("finetune")
    joined = " ".join(cases())
    assert all(f"experiment={mode}" in joined for mode in MODES if mode != "finetune")
    paths = {path for mode in MODES.values() for path in protocol_settings(mode.settings).values()}
    assert len(paths) == len(PROTOCOL_KEYS) and all(path in joined for path in paths), paths


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        table = names(Path(folder), patch)
    print("EXPECTED: dict[str, tuple[str, str, str]] = {")
    for case, value in table.items():
        print(f"    {case!r}: {value!r},")
    print("}")
