"""The taylor and weight_norm criteria against hand-sliced computations; their accumulation."""

import copy

import pytest
import torch

from lottery.importance import (
    CRITERIA,
    compute_importance,
    gate_gradients,
    get_criterion,
)
from lottery.importance.taylor import taylor_scores
from lottery.masks import StructuredMasks, attach_masks
from lottery.models import encoder_layers
from lottery.pruning import prune_structure

MASK = ([[1, 0, 1, 1], [1, 1, 1, 0]], [1, 0])
NUM_HEADS, HEAD_DIM = 4, 16


@pytest.fixture
def three_batches(tiny_batch):
    second = {key: value.flip(0) for key, value in tiny_batch.items()}
    second["input_ids"] = (second["input_ids"] + 7) % 2000
    third = {key: value[:4] for key, value in tiny_batch.items()}
    third["labels"] = 1 - third["labels"]
    return [tiny_batch, second, third]


def gated_loss(model, batch, head_values, mlp_values):
    """The batch loss with gates multiplied in by hooks written here (independent of lottery.masks)."""
    head = torch.tensor(head_values, dtype=torch.float32)
    mlp = torch.tensor(mlp_values, dtype=torch.float32)
    hooks = []
    for index, layer in enumerate(encoder_layers(model)):
        def gate_heads(module, args, output, index=index):
            context = output[0]
            per_head = context.view(*context.shape[:2], NUM_HEADS, HEAD_DIM)
            return ((per_head * head[index][:, None]).view(context.shape), *output[1:])

        def gate_mlp(module, args, output, index=index):
            return output * mlp[index]

        hooks.append(layer.attention.self.register_forward_hook(gate_heads))
        hooks.append(layer.output.dropout.register_forward_hook(gate_mlp))
    try:
        return model(**batch).loss
    finally:
        for hook in hooks:
            hook.remove()


def hand_taylor(model, batch, head_values, mlp_values):
    """Full weight gradients by loss.backward() on an eval-mode copy, then w * g summed per unit by hand."""
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(True)
    gated_loss(reference, batch, head_values, mlp_values).backward()
    head = torch.zeros(2, NUM_HEADS)
    mlp = torch.zeros(2)
    for index, layer in enumerate(encoder_layers(reference)):
        def wg(parameter):
            return parameter.detach() * parameter.grad

        attention = layer.attention.self
        for h in range(NUM_HEADS):
            rows = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
            for linear in (attention.query, attention.key, attention.value):
                head[index, h] += wg(linear.weight)[rows, :].sum() + wg(linear.bias)[rows].sum()
            head[index, h] += wg(layer.attention.output.dense.weight)[:, rows].sum()
        for linear in (layer.intermediate.dense, layer.output.dense):
            mlp[index] += wg(linear.weight).sum() + wg(linear.bias).sum()
    return head, mlp


def hand_norms(model, head_values, mlp_values):
    head = torch.zeros(2, NUM_HEADS)
    mlp = torch.zeros(2)
    for index, layer in enumerate(encoder_layers(model)):
        attention = layer.attention.self
        for h in range(NUM_HEADS):
            rows = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
            pieces = [attention.query.weight[rows, :], attention.query.bias[rows],
                      attention.key.weight[rows, :], attention.key.bias[rows],
                      attention.value.weight[rows, :], attention.value.bias[rows],
                      layer.attention.output.dense.weight[:, rows]]
            head[index, h] = torch.cat([p.detach().flatten() for p in pieces]).norm()
        pieces = [layer.intermediate.dense.weight, layer.intermediate.dense.bias,
                  layer.output.dense.weight, layer.output.dense.bias]
        mlp[index] = torch.cat([p.detach().flatten() for p in pieces]).norm()
    return head * torch.tensor(head_values), mlp * torch.tensor(mlp_values)


def modes(model):
    return {name: module.training for name, module in model.named_modules()}


def close(actual, expected):
    torch.testing.assert_close(actual.float(), expected.float(), rtol=1e-4, atol=1e-9)


def test_registered():
    assert {"michel", "taylor", "weight_norm"} <= set(CRITERIA)
    assert get_criterion("taylor").uses_data and not get_criterion("weight_norm").uses_data


def test_taylor_equals_hand_sliced_weight_gradients(tiny_model, tiny_batch):
    tiny_model.train()
    tiny_model.bert.embeddings.eval()  # a mixed state, to check each module's mode comes back
    tiny_model.bert.encoder.layer[0].attention.self.query.weight.requires_grad_(False)  # frozen: still scored
    before = modes(tiny_model)
    masks = StructuredMasks.from_lists(*MASK)

    scores = get_criterion("taylor").batch(tiny_model, masks, tiny_batch)

    head, mlp = hand_taylor(tiny_model, tiny_batch, *MASK)
    close(scores.head, head)
    close(scores.mlp, mlp)
    assert scores.head.shape == (2, 4) and scores.mlp.shape == (2,)
    assert (scores.head > 0).any() and (scores.head < 0).any()  # signed, as the accumulator expects
    # masked head (0, 1), (1, 3) and masked MLP 1: no gradient reaches their weights
    assert scores.head[0, 1] == 0 and scores.head[1, 3] == 0 and scores.mlp[1] == 0
    assert scores.tokens == int(tiny_batch["attention_mask"].sum())
    expected_loss = gated_loss(copy.deepcopy(tiny_model).eval(), tiny_batch, *MASK)
    close(scores.loss, expected_loss.detach())
    assert modes(tiny_model) == before
    assert all(p.grad is None for p in tiny_model.parameters())
    assert not tiny_model.bert.encoder.layer[0].attention.self.query.weight.requires_grad
    assert getattr(tiny_model, "_lottery_masks", None) is None  # masks detached again


