"""plan=true's compute: examples, FLOPs (6 x non-embedding parameters x tokens to train, 2 x to
evaluate) and the time projected from a measured throughput.json; in-process, on the tiny BERT."""

from __future__ import annotations

import pytest
import torch

from lottery.accounting import encoder_parameter_count, structured_size
from lottery.features import tokenize
from lottery.glue_data import read_split
from lottery.masks import StructuredMasks
from lottery.models import tiny_bert
from lottery.throughput import format_flops, format_seconds, nearest_rate, read_rates, record_rate
from pipeline.plan import current_device, plan_run
from pipeline.run import make_run
from tests.helpers import compose_config, tiny_overrides


def structured_run(root, glue):
    return make_run(compose_config(tiny_overrides(root, glue, "experiment=structured", "task=stsb", "plan=true")))


def test_the_plan_counts_each_stage_and_projects_its_time_from_the_measured_rate(tmp_path, tiny_glue):
    root = tmp_path / "out"
    run = structured_run(root, tiny_glue)
    rates = tmp_path / "throughput.json"
    device, precision = current_device(run)
    record_rate(rates, device, {"model": "tiny BERT", "params": 70_000, "precision": precision, "threads": 1,
                                "train_flops_per_s": 1e9, "eval_flops_per_s": 4e9})
    lines, total = plan_run(run, rates)

    # by hand: the tiny STS-B model's parameters outside the embeddings, the files' tokens
    model = tiny_bert(num_labels=1)
    params = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in name)
    tokenizer = run.tokenizer
    tokens = {split: sum(len(ids) for ids in tokenize(read_split(run.task, split, tiny_glue), tokenizer, 128).input_ids)
              for split in ("train", "dev")}  # 48 and 24 examples: the sample is the whole split
    fine_tune_train, fine_tune_eval = 6 * params * tokens["train"] * 1, 2 * params * tokens["dev"]
    fine_tune_s = fine_tune_train / 1e9 + fine_tune_eval / 4e9
    text = "\n".join(lines)
    assert "(48 training examples x 1 epochs, then 24 dev examples)\n" \
           f"          {format_flops(fine_tune_train + fine_tune_eval)}, about {format_seconds(fine_tune_s)}" in text, text
    assert f"{params:,} non-embedding parameters" in text
    assert f"dev {tokens['dev'] / 24:.1f}, train {tokens['train'] / 48:.1f}" in text
    # the search per iteration (importance pass + evaluation on the 24 dev examples), outside the total
    assert f"per iteration: {format_flops(8 * params * tokens['dev'])}" in text
    # fine-tune and 3 retrained tickets (not drawn yet: the full model, an upper bound) and 3 pruned evaluations
    train_flops, eval_flops = 4 * fine_tune_train, 4 * fine_tune_eval + 3 * 2 * params * tokens["dev"]
    assert total.flops == pytest.approx(train_flops + eval_flops)
    assert total.seconds == pytest.approx(train_flops / 1e9 + eval_flops / 4e9)
    assert lines[-1] == (f"  total of the stages that run: {format_flops(total.flops)}, about "
                         f"{format_seconds(total.seconds)} on {device}; plus the search's iterations")
    assert not root.exists()  # a plan writes nothing


def test_without_a_measured_rate_the_plan_says_to_run_make_bench(tmp_path, tiny_glue):
    run = structured_run(tmp_path / "out", tiny_glue)
    device, _ = current_device(run)
    lines, total = plan_run(run, tmp_path / "absent.json")
    assert f"  no throughput measured on {device} (precision 32): run make bench" in lines
    assert total.seconds is None and total.flops > 0
    assert lines[-1].endswith(f"no throughput measured on {device}: run make bench; plus the search's iterations")
    fine_tune = lines.index(next(line for line in lines if "fine-tune" in line))
    assert lines[fine_tune + 1].strip().endswith("FLOPs")  # FLOPs, no time


def test_rates_are_merged_per_device_and_the_nearest_model_size_is_used(tmp_path):
    path = tmp_path / "throughput.json"
    small = {"model": "tiny BERT", "params": 70_000, "precision": "32", "threads": 2,
             "train_flops_per_s": 1e9, "eval_flops_per_s": 2e9}
    large = {**small, "model": "MiniLM-L6", "params": 10_800_000, "train_flops_per_s": 3e10}
    record_rate(path, "cpu A", small)
    record_rate(path, "cpu A", large)
    record_rate(path, "GPU B", {**large, "precision": "bf16"})
    record_rate(path, "cpu A", {**small, "train_flops_per_s": 5e9})  # a re-measurement replaces the old one
    rates = read_rates(path)
    assert sorted(rates) == ["GPU B", "cpu A"]
    assert [e["train_flops_per_s"] for e in rates["cpu A"]] == [3e10, 5e9]
    assert nearest_rate(rates["cpu A"], 110_000_000, "32")["model"] == "MiniLM-L6"  # bert-base: closer to MiniLM
    assert nearest_rate(rates["cpu A"], 200_000, "32")["model"] == "tiny BERT"
    assert nearest_rate(rates["GPU B"], 100, "32")["precision"] == "bf16"  # none of that precision: the others
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_drawn_structured_ticket_is_retrained_at_its_kept_size(tmp_path, tiny_glue):
    run = structured_run(tmp_path / "out", tiny_glue)
    model = tiny_bert(num_labels=1)
    masks = StructuredMasks(torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0]]), torch.tensor([1, 0]))  # 2 heads, 1 MLP
    masks.save_json(run.experiment_dir / "tickets" / "good.json")  # as the experiment draws it before retraining
    full = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in name)
    kept = full - encoder_parameter_count(model) + structured_size(model, masks)["params_kept"]
    assert kept < full
    lines, _ = plan_run(run, tmp_path / "absent.json")
    compute = {line.split()[1]: lines[i + 1].strip() for i, line in enumerate(lines)
               if line.startswith("  run ") and "retrained" in line}
    assert set(compute) == {"good", "random", "bad"}
    ratio = float(compute["good"].split()[0]) / float(compute["random"].split()[0])  # random: not drawn, full size
    assert ratio == pytest.approx(kept / full, rel=0.05)  # FLOPs are printed to 2 significant digits


def test_a_model_whose_config_is_not_readable_still_gets_its_plan(tmp_path, tiny_glue):
    # e.g. a hub model offline: the stages and examples are still planned, the FLOPs said to be unknown
    empty = tmp_path / "model"
    empty.mkdir()
    run = make_run(compose_config(tiny_overrides(tmp_path / "out", tiny_glue, "model=custom", f"model.name_or_path={empty}",
                                                 "model.id=empty", "task=stsb", "plan=true")))
    lines, total = plan_run(run, tmp_path / "absent.json")
    assert lines[1].startswith(f"  FLOPs not estimated: model {empty}: its config is not readable")
    assert "(48 training examples x 1 epochs, then 24 dev examples)" in lines[-2]
    assert lines[-1] == "  total of the stages that run: not estimated" and total.flops is None
