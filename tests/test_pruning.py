"""Physical pruning computes what masking computes; sizes and save/load agree."""

import pytest
import torch

from lottery.accounting import encoder_parameter_count, structured_size
from lottery.masks import StructuredMasks, attach_masks
from lottery.models import encoder_layers, tiny_bert
from lottery.pruning import (
    NoHeadsSelfAttention,
    load_pruned,
    prune_structure,
    save_pruned,
)

MASKS = {
    "random": ([[1, 0, 1, 0], [0, 1, 1, 1]], [1, 0]),
    "layer_without_heads": ([[0, 0, 0, 0], [1, 0, 0, 1]], [0, 1]),
    "nothing_left": ([[0, 0, 0, 0], [0, 0, 0, 0]], [0, 0]),
    "everything_left": ([[1, 1, 1, 1], [1, 1, 1, 1]], [1, 1]),
}


def outputs_of(model, batch):
    with torch.no_grad():
        output = model(**batch)
    return output.logits, output.loss


@pytest.fixture(params=sorted(MASKS))
def masks(request):
    return StructuredMasks.from_lists(*MASKS[request.param])


def test_pruned_model_equals_masked_model(tiny_batch, masks):
    model = tiny_bert(num_labels=2, seed=0)
    assert model.config._attn_implementation == "sdpa"
    with attach_masks(model, masks):
        masked_logits, masked_loss = outputs_of(model, tiny_batch)
    size = structured_size(model, masks)
    prune_structure(model, masks)
    logits, loss = outputs_of(model, tiny_batch)
    torch.testing.assert_close(logits, masked_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(loss, masked_loss, rtol=0, atol=1e-5)
    assert encoder_parameter_count(model) == size["params_kept"]
    assert size["heads_kept"] == masks.num_heads_kept and size["mlps_kept"] == masks.num_mlps_kept


def test_random_masks_prune_like_they_mask(tiny_batch):
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        masks = StructuredMasks(torch.randint(0, 2, (2, 4), generator=generator), torch.randint(0, 2, (2,), generator=generator))
        model = tiny_bert(num_labels=2, seed=1)
        with attach_masks(model, masks):
            expected, _ = outputs_of(model, tiny_batch)
        size = structured_size(model, masks)
        prune_structure(model, masks)
        torch.testing.assert_close(outputs_of(model, tiny_batch)[0], expected, rtol=0, atol=1e-5)
        assert encoder_parameter_count(model) == size["params_kept"]


def test_structure_record_and_modules(tiny_model):
    prune_structure(tiny_model, StructuredMasks.from_lists(*MASKS["layer_without_heads"]))
    assert tiny_model.config.pruned_structure == {"heads": [[], [0, 3]], "mlps": [0, 1]}
    first, second = encoder_layers(tiny_model)
    assert isinstance(first.attention.self, NoHeadsSelfAttention)
    assert first.intermediate.dense.out_features == 0 and first.output.dense.bias is None
    # no dropout mask is drawn for the removed MLP's (all-zero) output; the kept one keeps its dropout
    assert isinstance(first.output.dropout, torch.nn.Identity) and isinstance(second.output.dropout, torch.nn.Dropout)
    assert second.attention.self.num_attention_heads == 2 and second.attention.self.query.out_features == 32


def test_full_size_and_percentage(tiny_model):
    size = structured_size(tiny_model, StructuredMasks.for_model(tiny_model))
    assert size["params_kept"] == size["params_total"] == encoder_parameter_count(tiny_model)
    assert size["size_pct"] == 100.0
    empty = structured_size(tiny_model, StructuredMasks.from_lists(*MASKS["nothing_left"]))
    # what always remains: two LayerNorms (2 x 2 x 64) and the attention-output bias (64), per layer
    assert empty["params_kept"] == 2 * (4 * 64 + 64)


def test_pruning_twice_uses_original_indices(tiny_model, tiny_batch):
    first = StructuredMasks.from_lists([[1, 0, 1, 1], [1, 1, 1, 1]], [1, 1])
    second = StructuredMasks.from_lists([[1, 0, 0, 1], [1, 1, 0, 1]], [1, 0])
    reference = tiny_bert(num_labels=2, seed=0)
    with attach_masks(reference, second):
        expected, _ = outputs_of(reference, tiny_batch)
    prune_structure(tiny_model, first)
    assert structured_size(tiny_model, second) == structured_size(reference, second)
    prune_structure(tiny_model, second)
    assert tiny_model.config.pruned_structure == {"heads": [[0, 3], [0, 1, 3]], "mlps": [1, 0]}
    torch.testing.assert_close(outputs_of(tiny_model, tiny_batch)[0], expected, rtol=0, atol=1e-5)


def test_masks_on_a_pruned_model_use_original_indices(tiny_model, tiny_batch):
    prune_structure(tiny_model, StructuredMasks.from_lists([[1, 0, 1, 1], [0, 0, 0, 0]], [1, 1]))
    masks = StructuredMasks.from_lists([[1, 1, 0, 1], [1, 0, 1, 1]], [1, 0])
    with attach_masks(tiny_model, masks):
        masked, _ = outputs_of(tiny_model, tiny_batch)
    prune_structure(tiny_model, masks)
    torch.testing.assert_close(outputs_of(tiny_model, tiny_batch)[0], masked, rtol=0, atol=1e-5)


def test_save_and_load_round_trip(tmp_path, tiny_model, tiny_batch):
    prune_structure(tiny_model, StructuredMasks.from_lists(*MASKS["layer_without_heads"]))
    expected, _ = outputs_of(tiny_model, tiny_batch)
    directory = tmp_path / "pruned"
    save_pruned(tiny_model, directory)
    save_pruned(tiny_model, directory)  # replacing an existing folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]
    loaded = load_pruned(directory)
    assert loaded.config.pruned_structure == tiny_model.config.pruned_structure
    assert torch.equal(outputs_of(loaded, tiny_batch)[0], expected)


def test_loading_a_plain_folder_says_use_from_pretrained(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="from_pretrained"):
        load_pruned(tmp_path)


def test_size_pct_all_is_the_papers_size_column_counted_by_hand(tiny_model):
    # The paper: params(pruned) / params(full) - embedding share = kept non-embedding / all.
    masks = StructuredMasks.from_lists([[1, 0, 0, 1], [1, 1, 1, 0]], [0, 1])
    size = structured_size(tiny_model, masks)
    everything = sum(p.numel() for p in tiny_model.parameters())
    embeddings = sum(p.numel() for p in tiny_model.bert.embeddings.parameters())
    pruned = prune_structure(tiny_bert(num_labels=2, seed=0), masks)
    kept_non_embedding = sum(p.numel() for p in pruned.parameters()) - embeddings
    assert size["size_pct_all"] == pytest.approx(100 * kept_non_embedding / everything)
    # by hand for the tiny model (hidden 64, head size 16, FFN 128): a head owns 4 x 64 x 16 + 3 x 16
    # = 4144 parameters, an MLP 2 x 64 x 128 + 128 + 64 = 16576; 3 heads and 1 MLP removed
    assert everything - sum(p.numel() for p in pruned.parameters()) == 3 * 4144 + 16576