def test_taylor_with_masks_already_attached(tiny_model, tiny_batch):
    masks = StructuredMasks.from_lists(*MASK)
    alone = taylor_scores(tiny_model, masks, tiny_batch)
    with attach_masks(tiny_model, masks):
        attached = taylor_scores(tiny_model, masks, tiny_batch)
        with pytest.raises(ValueError, match="other StructuredMasks"):
            taylor_scores(tiny_model, masks.clone(), tiny_batch)
    for a, b in zip(alone, attached, strict=True):
        torch.testing.assert_close(a, b)


def test_taylor_output_side_equals_michel_gate_gradient(tiny_model, tiny_batch):
    """Why an MLP owns output.dense.bias: with gates at 1, sum w * g over output.dense (weight and
    bias) is exactly dL/dnu, and over a head's attention-output columns exactly dL/dxi."""
    masks = StructuredMasks.for_model(tiny_model)
    head_grad, mlp_grad, _, _ = gate_gradients(tiny_model, masks, tiny_batch)
    reference = copy.deepcopy(tiny_model).eval()
    reference(**tiny_batch).loss.backward()
    for index, layer in enumerate(encoder_layers(reference)):
        out = layer.attention.output.dense.weight
        per_head = (out.detach() * out.grad).view(-1, NUM_HEADS, HEAD_DIM).sum(dim=(0, 2))
        close(per_head, head_grad[index])
        dense = layer.output.dense
        output_side = (dense.weight.detach() * dense.weight.grad).sum() + (dense.bias.detach() * dense.bias.grad).sum()
        close(output_side, mlp_grad[index])


@pytest.mark.parametrize("accumulate", ["per_batch", "running"])
def test_compute_importance_adds_up_taylor_scores(tiny_model, three_batches, accumulate):
    masks = StructuredMasks.from_lists(*MASK)
    per_batch = [hand_taylor(tiny_model, batch, *MASK) for batch in three_batches]
    heads = torch.stack([head for head, _ in per_batch]).double()
    mlps = torch.stack([mlp for _, mlp in per_batch]).double()
    if accumulate == "running":
        heads, mlps = heads.cumsum(0), mlps.cumsum(0)
    tokens = sum(int(batch["attention_mask"].sum()) for batch in three_batches)

    result = compute_importance(tiny_model, masks, three_batches, criterion="taylor", accumulate=accumulate)

    close(result["head_raw"], heads.abs().sum(0))
    close(result["mlp_raw"], mlps.abs().sum(0) / tokens)  # the accumulator's per-token MLP scaling
    assert result["num_batches"] == 3
    assert all(p.grad is None for p in tiny_model.parameters())


def test_weight_norm_equals_hand_sliced_norms(tiny_model, tiny_batch):
    tiny_model.train()
    before = modes(tiny_model)
    masks = StructuredMasks.from_lists(*MASK)
    criterion = get_criterion("weight_norm")

    head, mlp = criterion.static(tiny_model, masks)
    expected_head, expected_mlp = hand_norms(tiny_model, *MASK)
    close(head, expected_head)
    close(mlp, expected_mlp)
    assert head[0, 1] == 0 and head[1, 3] == 0 and mlp[1] == 0 and (head[0, [0, 2, 3]] > 0).all()

    scores = criterion.batch(tiny_model, masks, tiny_batch)
    assert scores.head is None and scores.mlp is None
    close(scores.loss, gated_loss(copy.deepcopy(tiny_model).eval(), tiny_batch, *MASK).detach())
    assert scores.logits.shape == (6, 2)

    result = compute_importance(tiny_model, masks, [tiny_batch], criterion="weight_norm", accumulate="running")
    close(result["head_raw"], expected_head)
    close(result["mlp_raw"], expected_mlp)
    assert modes(tiny_model) == before
    assert all(p.grad is None for p in tiny_model.parameters())


def test_physically_pruned_model_scores_like_the_masked_one(tiny_model, tiny_batch):
    """Same masks, same scores on the masked full model and the model pruned by them (layer 1
    loses every head; removed units score 0 as masked ones do)."""
    head_mask, mlp_mask = [[1, 0, 1, 1], [0, 0, 0, 0]], [1, 0]
    masks = StructuredMasks.from_lists(head_mask, mlp_mask)
    pruned = prune_structure(copy.deepcopy(tiny_model), masks)
    for name in ("taylor", "weight_norm"):
        full = compute_importance(tiny_model, masks, [tiny_batch], criterion=name, accumulate="per_batch")
        small = compute_importance(pruned, masks, [tiny_batch], criterion=name, accumulate="per_batch")
        close(small["head_raw"], full["head_raw"])
        close(small["mlp_raw"], full["mlp_raw"])
        assert (full["head_raw"][1] == 0).all() and full["mlp_raw"][1] == 0
