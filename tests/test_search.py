"""The structured mask search as a state machine, driven by scripted importance and scores."""

import json

import pytest
import torch

from lottery.errors import NonFiniteError
from lottery.pass_rule import degenerate_warning
from lottery.search import (
    SearchConfig,
    StructuredSearch,
    mask_least_important,
)


def _importance(shape, seed):
    """Distinct importance values in a seeded random order."""
    g = torch.Generator().manual_seed(seed)
    n = torch.Size(shape).numel()
    return torch.randperm(n, generator=g).double().view(shape)


def _expected_after(mask, importance, count):
    """Reference: mask the `count` remaining elements of lowest (importance, flat index)."""
    flat, imp = mask.reshape(-1).tolist(), importance.reshape(-1).tolist()
    remaining = sorted((imp[i], i) for i in range(len(flat)) if flat[i] == 1)
    out = mask.reshape(-1).clone()
    for _, i in remaining[:count]:
        out[i] = 0
    return out.view_as(mask)


def _zeros(mask):
    return int((mask == 0).sum())


@pytest.mark.parametrize("phase_change", ["failed", "passing"])
def test_paper_schedule_on_12x12(phase_change):
    search = StructuredSearch(12, 12, SearchConfig(phase_change=phase_change))
    # after a failure the first step of the next phase is ranked by the failed mask's importance
    # (the authors' code) or by the last passing mask's (the published definition)
    after_failure = {"failed": lambda failed, passing: failed, "passing": lambda failed, passing: passing}[phase_change]
    assert [(p.head_step, p.mlp_step) for p in search.phases] == [(14, 1), (7, 0), (0, 1)]
    head, mlp = search.current_mask()
    assert head.shape == (12, 12) and mlp.shape == (12,) and head.all() and mlp.all()

    imps = [(_importance((12, 12), i), _importance((12,), 100 + i)) for i in range(8)]

    # iteration 0: the full model
    assert search.report(*imps[0], score=1.0)
    assert search.full_score == 1.0 and search.threshold_score == pytest.approx(0.9)
    head1, mlp1 = search.current_mask()
    assert _zeros(head1) == 14 and _zeros(mlp1) == 1
    assert torch.equal(head1, _expected_after(torch.ones(12, 12), imps[0][0], 14))
    assert torch.equal(mlp1, _expected_after(torch.ones(12), imps[0][1], 1))
    assert search.phase == "heads_mlps"

    # iteration 1 passes: 14 more heads and 1 more MLP by the new importance
    assert search.report(*imps[1], score=0.95)
    head2, mlp2 = search.current_mask()
    assert torch.equal(head2, _expected_after(head1, imps[1][0], 14))
    assert torch.equal(mlp2, _expected_after(mlp1, imps[1][1], 1))
    assert _zeros(head2) == 28 and _zeros(mlp2) == 2

    # iteration 2 fails: back to mask 1, heads only, 7 per step
    assert search.report(*imps[2], score=0.5)
    head3, mlp3 = search.current_mask()
    assert search.phase == "heads"
    assert torch.equal(head3, _expected_after(head1, after_failure(imps[2], imps[1])[0], 7))
    assert torch.equal(mlp3, mlp1)

    # iteration 3 passes: 7 more heads, no MLP
    assert search.report(*imps[3], score=0.9)
    head4, mlp4 = search.current_mask()
    assert torch.equal(head4, _expected_after(head3, imps[3][0], 7))
    assert torch.equal(mlp4, mlp1)

    # iteration 4 fails: back to mask 3, MLPs only, 1 per step
    assert search.report(*imps[4], score=0.1)
    head5, mlp5 = search.current_mask()
    assert search.phase == "mlps"
    assert torch.equal(head5, head3)
    assert torch.equal(mlp5, _expected_after(mlp3, after_failure(imps[4], imps[3])[1], 1))

    # iteration 5 passes, iteration 6 fails: done, good = mask 5
    assert search.report(*imps[5], score=0.91)
    head6, mlp6 = search.current_mask()
    assert torch.equal(head6, head5) and torch.equal(mlp6, _expected_after(mlp5, imps[5][1], 1))
    assert not search.report(*imps[6], score=0.2)
    assert search.done and search.phase is None
    good_head, good_mlp = search.good_mask()
    assert torch.equal(good_head, head5) and torch.equal(good_mlp, mlp5)
    assert torch.equal(search.current_mask()[0], head5)
    assert search.last_passing_iteration == 5

    assert [r.iteration for r in search.history] == list(range(7))
    assert [r.phase for r in search.history] == ["full", "heads_mlps", "heads_mlps", "heads", "heads", "mlps", "mlps"]
    assert [r.passed for r in search.history] == [True, True, False, True, False, True, False]
    assert torch.equal(search.history[2].head_mask, head2)
    assert torch.equal(search.history[4].head_importance, imps[4][0])
    with pytest.raises(RuntimeError):
        search.report(*imps[7], score=1.0)


