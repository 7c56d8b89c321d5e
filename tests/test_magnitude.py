"""Global magnitude pruning, its tickets, rewinding and reports, on the random tiny BERT."""

import json

import pytest
import torch

from lottery.errors import CorruptFileError, NonFiniteError
from lottery.magnitude import (
    MagnitudeSearch,
    WeightMasks,
    bad_weight_ticket,
    eligible_parameters,
    global_magnitude_step,
    load_weight_masks,
    random_weight_ticket,
    rewind_,
    snapshot_cpu,
    sparsity_report,
)
from lottery.masks import MaskShapeError
from lottery.models import TinyBertSpec, tiny_bert


def _flat(masks: WeightMasks) -> torch.Tensor:
    return torch.cat([m.reshape(-1) for m in masks.values()])


def _flat_abs(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).abs() for p in params.values()])


def test_eligible_parameters_follow_the_paper(tiny_model):
    names = set(eligible_parameters(tiny_model))
    assert len(names) == 2 * (6 + 5)  # six weights and five biases per layer
    assert "bert.encoder.layer.0.attention.self.query.weight" in names
    assert "bert.encoder.layer.1.attention.output.dense.bias" in names
    assert "bert.encoder.layer.1.intermediate.dense.bias" in names
    assert "bert.encoder.layer.1.output.dense.weight" in names
    assert "bert.encoder.layer.1.output.dense.bias" not in names
    assert not any(k in n for n in names for k in ("embeddings", "LayerNorm", "pooler", "classifier"))
    assert all(n.endswith("weight") for n in eligible_parameters(tiny_model, include_biases=False))
    only_query = eligible_parameters(tiny_model, roles=("attention.self.query",))
    assert list(only_query) == [f"bert.encoder.layer.{i}.attention.self.{k}" for i in (0, 1) for k in ("query.weight", "query.bias")]


@pytest.mark.parametrize("of", ["remaining", "original"])
def test_each_step_prunes_exactly_the_fraction_by_global_magnitude(tiny_model, of):
    params = eligible_parameters(tiny_model)
    masks = WeightMasks.ones_like(params)
    total = masks.num_total()
    magnitudes = _flat_abs(params)
    for _ in range(3):
        kept = masks.num_kept()
        new = global_magnitude_step(params, masks, 0.1, of=of)
        assert kept - new.num_kept() == round(0.1 * (kept if of == "remaining" else total))
        new_kept = _flat(new)
        assert not new_kept[~_flat(masks)].any()  # pruned stays pruned
        just_pruned = _flat(masks) & ~new_kept
        assert magnitudes[just_pruned].max() <= magnitudes[new_kept].min()
        masks = new


def test_ranking_is_global_so_a_layer_of_larger_weights_keeps_more(tiny_model):
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    twin = "bert.encoder.layer.1.intermediate.dense.weight"
    with torch.no_grad():
        tiny_model.get_parameter(name).mul_(10)
    params = eligible_parameters(tiny_model)
    masks = global_magnitude_step(params, WeightMasks.ones_like(params), 0.5)
    assert masks[name].float().mean() > 0.9  # N(0, 0.2) against the others' N(0, 0.02)
    assert masks[twin].float().mean() < 0.5


def test_ties_are_broken_deterministically_with_the_exact_count():
    params = {"a": torch.zeros(10), "b": torch.ones(5)}
    masks = global_magnitude_step(params, WeightMasks.ones_like(params), 0.2)
    assert masks.num_kept() == 12
    assert masks["a"].tolist() == [False] * 3 + [True] * 7  # ties pruned in index order
    assert masks == global_magnitude_step(params, WeightMasks.ones_like(params), 0.2)


def test_excluded_parameters_are_untouched_by_the_whole_pipeline(tiny_model):
    excluded = {n: p.detach().clone() for n, p in tiny_model.named_parameters() if n not in eligible_parameters(tiny_model)}
    pretrained = snapshot_cpu(tiny_model)
    params = eligible_parameters(tiny_model)
    masks = global_magnitude_step(params, WeightMasks.ones_like(params), 0.5)
    masks.apply_(tiny_model)
    rewind_(tiny_model, masks, pretrained)
    for name, before in excluded.items():
        assert torch.equal(tiny_model.get_parameter(name), before), name
    assert "bert.encoder.layer.0.output.dense.bias" in excluded


