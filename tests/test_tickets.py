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
    head, mlp = random_ticket(good_head, good_mlp, seed=3, sampling="exact", target="heads_mlps")
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


def test_bernoulli_draws_are_not_redrawn_even_when_they_keep_no_head():
    # create_random_masks.ipynb: uniform_random < p_unpruned, once per element, no conditioning
    good_head, good_mlp = _good(1, 1)
    sizes = [int(random_ticket(good_head, good_mlp, seed=s, sampling="bernoulli")[0].sum()) for s in range(200)]
    assert 0 in sizes and max(sizes) >= 2


def test_random_leaves_unpruned_kind_whole():
    good_head, good_mlp = _good(80, 9)
    for sampling in ("exact", "bernoulli"):
        head, mlp = random_ticket(good_head, torch.ones(12), seed=1, sampling=sampling, target="heads")
        assert mlp.all() and not head.all()
        head, mlp = random_ticket(torch.ones(12, 12), good_mlp, seed=1, sampling=sampling, target="mlps")
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
    with pytest.raises(ValueError, match="target"):
        bad_ticket(good_head, good_mlp, seed=0, target="all")
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
    head, mlp = bad_ticket(good_head, torch.ones(12), seed=4, target="heads")
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


def _seeds_of(kept_in: list[int], seeds: int = 5) -> list[torch.Tensor]:
    """Masks of `seeds` seeds over len(kept_in) elements; element i kept in the first kept_in[i] seeds."""
    return [torch.tensor([float(k > s) for k in kept_in]) for s in range(seeds)]


def test_super_tickets_have_good_size_drawn_as_the_authors_do():
    # compute_super_masks.py: bad = pruned in every seed, topped up from elements in neither set
    # (then from anything not yet bad); random = in neither good nor the resized bad, topped up
    # from good or bad; too many: random ones dropped. All three have good's size.
    kept_in = [5, 5, 5, 5, 0, 0, 3, 2, 1, 4]  # 4 always, 2 never, 4 in between
    result = super_tickets(_seeds_of(kept_in), seed=3)
    always, never = {0, 1, 2, 3}, {4, 5}
    good = set(torch.nonzero(result.good).flatten().tolist())
    bad = set(torch.nonzero(result.bad).flatten().tolist())
    random = set(torch.nonzero(result.random).flatten().tolist())
    assert good == always and len(bad) == len(random) == 4 == result.counts["bad"] == result.counts["random"]
    assert never <= bad and not bad & always  # topped up from the 4 in-between elements
    assert len(random - always - bad) == 2  # the 2 in-between elements left, topped up from good or bad
    assert result.candidates == {"bad": 2, "random": 4} and len(result.notes) == 2

    kept_in = [5, 5, 0, 0, 0, 0, 0, 3, 2, 1]  # 2 always, 5 never, 3 in between: pools too large
    result = super_tickets(_seeds_of(kept_in), seed=3)
    bad = set(torch.nonzero(result.bad).flatten().tolist())
    random = set(torch.nonzero(result.random).flatten().tolist())
    assert len(bad) == len(random) == 2 and bad <= {2, 3, 4, 5, 6}
    assert not random & ({0, 1} | bad)  # middling: never-pruned ones dropped from bad may be drawn too
    assert result.notes == ()


def test_super_bad_takes_super_good_elements_when_nothing_else_is_left():
    kept_in = [5, 5, 5, 5, 0, 2]  # 4 always, 1 never, 1 in between: 2 must come from super-good
    result = super_tickets(_seeds_of(kept_in), seed=0)
    assert int(result.bad.sum()) == 4 and result.bad[4] == 1 and result.bad[5] == 1
    assert int((result.bad * result.good).sum()) == 2
    assert "any element" in result.notes[0]


def test_super_tickets_small_pool_and_2d_shape():
    masks = [
        torch.tensor([[1, 1, 1], [1, 0, 1.0]]),
        torch.tensor([[1, 1, 1], [0, 0, 1.0]]),
    ]
    result = super_tickets(masks, seed=0)
    assert result.good.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert result.counts == {"good": 4, "bad": 4, "random": 4}
    assert result.bad.shape == result.random.shape == (2, 3)
    with pytest.raises(ValueError):
        super_tickets([], seed=0)
    with pytest.raises(ValueError):
        super_tickets([torch.ones(3), torch.ones(4)], seed=0)