def test_masked_elements_are_never_chosen_again():
    """Masked elements get the lowest importance here; they must be skipped."""
    search = StructuredSearch(12, 12)
    head_imp, mlp_imp = _importance((12, 12), 0), _importance((12,), 1)
    search.report(head_imp, mlp_imp, 1.0)
    for step in range(2, 5):
        head, mlp = search.current_mask()
        search.report(torch.where(head == 0, -1.0, head_imp), torch.where(mlp == 0, -1.0, mlp_imp), 1.0)
        assert _zeros(search.current_mask()[0]) == 14 * step
        assert _zeros(search.current_mask()[1]) == step


def test_ties_broken_by_flat_index():
    mask = torch.ones(2, 3)
    out = mask_least_important(mask, torch.zeros(2, 3), 4)
    assert out.reshape(-1).tolist() == [0, 0, 0, 0, 1, 1]


def test_6x12_masks_7_heads_per_step():
    search = StructuredSearch(6, 12, SearchConfig(target="heads"))
    assert [(p.head_step, p.mlp_step) for p in search.phases] == [(7, 0)]
    search.report(_importance((6, 12), 0), _importance((6,), 0), 0.8)
    head, mlp = search.current_mask()
    assert _zeros(head) == 7 and mlp.all()


def test_heads_mode_prunes_heads_only_and_stops_on_failure():
    search = StructuredSearch(12, 12, SearchConfig(target="heads"))
    search.report(_importance((12, 12), 0), _importance((12,), 0), 0.8)
    search.report(_importance((12, 12), 1), _importance((12,), 1), 0.8)
    head, mlp = search.current_mask()
    assert _zeros(head) == 28 and mlp.all()
    assert not search.report(_importance((12, 12), 2), _importance((12,), 2), 0.1)
    assert _zeros(search.good_mask()[0]) == 14


def test_mlps_mode_prunes_mlps_only_until_none_left():
    search = StructuredSearch(3, 4, SearchConfig(target="mlps"))
    imp = torch.tensor([0.5, 0.1, 0.9])
    search.report(torch.zeros(3, 4), imp, 1.0)
    order = []
    while not search.done:
        head, mlp = search.current_mask()
        assert head.all()
        order.append(mlp.tolist())
        search.report(torch.zeros(3, 4), imp, 1.0)
    assert order == [[1, 0, 1], [0, 0, 1], [0, 0, 0]]
    assert search.good_mask()[1].tolist() == [0, 0, 0]


def test_a_phase_ends_without_failure_when_its_mlps_run_out_and_every_head_may_go():
    # The authors' loop breaks out of the heads+MLPs phase when no MLP is left (not a failure) and
    # masks heads until none is left: 1 layer x 4 heads, 2 heads + 1 MLP, then 1 head per step.
    search = StructuredSearch(1, 4, SearchConfig(head_fraction=0.5))
    assert [(p.head_step, p.mlp_step) for p in search.phases] == [(2, 1), (1, 0), (0, 1)]
    imp = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    search.report(imp, torch.ones(1), 1.0)
    assert search.current_mask()[0].tolist() == [[1, 1, 0, 0]] and search.current_mask()[1].tolist() == [0]
    search.report(imp, torch.ones(1), 1.0)  # passes, but no MLP is left: on to heads only, 1 per step
    assert search.phase == "heads" and search.current_mask()[0].tolist() == [[1, 0, 0, 0]]
    search.report(imp, torch.ones(1), 1.0)
    assert search.current_mask()[0].tolist() == [[0, 0, 0, 0]]
    assert not search.report(imp, torch.ones(1), 1.0)  # nothing left to mask in any phase
    assert search.good_mask()[0].tolist() == [[0, 0, 0, 0]]
    assert [r.phase for r in search.history] == ["full", "heads_mlps", "heads", "heads"]


def test_a_half_step_of_zero_heads_is_no_phase():
    # 8 heads, head_fraction 0.125: one head per step, and the heads-only phase would mask
    # 1 // 2 = 0 heads: the authors' loop skips it at once.
    search = StructuredSearch(2, 4, SearchConfig(head_fraction=0.125))
    assert [(p.head_step, p.mlp_step) for p in search.phases] == [(1, 1), (0, 1)]
    search.report(_importance((2, 4), 0), _importance((2,), 0), 1.0)
    search.report(_importance((2, 4), 1), _importance((2,), 1), 0.1)  # fails: straight to MLPs only
    head, mlp = search.current_mask()
    assert search.phase == "mlps" and head.all() and _zeros(mlp) == 1