def test_search_stops_at_the_threshold_and_keeps_the_last_passing_mask(tiny_model):
    params = eligible_parameters(tiny_model)
    search = MagnitudeSearch(fraction=0.1, threshold=0.9, max_steps=10)
    masks = WeightMasks.ones_like(params)
    scores = iter([1.0, 0.95, 0.92, 0.90, 0.89, 0.5])  # 0.90 = 0.9 x full passes, 0.89 fails
    steps = []
    assert search.report(next(scores), masks)
    while not search.done:
        masks = global_magnitude_step(params, masks, search.next_fraction, of=search.of)
        steps.append(masks)
        search.report(next(scores), masks)
    assert [h["passed"] for h in search.history] == [True] * 4 + [False]
    assert search.good_step == 3 and search.good is steps[2]  # after a failure both exit rules agree
    assert search.next_fraction is None
    assert search.history[3]["sparsity"] == pytest.approx(1 - 0.9**3, abs=1e-4)
    with pytest.raises(RuntimeError):
        search.report(0.8, masks)

    resumed = MagnitudeSearch()
    resumed.load_state_dict(search.state_dict())
    assert resumed.done and resumed.good_step == 3 and resumed.good == search.good
    assert resumed.history == search.history
    with pytest.raises(ValueError, match="exit"):
        MagnitudeSearch(exit_mask="last_passing").load_state_dict(search.state_dict())


@pytest.mark.parametrize(("exit_mask", "good_step"), [("previous", 2), ("last_passing", 3)])
def test_after_max_steps_the_authors_loop_keeps_the_previous_mask(exit_mask, good_step):
    """src/find_global_weight_mask.py: `while total_steps != 0 and score >= bar` saves the mask from
    before each step, so when all its 10 steps pass the ticket is step 9; "last_passing" keeps 10."""
    search = MagnitudeSearch(max_steps=3, exit_mask=exit_mask)
    steps = [WeightMasks({"w": torch.arange(4) >= k}) for k in range(4)]
    for masks in steps:
        assert not search.done
        search.report(1.0, masks)
    assert search.done and len(search.history) == 4  # the full model plus three steps
    assert search.good_step == good_step and search.good == steps[good_step]


def test_a_non_finite_full_score_stops_the_search():
    with pytest.raises(NonFiniteError, match="finite"):
        MagnitudeSearch().report(float("nan"), WeightMasks({"w": torch.ones(2, dtype=torch.bool)}))


def test_mask_files_are_byte_identical_for_equal_masks(tmp_path, tiny_model):
    masks = global_magnitude_step(eligible_parameters(tiny_model), WeightMasks.ones_like(eligible_parameters(tiny_model)), 0.3)
    masks.save(tmp_path / "a.npz")
    WeightMasks(dict(masks)).save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert load_weight_masks(tmp_path / "a.npz").content_sha256() == masks.content_sha256()
    (tmp_path / "c.npz").write_bytes((tmp_path / "a.npz").read_bytes()[:100])
    with pytest.raises(CorruptFileError, match="c.npz"):
        load_weight_masks(tmp_path / "c.npz")


def test_bad_ticket_keeps_exactly_the_smallest_weights(tiny_model):
    params = eligible_parameters(tiny_model)
    good = global_magnitude_step(params, WeightMasks.ones_like(params), 0.6)
    bad = bad_weight_ticket(params, good, seed=0)
    assert bad.num_kept() == good.num_kept()
    magnitudes, kept = _flat_abs(params), _flat(bad)
    assert magnitudes[kept].max() <= magnitudes[~kept].min()
    assert not (kept & _flat(good)).any()  # good keeps the largest 40%, bad the smallest 40%


def test_random_ticket_has_the_same_size_and_is_seeded(tiny_model):
    params = eligible_parameters(tiny_model)
    good = global_magnitude_step(params, WeightMasks.ones_like(params), 0.3)
    first = random_weight_ticket(good, seed=1)
    assert first.num_kept() == good.num_kept()
    assert first == random_weight_ticket(good, seed=1)
    assert first != random_weight_ticket(good, seed=2)
    per_matrix = random_weight_ticket(good, seed=1, per_matrix=True)
    assert all(int(per_matrix[n].sum()) == int(good[n].sum()) for n in good)
    assert per_matrix != good


def test_rewind_restores_surviving_pretrained_weights_bit_for_bit(tiny_model, tiny_batch):
    pretrained = snapshot_cpu(tiny_model)
    params = eligible_parameters(tiny_model)
    with torch.no_grad():  # stand-in for fine-tuning
        for p in params.values():
            p.add_(torch.randn_like(p))
    masks = global_magnitude_step(params, WeightMasks.ones_like(params), 0.5)
    rewind_(tiny_model, masks, pretrained)
    for name, p in params.items():
        kept = masks[name]
        assert torch.equal(p[kept], pretrained[name][kept])
        assert (p[~kept] == 0).all() and not torch.signbit(p[~kept]).any()


