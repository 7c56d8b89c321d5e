"""The structured and magnitude experiments end to end through the pipeline, on a slice of the real
GLUE RTE files, for the tiny random model of every family (`model=tiny model.family=<family>`).

Kept quick: 32 training and 32 dev examples (one dev batch), one epoch, tickets scored pruned but
not retrained and not timed, except one full run (retrained, costed, reloaded) on a grouped-query
decoder."""

import math

import pytest

from lottery.accounting import encoder_parameter_count
from lottery.masks import StructuredMasks
from lottery.models import TINY_FAMILIES
from lottery.pruning import load_pruned
from pipeline import train
from pipeline.config import SHARED_GLUE
from pipeline.identity import finetune_identity
from pipeline.run import make_run
from tests.helpers import compose_config, experiment_dir, finetune_dir, tiny_overrides

pytestmark = pytest.mark.real_glue("RTE")
QUICK = ("tickets.retrain=false", "tickets.cost=false")


def overrides(root, family, experiment, *extra):
    return tiny_overrides(root, SHARED_GLUE, f"model.family={family}", f"experiment={experiment}", "task=rte",
                          "data.train_limit=32", "data.eval_limit=32", "recipe.max_length=64", "recipe.eval_batch_size=32",
                          *extra)


def model_id(family):
    return "tiny" if family == "bert" else f"tiny_{family}"


def check_results(results, num_units):
    assert set(results["tickets"]) == {"good", "random", "bad"}
    assert results["num_layers"] == 2 and results["num_heads"] == num_units
    for ticket in results["tickets"].values():
        assert math.isfinite(ticket["pruned"]["accuracy"])


@pytest.mark.parametrize("family", [family for family in TINY_FAMILIES if family != "qwen2"])
def test_structured_and_magnitude_experiments_run_for_every_family(family, tmp_path):
    units = 2 if family in ("llama", "mistral") else 4
    structured = train(compose_config(overrides(tmp_path, family, "structured", "structured.head_fraction=0.5",
                                                *QUICK)))
    check_results(structured, units)
    good = structured["tickets"]["good"]
    assert good["heads_total"] == 2 * units and good["mlps_total"] == 2
    assert good["pruned"]["accuracy"] >= structured["search"]["threshold_score"] - 1e-6
    magnitude = train(compose_config(overrides(tmp_path, family, "magnitude", "magnitude.max_steps=2", *QUICK)))
    check_results(magnitude, units)
    assert 0 < magnitude["tickets"]["good"]["sparsity"] < 1
    assert all(len(row) == units for row in magnitude["tickets"]["good"]["head_survival"])
    finetune_dir(tmp_path, "rte", model=model_id(family))  # one fine-tune, shared by both experiments


def test_a_full_run_on_a_grouped_query_decoder_retrains_and_costs_its_tickets(tmp_path):
    results = train(compose_config(overrides(tmp_path, "qwen2", "structured", "structured.head_fraction=0.5",
                                             "cost.batch_sizes=[1,4]", "cost.seq_len=16", "cost.repeats=1")))
    check_results(results, 2)
    exp = experiment_dir(tmp_path, "rte", "structured-paper", model="tiny_qwen2")
    for kind, ticket in results["tickets"].items():
        assert math.isfinite(ticket["retrained"]["accuracy"]) and ticket["cost"]["params_pruned"] > 0
        model = load_pruned(exp / "retrained" / kind / "model")
        masks = StructuredMasks.from_lists(ticket["head_mask"], ticket["mlp_mask"])
        assert model.config.pruned_structure["mlps"] == ticket["mlp_mask"]
        assert encoder_parameter_count(model) == ticket["params_kept"]
        assert sum(len(units) for units in model.config.pruned_structure["heads"]) == masks.num_heads_kept
    magnitude = train(compose_config(overrides(tmp_path, "qwen2", "magnitude", "magnitude.max_steps=2", *QUICK)))
    check_results(magnitude, 2)


def test_the_tiny_models_family_is_part_of_the_fine_tunes_identity_except_for_bert(tmp_path, tiny_glue):
    bert = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte")))
    assert bert.finetune_identity["model"] == {"name_or_path": None, "random_init": True}  # as before families
    assert bert.identity_dir.parts[-3] == "tiny"
    roberta = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", "model.family=roberta")))
    assert roberta.finetune_identity["model"] == {"name_or_path": None, "random_init": True, "family": "roberta"}
    assert roberta.identity_dir.parts[-3] == "tiny_roberta" and roberta.finetune_dir.name != bert.finetune_dir.name
    assert finetune_identity(roberta.settings, roberta.task) == roberta.finetune_identity


def test_an_unknown_tiny_family_is_a_config_error(tmp_path, tiny_glue):
    from lottery.errors import ConfigError

    with pytest.raises(ConfigError, match="model.family='gpt2'.*qwen2"):
        make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", "model.family=gpt2")))
