"""Importance equals hand-written gate gradients; normalisation; no weight gradients."""

import pytest
import torch

from lottery.importance import (
    ImportanceAccumulator,
    compute_importance,
    gate_gradients,
    normalize_head_importance,
    normalize_mlp_importance,
)
from lottery.masks import StructuredMasks, attach_masks
from lottery.models import encoder_layers
from lottery.pruning import prune_structure

MASK = ([[1, 0, 1, 1], [1, 1, 1, 0]], [1, 0])


@pytest.fixture
def two_batches(tiny_batch):
    second = {key: value.flip(0) for key, value in tiny_batch.items()}
    second["input_ids"] = (second["input_ids"] + 7) % 2000
    return [tiny_batch, second]


def reference_gate_gradients(model, batch, head_values, mlp_values):
    """dL/dgate with gates multiplied in by hooks written here, independent of lottery.masks."""
    head = torch.tensor(head_values, dtype=torch.float32, requires_grad=True)
    mlp = torch.tensor(mlp_values, dtype=torch.float32, requires_grad=True)
    hooks = []
    for index, layer in enumerate(encoder_layers(model)):
        def gate_heads(module, args, output, index=index):
            context = output[0]
            batch_size, length, width = context.shape
            per_head = context.view(batch_size, length, head.shape[1], width // head.shape[1])
            return ((per_head * head[index][:, None]).view(batch_size, length, width), *output[1:])

        def gate_mlp(module, args, output, index=index):
            return output * mlp[index]

        hooks.append(layer.attention.self.register_forward_hook(gate_heads))
        hooks.append(layer.output.dropout.register_forward_hook(gate_mlp))
    try:
        loss = model(**batch).loss
        return torch.autograd.grad(loss, [head, mlp])
    finally:
        for hook in hooks:
            hook.remove()


@pytest.fixture
def three_batches(two_batches):
    third = {key: value.clone() for key, value in two_batches[0].items()}
    third["labels"] = 1 - third["labels"]
    return [*two_batches, third]


def test_per_batch_importance_is_the_sum_of_absolute_batch_gradients(tiny_model, three_batches):
    """Michel et al.: sum over batches of |dL/dgate| (protocol=clean)."""
    grads = [reference_gate_gradients(tiny_model, batch, *MASK) for batch in three_batches]
    masks = StructuredMasks.from_lists(*MASK)
    result = compute_importance(tiny_model, masks, three_batches, accumulate="per_batch")
    tokens = sum(int(batch["attention_mask"].sum()) for batch in three_batches)
    torch.testing.assert_close(result["head_raw"], sum(h.abs() for h, _ in grads).double(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(result["mlp_raw"], sum(m.abs() for _, m in grads).double() / tokens, rtol=1e-5, atol=1e-9)
    assert (result["head_raw"] > 0).all() and result["num_batches"] == 3


def test_running_importance_sums_the_absolute_running_gradient(tiny_model, three_batches):
    """The authors' code never zeroes the gate's .grad: it adds |g1|, |g1 + g2|, |g1 + g2 + g3|."""
    grads = [reference_gate_gradients(tiny_model, batch, *MASK) for batch in three_batches]
    g1, g2, g3 = (h for h, _ in grads)
    m1, m2, m3 = (m for _, m in grads)
    masks = StructuredMasks.from_lists(*MASK)
    result = compute_importance(tiny_model, masks, three_batches, accumulate="running")
    tokens = sum(int(batch["attention_mask"].sum()) for batch in three_batches)
    expected_head = g1.abs() + (g1 + g2).abs() + (g1 + g2 + g3).abs()
    expected_mlp = (m1.abs() + (m1 + m2).abs() + (m1 + m2 + m3).abs()) / tokens
    torch.testing.assert_close(result["head_raw"], expected_head.double(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(result["mlp_raw"], expected_mlp.double(), rtol=1e-5, atol=1e-9)
    per_batch = compute_importance(tiny_model, masks, three_batches, accumulate="per_batch")
    assert not torch.allclose(result["head_raw"], per_batch["head_raw"])  # the two estimators differ here


def test_accumulator_rows_filled_in_any_order_give_the_same_sums():
    """DDP ranks fill their own batches' rows; the sum over the split is order-independent of filling."""
    grads = [(torch.randn(2, 4, generator=torch.Generator().manual_seed(i)), torch.randn(2)) for i in range(5)]
    one = ImportanceAccumulator(2, 4, num_batches=5, accumulate="running")
    for index, (head, mlp) in enumerate(grads):
        one.add(index, head, mlp, tokens=10)
    ranks = [ImportanceAccumulator(2, 4, num_batches=5, accumulate="running") for _ in range(2)]
    for index in (4, 2, 0):
        ranks[0].add(index, *grads[index], tokens=10)
    for index in (3, 1):
        ranks[1].add(index, *grads[index], tokens=10)
    reduced = ImportanceAccumulator(2, 4, num_batches=5, accumulate="running")
    for target, parts in zip(reduced.tensors(), zip(*(r.tensors() for r in ranks))):
        target.copy_(sum(parts))
    for a, b in zip(one.raw(), reduced.raw()):
        torch.testing.assert_close(a, b)
    with pytest.raises(IndexError):
        one.add(5, *grads[0], tokens=1)


def test_gate_gradients_leave_weights_masks_and_mode_alone(tiny_model, tiny_batch):
    tiny_model.train()
    masks = StructuredMasks.from_lists(*MASK)
    head_grad, mlp_grad, logits, loss = gate_gradients(tiny_model, masks, tiny_batch)
    assert all(parameter.grad is None for parameter in tiny_model.parameters())
    assert tiny_model.training and all(module.training for module in tiny_model.modules())
    assert not masks.head.requires_grad and masks == StructuredMasks.from_lists(*MASK)
    assert head_grad.shape == (2, 4) and mlp_grad.shape == (2,)
    tiny_model.eval()
    with attach_masks(tiny_model, masks), torch.no_grad():
        expected = tiny_model(**tiny_batch)
    torch.testing.assert_close(logits, expected.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(loss, expected.loss, rtol=0, atol=1e-6)


def test_gate_gradients_work_with_attached_masks_and_under_inference_mode(tiny_model, tiny_batch):
    masks = StructuredMasks.from_lists(*MASK)
    expected = gate_gradients(tiny_model, masks, tiny_batch)[0]
    with attach_masks(tiny_model, masks), torch.inference_mode():
        batch = {key: value.clone() for key, value in tiny_batch.items()}
        head_grad = gate_gradients(tiny_model, masks, batch)[0]
    torch.testing.assert_close(head_grad, expected)


def test_head_normalisation_by_layer_norm_then_min_max():
    raw = torch.tensor([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])
    # per layer L2 norms 5, 2, 0 (kept as is) -> [[.6, .8], [0, 1], [0, 0]] -> min 0, max 1
    expected = torch.tensor([[0.6, 0.8], [0.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(normalize_head_importance(raw), expected)
    assert torch.equal(normalize_head_importance(torch.ones(2, 3)), torch.zeros(2, 3))


def test_mlp_normalisation_is_min_max():
    torch.testing.assert_close(normalize_mlp_importance(torch.tensor([2.0, 4.0, 3.0])), torch.tensor([0.0, 1.0, 0.5]))
    assert torch.equal(normalize_mlp_importance(torch.tensor([5.0, 5.0])), torch.zeros(2))


def test_compute_importance(tiny_model, two_batches):
    result = compute_importance(tiny_model, StructuredMasks.for_model(tiny_model), two_batches)
    assert result["num_batches"] == 2
    assert result["head"].min() == 0 and result["head"].max() == 1
    torch.testing.assert_close(result["head"], normalize_head_importance(result["head_raw"]))
    torch.testing.assert_close(result["mlp"], normalize_mlp_importance(result["mlp_raw"]))


def test_removed_units_of_a_pruned_model_get_zero_gradient(tiny_model, tiny_batch):
    removed = StructuredMasks.from_lists([[0, 0, 0, 0], [1, 0, 1, 1]], [1, 0])
    prune_structure(tiny_model, removed)
    head_grad, mlp_grad, _, _ = gate_gradients(tiny_model, StructuredMasks.for_model(tiny_model), tiny_batch)
    assert torch.equal(head_grad == 0, removed.head == 0)
    assert torch.equal(mlp_grad == 0, removed.mlp == 0)
