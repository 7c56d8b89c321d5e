"""What a ticket costs: FLOPs against a hand computation, parameters, and the fields of model_cost and
ticket_cost (not their timings)."""

import json

import pytest

import bench.flops
from lottery import cost
from lottery.errors import ConfigError
from lottery.masks import StructuredMasks
from lottery.models import tiny_bert
from lottery.pruning import prune_structure

# The tiny BERT: 2 layers, 4 heads of size 16, hidden d = 64, FFN f = 128. At T = 10 tokens, per layer:
#   projections (q, k, v, output) 4 * 2 * T * d * (h * 16) = 8 * 10 * 64 * 64 = 327,680 with 4 heads
#   scores + context              h * 2 * 2 * T * T * 16   = 4 * 4 * 100 * 16  =  25,600 with 4 heads
#   FFN                           2 * 2 * T * d * f        = 4 * 10 * 64 * 128 = 327,680
FULL_LAYER = 327_680 + 25_600 + 327_680  # 680,960
# Pruned below: layer 0 keeps 2 heads and no MLP (163,840 + 12,800); layer 1 no heads, its MLP (327,680).
PRUNED = (163_840 + 12_800) + 327_680
# Encoder parameters per layer: q, k, v 3 * (64 * 64 + 64), attention output 64 * 64 + 64, two LayerNorms
# 2 * 128, intermediate 64 * 128 + 128, output 128 * 64 + 64.
LAYER_PARAMS = 3 * 4160 + 4160 + 256 + 8320 + 8256  # 33,472


def pruned_tiny():
    return prune_structure(tiny_bert(seed=0), StructuredMasks([[1, 0, 1, 0], [0, 0, 0, 0]], [0, 1]))


def test_flops_of_the_full_and_a_pruned_tiny_model_match_a_hand_computation():
    assert cost.flops_per_example(tiny_bert(seed=0), seq_len=10) == 2 * FULL_LAYER
    assert cost.flops_per_example(pruned_tiny(), seq_len=10) == PRUNED


def test_bench_keeps_its_flops_names_and_formula_text():
    model = tiny_bert(seed=0)
    assert bench.flops.masks_flops is cost.masks_flops and bench.flops.encoder_flops is cost.encoder_flops
    assert bench.flops.masks_flops(model.config, [[1, 0, 1, 0], [0] * 4], [0, 1], 10) == PRUNED
    assert "q, k, v projections" in bench.flops.__doc__ and "FlopCounterMode" in bench.flops.__doc__


def test_parameter_counts():
    model, pruned = tiny_bert(seed=0), pruned_tiny()
    assert cost.parameter_count(model) == sum(p.numel() for p in model.parameters())
    assert cost.encoder_parameter_count(model) == 2 * LAYER_PARAMS
    # Pruned: layer 0 loses 2 heads (2 * 16 rows of q, k, v and columns of the output: 4 * 32 * 64 weights
    # + 3 * 32 biases) and its MLP (64 * 128 + 128 + 128 * 64 + 64); layer 1 loses its 4 heads (4 * 64 * 64
    # + 3 * 64). The output projection's bias stays.
    removed = (4 * 32 * 64 + 3 * 32) + (8320 + 8256) + (4 * 64 * 64 + 3 * 64)
    assert cost.encoder_parameter_count(pruned) == 2 * LAYER_PARAMS - removed
    assert cost.parameter_count(model) - cost.parameter_count(pruned) == removed


QUICK = {"batch_sizes": (1, 4), "seq_len": 16, "min_run_time_s": 0.01}


def test_model_cost_records_where_and_how_it_was_measured():
    model = tiny_bert(seed=0).train()
    result = cost.model_cost(model, "cpu", threads=1, **QUICK)
    assert result["device"] == "cpu" and result["device_name"] and result["precision"] == "fp32"
    assert result["threads"] == 1 and result["seq_len"] == 16 and result["min_run_time_s"] == 0.01
    assert result["batch_sizes"] == [1, 4] and result["params"] == cost.parameter_count(model)
    assert result["flops_per_example"] == cost.flops_per_example(model, 16)
    for field in ("latency_s", "latency_iqr_s", "latency_min_s", "latency_blocks"):
        assert set(result[field]) == {"1", "4"}, field
    assert all(v > 0 for v in result["latency_s"].values()) and all(n >= 1 for n in result["latency_blocks"].values())
    assert model.training and next(model.parameters()).device.type == "cpu"  # mode and place restored
    assert cost.model_cost(model, precision="bf16", **QUICK)["precision"] == "bf16"
    json.dumps(result)


