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


def test_importance_equals_hand_written_gradients(tiny_model, two_batches):
    expected_head = torch.zeros(2, 4)
    expected_mlp = torch.zeros(2)
    for batch in two_batches:
        head_grad, mlp_grad = reference_gate_gradients(tiny_model, batch, *MASK)
        expected_head += head_grad.abs()
        expected_mlp += mlp_grad.abs()

    masks = StructuredMasks.from_lists(*MASK)
    accumulator = ImportanceAccumulator.for_masks(masks)
    for batch in two_batches:
        accumulator.add(*gate_gradients(tiny_model, masks, batch)[:2])
    head_raw, mlp_raw = accumulator.raw()
    torch.testing.assert_close(head_raw, expected_head, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(mlp_raw, expected_mlp, rtol=1e-5, atol=1e-7)
    assert (head_raw > 0).all() and accumulator.num_batches == 2
    assert [t.data_ptr() for t in accumulator.tensors()] == [accumulator.head.data_ptr(), accumulator.mlp.data_ptr()]


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
