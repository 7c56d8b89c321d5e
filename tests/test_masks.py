"""StructuredMasks: gating equals independent references, hooks are removable, JSON round trips."""

import json

import pytest
import torch

from lottery.masks import MaskShapeError, StructuredMasks, attach_masks, attached_masks
from lottery.models import encoder_layers, tiny_bert


def logits_of(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_default_attention_is_sdpa(tiny_model):
    assert tiny_model.config._attn_implementation == "sdpa"


def test_all_ones_masks_change_nothing_and_remove_restores(tiny_model, tiny_batch):
    reference = logits_of(tiny_model, tiny_batch)
    masks = StructuredMasks.for_model(tiny_model)
    handle = attach_masks(tiny_model, masks)
    assert torch.equal(logits_of(tiny_model, tiny_batch), reference)
    masks.set(torch.zeros(2, 4), torch.zeros(2))
    assert not torch.allclose(logits_of(tiny_model, tiny_batch), reference)
    handle.remove()
    assert attached_masks(tiny_model) is None
    assert torch.equal(logits_of(tiny_model, tiny_batch), reference)


def zero_head_reference(model, batch, layer, head):
    """Logits with one head's context zeroed by a hook written here, independent of lottery.masks."""
    attention = encoder_layers(model)[layer].attention.self
    size = attention.attention_head_size

    def zero_slice(module, args, output):
        context = output[0].clone()
        context[..., head * size : (head + 1) * size] = 0
        return (context, *output[1:])

    hook = attention.register_forward_hook(zero_slice)
    try:
        return logits_of(model, batch)
    finally:
        hook.remove()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize(("layer", "head"), [(0, 1), (1, 3)])
def test_masking_a_head_zeroes_its_context(tiny_batch, attention, layer, head):
    model = tiny_bert(num_labels=2, seed=0)
    model.set_attn_implementation(attention)
    assert model.config._attn_implementation == attention
    expected = zero_head_reference(model, tiny_batch, layer, head)
    masks = StructuredMasks.for_model(model)
    with attach_masks(model, masks):
        masks.head[layer, head] = 0  # in place: the hooks read the gates live
        masked = logits_of(model, tiny_batch)
    assert not torch.allclose(masked, logits_of(model, tiny_batch))
    torch.testing.assert_close(masked, expected, rtol=0, atol=1e-6)


def test_masking_an_mlp_equals_zero_ffn_output(tiny_model, tiny_batch):
    block = encoder_layers(tiny_model)[1].output.dense
    hook = block.register_forward_hook(lambda module, args, output: torch.zeros_like(output))
    expected = logits_of(tiny_model, tiny_batch)
    hook.remove()
    masks = StructuredMasks.for_model(tiny_model)
    masks.mlp[1] = 0
    with attach_masks(tiny_model, masks):
        torch.testing.assert_close(logits_of(tiny_model, tiny_batch), expected, rtol=0, atol=1e-6)


def test_all_ones_flags_follow_in_place_changes():
    masks = StructuredMasks.ones(2, 4)
    assert masks.all_ones_flags() == ([True, True], [True, True])
    masks.head[1, 2] = 0
    masks.mlp.copy_(torch.tensor([0.0, 1.0]))
    assert masks.all_ones_flags() == ([True, False], [False, True])


def test_head_mask_keyword_raises_on_a_masked_model(tiny_model, tiny_batch):
    masks = StructuredMasks.for_model(tiny_model)
    with attach_masks(tiny_model, masks), pytest.raises(ValueError, match="ignores head_mask"):
        tiny_model(**tiny_batch, head_mask=torch.ones(2, 4))


def test_attaching_twice_or_with_wrong_shape_fails(tiny_model):
    masks = StructuredMasks.for_model(tiny_model)
    with attach_masks(tiny_model, masks), pytest.raises(ValueError, match="already"):
        attach_masks(tiny_model, StructuredMasks.for_model(tiny_model))
    with pytest.raises(MaskShapeError, match=r"\(3, 4\).*\(2, 4\)"):
        attach_masks(tiny_model, StructuredMasks.ones(3, 4))


def test_json_round_trip(tmp_path):
    masks = StructuredMasks.from_lists([[1, 0, 1, 1], [0, 0, 0, 0]], [1, 0])
    path = masks.save_json(tmp_path / "sub" / "mask.json")
    assert json.loads(path.read_text())["head_mask"] == [[1, 0, 1, 1], [0, 0, 0, 0]]
    loaded = StructuredMasks.load_json(path, expected_shape=(2, 4))
    assert loaded == masks
    assert (loaded.num_heads_kept, loaded.num_mlps_kept, loaded.shape) == (3, 1, (2, 4))
    assert [p.name for p in path.parent.iterdir()] == ["mask.json"]  # no temporary file left


def test_wrong_shape_load_names_shapes_and_file(tmp_path):
    path = StructuredMasks.ones(3, 4).save_json(tmp_path / "mask.json")
    with pytest.raises(MaskShapeError, match=r"\(3, 4\).*\(2, 4\).*mask\.json"):
        StructuredMasks.load_json(path, expected_shape=(2, 4))


def test_values_must_be_binary():
    with pytest.raises(ValueError, match="0 or 1"):
        StructuredMasks.from_lists([[1, 0.5]], [1])


def test_clone_is_independent():
    masks = StructuredMasks.ones(2, 4)
    copy = masks.clone()
    copy.head[0, 0] = 0
    assert copy != masks and masks.num_heads_kept == 8