def test_score_exactly_at_threshold_passes():
    search = StructuredSearch(2, 4, SearchConfig(target="heads", threshold=0.9))
    imp = _importance((2, 4), 0)
    search.report(imp, torch.zeros(2), 0.8)  # bar 0.9 * 0.8, a float just above 0.72
    search.report(imp, torch.zeros(2), 0.72)
    assert search.history[-1].passed
    search.report(imp, torch.zeros(2), 0.7199)
    assert not search.history[-1].passed and search.done


def test_negative_full_score_bar_is_threshold_times_full():
    search = StructuredSearch(2, 4, SearchConfig(target="heads"))
    imp = _importance((2, 4), 0)
    search.report(imp, torch.zeros(2), -0.1)
    assert search.history[0].passed and search.threshold_score == pytest.approx(-0.09)
    search.report(imp, torch.zeros(2), -0.09)
    assert search.history[-1].passed
    search.report(imp, torch.zeros(2), -0.1)
    assert not search.history[-1].passed


def _run(search, reports):
    for head_imp, mlp_imp, score in reports:
        if search.done:
            break
        search.report(head_imp, mlp_imp, score)


def test_state_dict_round_trip_resumes_exactly():
    scores = [0.8, 0.79, 0.75, 0.5, 0.74, 0.73, 0.1, 0.76, 0.2, 0.72, 0.0]
    reports = [
        (torch.rand(12, 12, generator=torch.Generator().manual_seed(i)).float(), _importance((12,), i), s)
        for i, s in enumerate(scores)
    ]
    reference = StructuredSearch(12, 12)
    _run(reference, reports)
    assert reference.done

    for cut in (1, 3, 4, 7):
        first = StructuredSearch(12, 12)
        _run(first, reports[:cut])
        state = json.loads(json.dumps(first.state_dict()))
        resumed = StructuredSearch.from_state_dict(state)
        loaded = StructuredSearch(12, 12, SearchConfig())
        loaded.load_state_dict(state)
        for search in (resumed, loaded):
            assert torch.equal(search.current_mask()[0], first.current_mask()[0])
            _run(search, reports[cut:])
            assert search.done
            assert [r.to_dict() for r in search.history] == [r.to_dict() for r in reference.history]
            assert all(torch.equal(a, b) for a, b in zip(search.good_mask(), reference.good_mask()))


def test_load_state_dict_rejects_other_rules():
    search = StructuredSearch(12, 12)
    search.report(_importance((12, 12), 0), _importance((12,), 0), 1.0)
    state = search.state_dict()
    with pytest.raises(ValueError, match="phases"):
        StructuredSearch(12, 12, SearchConfig(target="heads")).load_state_dict(state)
    with pytest.raises(ValueError, match="phase_change"):
        StructuredSearch(12, 12, SearchConfig(phase_change="passing")).load_state_dict(state)
    with pytest.raises(ValueError, match="6x12"):
        StructuredSearch(6, 12).load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": "attention"},
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"threshold": -0.9},
        {"head_fraction": 0.0},
        {"head_fraction": 1.2},
        {"mlps_per_step": 0},
        {"schedule": []},
        {"schedule": [(0, 0)]},
        {"schedule": [(7, -1)]},
        {"target": "heads", "schedule": [(7, 1)]},
        {"target": "mlps", "schedule": [(7, 0)]},
        {"phase_change": "never"},
    ],
)
def test_invalid_config(kwargs):
    with pytest.raises(ValueError):
        SearchConfig(**kwargs)


def test_explicit_schedule():
    config = SearchConfig(schedule=[[10, 2], [3, 0]])
    search = StructuredSearch(12, 12, config)
    assert [(p.head_step, p.mlp_step) for p in search.phases] == [(10, 2), (3, 0)]
    search.report(_importance((12, 12), 0), _importance((12,), 0), 1.0)
    head, mlp = search.current_mask()
    assert _zeros(head) == 10 and _zeros(mlp) == 2


def test_invalid_reports():
    search = StructuredSearch(12, 12)
    with pytest.raises(RuntimeError):
        search.good_mask()
    with pytest.raises(ValueError, match="shape"):
        search.report(torch.zeros(12, 11), torch.zeros(12), 1.0)
    bad = torch.zeros(12, 12)
    bad[3, 4] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN"):
        search.report(bad, torch.zeros(12), 1.0)
    with pytest.raises(NonFiniteError, match="finite"):
        search.report(torch.zeros(12, 12), torch.zeros(12), float("nan"))
    assert search.iteration == 0


def test_degenerate_warning():
    assert degenerate_warning(0.56, 0.563, 0.9) is not None  # WNLI: full is the majority class
    assert degenerate_warning(0.0, 0.0, 0.9) is not None  # MCC of a constant predictor
    assert degenerate_warning(0.84, 0.684, 0.9) is None