def test_apply_keeps_pruned_weights_zero_after_an_adamw_step(tiny_model, tiny_batch):
    params = eligible_parameters(tiny_model)
    masks = global_magnitude_step(params, WeightMasks.ones_like(params), 0.5)
    masks.apply_(tiny_model)
    tiny_model.train()
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-2, weight_decay=0.0)
    tiny_model(**tiny_batch).loss.backward()
    optimizer.step()
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert (params[name][~masks[name]] != 0).any()  # the step did move pruned weights
    stepped = {n: p.detach().clone() for n, p in params.items()}
    masks.apply_(tiny_model)
    for name, p in params.items():
        assert (p[~masks[name]] == 0).all(), name
        assert torch.equal(p[masks[name]], stepped[name][masks[name]]), name


def test_save_load_round_trip_is_bit_packed_and_atomic(tiny_model, tmp_path):
    params = eligible_parameters(tiny_model)
    masks = random_weight_ticket(global_magnitude_step(params, WeightMasks.ones_like(params), 0.5), seed=0)
    path = tmp_path / "sub" / "masks.npz"
    masks.save(path)
    loaded = load_weight_masks(path)
    assert loaded == masks and list(loaded) == list(masks)
    float_bytes = 4 * masks.num_total()
    assert path.stat().st_size < float_bytes / 12  # about 1 bit a weight against 32, plus headers
    assert [p.name for p in path.parent.iterdir()] == ["masks.npz"]  # no temp file left behind


def test_masks_for_another_shape_fail_with_a_clear_error(tiny_model):
    masks = WeightMasks.ones_like(eligible_parameters(tiny_model))
    wider = tiny_bert(spec=TinyBertSpec(intermediate_size=256))
    with pytest.raises(MaskShapeError, match=r"intermediate\.dense\.weight.*\(128, 64\).*\(256, 64\)"):
        masks.apply_(wider)
    deeper_masks = WeightMasks.ones_like(eligible_parameters(tiny_bert(spec=TinyBertSpec(num_hidden_layers=3))))
    with pytest.raises(MaskShapeError, match=r"encoder\.layer\.2\..*no such parameter"):
        deeper_masks.check_compatible(tiny_model)


def test_sparsity_report_counts_a_head_and_an_mlp(tiny_model):
    params = eligible_parameters(tiny_model)
    ones = WeightMasks.ones_like(params)
    cut = {n: m.clone() for n, m in ones.items()}
    cut["bert.encoder.layer.0.attention.self.query.weight"][16:32] = False  # head 1's 16 query rows
    cut["bert.encoder.layer.1.intermediate.dense.weight"][:] = False
    report = sparsity_report(WeightMasks(cut), tiny_model)
    json.dumps(report)
    # head 1 owns 3 x (16 x 64) rows + 3 x 16 biases + 64 x 16 output columns = 4144 weights
    assert report["head_survival"][0][1] == pytest.approx(100 * (1 - 16 * 64 / 4144))
    assert report["head_survival"][0][0] == report["head_survival"][1][1] == 100.0
    # MLP 1 owns 128 x 64 + 128 + 64 x 128 weights (no output.dense.bias)
    assert report["mlp_survival"] == [100.0, pytest.approx(100 * (1 - 128 * 64 / (128 * 64 + 128 + 64 * 128)))]
    assert report["per_matrix"]["bert.encoder.layer.1.intermediate.dense.weight"] == 1.0
    assert report["sparsity"] == pytest.approx((16 * 64 + 128 * 64) / ones.num_total())
    assert report["per_layer"][0] > 0 and report["per_layer"][1] > report["per_layer"][0]


def test_fast_kth_value_is_exact_on_large_inputs_with_ties_and_aligned_patterns():
    from lottery.magnitude.selection import EXACT_SELECTION_MAX, kth_value

    n = EXACT_SELECTION_MAX + 123_457
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 1000, (n,), generator=g).float()  # many ties
    scores[::7] = float("inf")
    aligned = torch.rand(n, generator=g)
    aligned[:: n >> 20] = 0.0  # the strided sample sees only zeros: the bracket misses
    for values in (scores, aligned):
        for k in (1, n // 10, n // 2, n):
            assert kth_value(values, k) == torch.kthvalue(values, k).values, k
