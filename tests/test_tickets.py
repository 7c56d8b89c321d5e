"""Random, bad and super structured tickets from a good mask."""

import pytest
import torch

from lottery.tickets import bad_ticket, random_ticket, super_tickets


def _good(kept_heads, kept_mlps, seed=0):
    """A 12x12 head mask keeping `kept_heads` and a 12-MLP mask keeping `kept_mlps`."""
    g = torch.Generator().manual_seed(seed)
    head = torch.zeros(144)
    head[torch.randperm(144, generator=g)[:kept_heads]] = 1
    mlp = torch.zeros(12)
    mlp[torch.randperm(12, generator=g)[:kept_mlps]] = 1
    return head.view(12, 12), mlp


def test_random_exact_has_good_counts():
    good_head, good_mlp = _good(80, 9)
    head, mlp = random_ticket(good_head, good_mlp, seed=3, sampling="exact", mode="heads_mlps")
    assert head.shape == (12, 12) and mlp.shape == (12,)
    assert int(head.sum()) == 80 and int(mlp.sum()) == 9
    assert set(head.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(head, good_head)


def test_random_bernoulli_matches_in_expectation():
    good_head, good_mlp = _good(80, 9)
    draws = [random_ticket(good_head, good_mlp, seed=s, sampling="bernoulli") for s in range(300)]
    head_counts = torch.tensor([float(h.sum()) for h, _ in draws])
    mlp_counts = torch.tensor([float(m.sum()) for _, m in draws])
    assert abs(head_counts.mean().item() - 80) < 2.0
    assert abs(mlp_counts.mean().item() - 9) < 0.5
    assert head_counts.std().item() > 1.0  # the size really varies
    # rate follows good's survival rate: a sparser good gives a sparser random ticket
    sparse = [random_ticket(*_good(20, 3), seed=s, sampling="bernoulli") for s in range(300)]
    assert abs(torch.tensor([float(h.sum()) for h, _ in sparse]).mean().item() - 20) < 2.0


def test_random_leaves_unpruned_kind_whole():
    good_head, good_mlp = _good(80, 9)
    for sampling in ("exact", "bernoulli"):
        head, mlp = random_ticket(good_head, torch.ones(12), seed=1, sampling=sampling, mode="heads")
        assert mlp.all() and not head.all()
        head, mlp = random_ticket(torch.ones(12, 12), good_mlp, seed=1, sampling=sampling, mode="mlps")
        assert head.all() and int(mlp.sum()) <= 12


def test_random_is_seeded():
    good_head, good_mlp = _good(80, 9)
    for sampling in ("exact", "bernoulli"):
        a = random_ticket(good_head, good_mlp, seed=7, sampling=sampling)
        b = random_ticket(good_head, good_mlp, seed=7, sampling=sampling)
        c = random_ticket(good_head, good_mlp, seed=8, sampling=sampling)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])


def test_invalid_arguments():
    good_head, good_mlp = _good(80, 9)
    with pytest.raises(ValueError, match="sampling"):
        random_ticket(good_head, good_mlp, seed=0, sampling="uniform")
    with pytest.raises(ValueError, match="mode"):
        bad_ticket(good_head, good_mlp, seed=0, mode="all")
    with pytest.raises(ValueError, match="0 and 1"):
        bad_ticket(good_head * 0.5, good_mlp, seed=0)
    with pytest.raises(ValueError, match="shape|mask"):
        random_ticket(good_head, torch.ones(6), seed=0)


def test_bad_from_pruned_when_enough():
    good_head, good_mlp = _good(60, 5)
    head, mlp = bad_ticket(good_head, good_mlp, seed=2)
    assert int(head.sum()) == 60 and int(mlp.sum()) == 5
    assert not (head * good_head).any() and not (mlp * good_mlp).any()


def test_bad_takes_all_pruned_then_survivors():
    good_head, good_mlp = _good(100, 10)
    head, mlp = bad_ticket(good_head, good_mlp, seed=2)
    assert int(head.sum()) == 100 and int(mlp.sum()) == 10
    assert head[good_head == 0].all() and mlp[good_mlp == 0].all()  # all 44 / 2 pruned ones
    assert int(head[good_head == 1].sum()) == 56 and int(mlp[good_mlp == 1].sum()) == 8


def test_bad_is_seeded_and_respects_mode():
    good_head, good_mlp = _good(60, 5)
    a = bad_ticket(good_head, good_mlp, seed=4)
    b = bad_ticket(good_head, good_mlp, seed=4)
    c = bad_ticket(good_head, good_mlp, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    head, mlp = bad_ticket(good_head, torch.ones(12), seed=4, mode="heads")
    assert mlp.all() and int(head.sum()) == 60


def test_super_tickets_hand_example():
    masks = [
        torch.tensor([1, 1, 1, 0, 0, 1, 0, 0.0]),
        torch.tensor([1, 1, 0, 1, 0, 0, 0, 0.0]),
        torch.tensor([1, 1, 0, 0, 1, 0, 0, 0.0]),
    ]
    result = super_tickets(masks, seed=0)
    assert result.good.tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert result.bad.tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    assert result.random[:2].sum() == 0 and result.random[6:].sum() == 0 and int(result.random.sum()) == 2
    assert result.counts == {"good": 2, "bad": 2, "random": 2}
    assert result.candidates == {"bad": 2, "random": 4}
    assert result.notes == ()
    again = super_tickets(masks, seed=0)
    assert torch.equal(again.random, result.random)
    draws = {tuple(super_tickets(masks, seed=s).random.tolist()) for s in range(20)}
    assert len(draws) > 1


def test_super_tickets_small_pool_and_2d_shape():
    masks = [
        torch.tensor([[1, 1, 1], [1, 0, 1.0]]),
        torch.tensor([[1, 1, 1], [0, 0, 1.0]]),
    ]
    result = super_tickets(masks, seed=0)
    assert result.good.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert result.bad.tolist() == [[0, 0, 0], [0, 1, 0]]  # only one element pruned in all seeds
    assert result.random.tolist() == [[0, 0, 0], [1, 0, 0]]
    assert result.counts == {"good": 4, "bad": 1, "random": 1}
    assert len(result.notes) == 2 and "super-bad" in result.notes[0]
    with pytest.raises(ValueError):
        super_tickets([], seed=0)
    with pytest.raises(ValueError):
        super_tickets([torch.ones(3), torch.ones(4)], seed=0)
