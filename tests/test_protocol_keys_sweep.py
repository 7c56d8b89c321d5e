"""`+sweep=protocol_keys`: from protocol=paper, each protocol key flipped alone (conf/protocol_flip),
composed with the real config: every flip is labelled custom and differs from paper in its key only."""

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from pipeline.protocol import presets, protocol_record
from pipeline.run import make_run
from tests.helpers import CONF

FLIPS = sorted(path.stem for path in (CONF / "protocol_flip").glob("*.yaml"))


def _swept_flips() -> list[str]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+sweep=protocol_keys"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params.experiment == "structured" and params.protocol == "paper"
    override = OverridesParser.create().parse_overrides([f"+protocol_flip={params['+protocol_flip']}"])[0]
    return override.value().filter(FLIPS)  # what Hydra's sweeper expands the glob to


def test_every_protocol_key_has_a_flip_and_the_sweep_runs_the_structured_ones():
    paper, clean = presets()["paper"], presets()["clean"]
    differing = {key for key in paper if paper[key] != clean[key]}  # a key both presets share has nothing to flip
    assert set(FLIPS) == {"none", *differing}  # a new protocol key needs its file in conf/protocol_flip
    assert sorted(_swept_flips()) == ["accumulate", "empty_layer_bias", "none", "phase_change",
                                     "random_pairing", "sampling"]


def test_each_flip_changes_its_key_alone_to_the_clean_value(tiny_glue, tmp_path):
    import torch

    from lottery.masks import StructuredMasks

    paper, clean = presets()["paper"], presets()["clean"]
    for kind in ("good", "random", "bad"):  # super masks for the tiny model (experiment=super reads them)
        StructuredMasks(torch.ones(2, 4), torch.ones(2)).save_json(tmp_path / f"super_{kind}.json")
    experiments = {"magnitude_exit": "magnitude", "random_accumulation": "magnitude", "super_random": "super"}
    for flip in FLIPS:
        experiment = experiments.get(flip, "structured")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"experiment={experiment}", "model=tiny",
                                                           f"data.glue_dir={tiny_glue}", "protocol=paper",
                                                           f"+protocol_flip={flip}",
                                                           *([f"super.dir={tmp_path}"] if experiment == "super" else [])])
        record = protocol_record(make_run(cfg).settings)
        mode_keys = {key: paper[key] for key in record["keys"]}
        if flip == "none":
            assert record["name"] == "paper" and record["differs_from_preset"] == [], record
            continue
        assert flip in record["keys"], (flip, record)
        assert record["name"] == "custom" and record["preset"] == "paper", record
        assert record["differs_from_preset"] == [flip], record
        assert record["keys"] == {**mode_keys, flip: clean[flip]}, record