@pytest.mark.parametrize("bad", [{"precision": "fp16"}, {"min_run_time_s": 0}])
def test_model_cost_refuses_bad_settings(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        cost.model_cost(tiny_bert(seed=0), **{**QUICK, **bad})


def test_a_ticket_is_measured_with_the_full_models_settings_against_its_one_measurement():
    full = cost.model_cost(tiny_bert(seed=0), "cpu", precision="bf16", threads=1, **QUICK)
    result = cost.ticket_cost(full, pruned_tiny())
    for key in ("device", "device_name", "precision", "threads", "seq_len", "min_run_time_s"):
        assert result[key] == full[key], key
    assert result["full"]["latency_s"] == full["latency_s"]  # reused, not measured again
    for name in ("full", "pruned"):
        assert set(result[name]) == {"params", "encoder_params", "flops_per_example", "latency_s", "latency_iqr_s",
                                     "latency_min_s", "latency_blocks"}
        assert set(result[name]["latency_s"]) == {"1", "4"} and all(v > 0 for v in result[name]["latency_s"].values())
    assert result["pruned"]["flops_per_example"] < result["full"]["flops_per_example"]
    assert result["pruned"]["params"] < result["full"]["params"]
    assert result["speedup"]["flops"] == pytest.approx(result["full"]["flops_per_example"] / result["pruned"]["flops_per_example"])
    assert result["speedup"]["flops"] > 1 and result["speedup"]["encoder_params"] > 1
    for size in ("1", "4"):
        assert result["latency_vs_flops"][size] == pytest.approx(result["speedup"]["latency"][size] / result["speedup"]["flops"])
    json.dumps(result)


def test_a_ticket_with_nothing_left_has_no_flops_speedup():
    empty = prune_structure(tiny_bert(seed=0), StructuredMasks([[0] * 4] * 2, [0, 0]))
    assert cost.flops_per_example(empty) == 0
    result = cost.ticket_cost(cost.model_cost(tiny_bert(seed=0), batch_sizes=(1,), seq_len=8, min_run_time_s=0.01), empty)
    assert result["speedup"]["flops"] is None and result["speedup"]["encoder_params"] > 1
    assert result["latency_vs_flops"] == {"1": None}


# ----- the cost stage (pipeline.tickets): where it measures, and the full model timed once -----
def cost_run(accelerator: str = "cpu", cpu: bool = False):
    from types import SimpleNamespace

    from pipeline.settings.concerns import CostSettings, ExecutionSettings

    settings = SimpleNamespace(cost=CostSettings(batch_sizes=(1,), seq_len=8, min_run_time_s=0.01, cpu=cpu),
                               execution=ExecutionSettings(accelerator=accelerator))
    return SimpleNamespace(settings=settings)


def test_the_cost_stage_measures_on_the_runs_device_and_on_the_cpu_when_asked():
    from pipeline.tickets import cost_devices

    def where(accelerator, cpu):
        return cost_devices(cost_run(accelerator, cpu).settings.execution, cost_run(accelerator, cpu).settings.cost)

    assert where("cpu", False) == ["cpu"] and where("cpu", True) == ["cpu"]
    assert where("gpu", False) == ["cuda"] and where("gpu", True) == ["cuda", "cpu"]


def test_the_full_model_is_timed_once_for_every_ticket_of_an_experiment(monkeypatch):
    from pipeline import tickets

    timed = []

    def counting(model, *args, **kwargs):
        timed.append(model)
        return cost.model_cost(model, *args, **kwargs)

    monkeypatch.setattr(tickets, "model_cost", counting)  # the full model's timings (tickets: ticket_cost's own)
    run, full = cost_run(), tiny_bert(seed=0)
    shared = tickets.FullModelCost(run, full)
    measured = [tickets.measure_cost(run, shared, pruned_tiny()) for _ in range(3)]
    assert [model is full for model in timed] == [True]  # once, however many tickets
    assert len({m["latency_ms_b1_full"] for m in measured}) == 1
    for metrics in measured:
        assert metrics["device"] == "cpu" and metrics["precision"] == "fp32" and metrics["threads"] >= 1
        assert metrics["latency_vs_flops_b1"] == pytest.approx(metrics["speedup_latency_b1"] / metrics["speedup_flops"])
