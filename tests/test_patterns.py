"""Attention-pattern types: features by hand, the rule on hand-built maps, the tiny model end to
end, hand-label files and agreement numbers, and the figures."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from lottery.errors import LotteryError
from lottery.masks import StructuredMasks
from lottery.patterns import (
    TYPES,
    HandLabelError,
    PatternError,
    agreement,
    attention_features,
    classify,
    load_hand_labels,
    map_features,
    type_counts,
    types_of,
)
from lottery.patterns_figures import type_examples_figure, type_shares_figure
from lottery.pruning import prune_structure

CLS, SEP = 101, 102


# ------------------------------------------------------------------------ hand-built maps

def pair_layout(words_a: int = 8, words_b: int = 8):
    """[CLS] a... [SEP] b... [SEP]: special-token flags and segments."""
    size = words_a + words_b + 3
    special = np.zeros(size, dtype=bool)
    special[[0, words_a + 1, size - 1]] = True
    segments = np.array([0] * (words_a + 2) + [1] * (words_b + 1))
    return size, special, segments


def synthetic_maps():
    """One [T, T] map per pattern (rows sum to 1), plus two heterogeneous look-alikes."""
    size, special, segments = pair_layout()
    vertical = np.zeros((size, size))
    vertical[:, 0], vertical[:, size - 1] = 0.5, 0.4
    vertical += 0.1 / size
    diagonal = np.zeros((size, size))
    diagonal[np.arange(1, size), np.arange(size - 1)] = 1.0  # each token -> previous token
    diagonal[0, 1] = 1.0
    block = np.zeros((size, size))
    for query in range(size):
        own = (segments == segments[query]) & ~special
        block[query, own] = 0.9 / own.sum()
    block[:, 0] += 0.1
    uniform = np.full((size, size), 1.0 / size)
    itself = np.eye(size)  # in its own sentence, but one token: not a block
    one_word = np.zeros((size, size))
    one_word[:, 4] = 1.0  # a stripe on an ordinary token: not vertical
    maps = {
        "vertical": vertical,
        "diagonal": diagonal,
        "vertical+diagonal": 0.5 * vertical + 0.5 * diagonal,
        "block": block,
        "heterogeneous": uniform,
        "heterogeneous (self)": itself,
        "heterogeneous (one word)": one_word,
    }
    return maps, special, segments


def test_hand_built_maps_of_each_type_are_classified_as_that_type():
    maps, special, segments = synthetic_maps()
    features = map_features(np.stack(list(maps.values()))[None], special, segments)  # [1 layer, 7 heads]
    assert features.shape == (1, len(maps))
    got = classify(features)[0]
    assert got == [name.split(" ")[0] for name in maps]


def test_features_of_a_four_token_example_match_a_hand_computation():
    # Tokens [CLS] x [SEP] y, segments 0 0 0 1; specials at 0 and 2, ordinary tokens 1 and 3.
    attention = np.array([
        [0.40, 0.20, 0.20, 0.20],
        [0.10, 0.20, 0.30, 0.40],
        [0.50, 0.25, 0.25, 0.00],
        [0.20, 0.20, 0.20, 0.40],
    ])
    features = map_features(2 * attention, [True, False, True, False], [0, 0, 0, 1])  # rows renormalised
    # vertical: mass on columns 0 and 2 per row = 0.6, 0.4, 0.75, 0.4 -> mean 2.15 / 4
    assert features.vertical == pytest.approx(0.5375)
    # diagonal: ordinary neighbours only: row 0 -> col 1 (0.2); row 1 -> cols 0, 2 are special (0);
    # row 2 -> col 1 (0.25) and col 3 (0); row 3 -> col 2 is special (0); mean 0.45 / 4
    assert features.diagonal == pytest.approx(0.1125)
    # block: per segment, own-segment ordinary mass / all ordinary mass, summed over its queries.
    # Segment 0 (rows 0-2): own (col 1) 0.2 + 0.2 + 0.25 = 0.65 of ordinary (cols 1, 3)
    # 0.4 + 0.6 + 0.25 = 1.25 -> 0.52; segment 1 (row 3): own (col 3) 0.4 of 0.6 -> 2/3.
    # Mean of the two segments: (0.52 + 2/3) / 2 = 89/150
    assert features.block == pytest.approx(89 / 150)
    # concentration: row maxima 0.4, 0.4, 0.5, 0.4 -> mean 1.7 / 4
    assert features.concentration == pytest.approx(0.425)
    assert features.block_examples == 1


def test_a_single_sentence_has_no_block_share_and_is_never_a_block():
    maps, special, _ = synthetic_maps()
    features = map_features(maps["block"][None, None], special, np.zeros(len(special), dtype=int))
    assert math.isnan(float(features.block[0, 0])) and features.block_examples == 0
    assert classify(features) == [["heterogeneous"]]


def test_bad_map_shapes_are_refused():
    with pytest.raises(PatternError, match=r"\[\.\.\., T, T\]"):
        map_features(np.ones((2, 3)), [False] * 3, [0] * 3)
    with pytest.raises(PatternError, match="one entry per token"):
        map_features(np.ones((3, 3)), [False] * 2, [0] * 3)


# ------------------------------------------------------------------------------- the model

def pair_batch(seed: int = 0):
    """Three sentence pairs [CLS] a [SEP] b [SEP], the last one padded."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, 2000, (3, 12), generator=g)
    input_ids[:, 0], input_ids[:, 5], input_ids[:, 11] = CLS, SEP, SEP
    input_ids[2, 8], input_ids[2, 9:] = SEP, 0
    attention_mask = torch.ones(3, 12, dtype=torch.long)
    attention_mask[2, 9:] = 0
    token_type_ids = torch.zeros(3, 12, dtype=torch.long)
    token_type_ids[:, 6:] = 1
    token_type_ids[2, 9:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
            "labels": torch.tensor([0, 1, 0])}


def test_tiny_model_end_to_end_restores_the_attention_implementation(tiny_model):
    tiny_model.train()
    assert tiny_model.config._attn_implementation == "sdpa"
    features = attention_features(tiny_model, [pair_batch(0), pair_batch(1)], [CLS, SEP], max_examples=5, keep_maps=2)
    assert features.shape == (2, 4) and features.num_examples == 5 and features.block_examples == 5
    for name in ("vertical", "diagonal", "block", "concentration"):
        values = getattr(features, name)
        assert values.shape == (2, 4) and np.all((values >= 0) & (values <= 1 + 1e-6)), name
    types = classify(features)
    assert len(types) == 2 and all(len(row) == 4 and set(row) <= set(TYPES) for row in types)
    assert [m.shape for m in features.maps] == [(2, 4, 12, 12)] * 2
    assert features.map_input_ids[0][0] == CLS and features.map_segments[0][-1] == 1
    assert tiny_model.config._attn_implementation == "sdpa" and tiny_model.training


def test_single_sentences_give_no_block_share(tiny_model, tiny_batch):
    features = attention_features(tiny_model, [tiny_batch], [CLS, SEP])
    assert features.block_examples == 0 and np.isnan(features.block).all()
    assert all("block" not in row for row in classify(features))


def test_padding_is_left_out_of_the_maps(tiny_model):
    batch = pair_batch()
    padded = attention_features(tiny_model, [batch], [CLS, SEP], max_examples=3, keep_maps=3)
    alone = {key: value[2:3, :9] for key, value in batch.items() if key != "labels"}
    unpadded = attention_features(tiny_model, [alone], [CLS, SEP], keep_maps=1)
    assert padded.maps[2].shape == (2, 4, 9, 9)
    np.testing.assert_allclose(padded.maps[2], unpadded.maps[0], atol=1e-5)


def test_the_implementation_is_restored_after_an_error(tiny_model):
    with pytest.raises(KeyError):
        attention_features(tiny_model, [{"attention_mask": torch.ones(1, 4)}], [CLS, SEP])
    assert tiny_model.config._attn_implementation == "sdpa"


def test_a_physically_pruned_model_is_refused_with_a_hint(tiny_model):
    prune_structure(tiny_model, StructuredMasks([[1, 0, 1, 1], [1, 1, 1, 1]], [1, 1]))
    with pytest.raises(LotteryError, match="unpruned model.*types_of"):
        attention_features(tiny_model, [pair_batch()], [CLS, SEP])


def test_types_of_picks_the_survivors_and_type_counts_counts_them():
    types = [["vertical", "block"], ["diagonal", "vertical"]]
    survivors = types_of(types, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert survivors == ["vertical", "diagonal", "vertical"]
    assert type_counts(survivors) == {"vertical": 2, "diagonal": 1, "vertical+diagonal": 0, "block": 0, "heterogeneous": 0}
    with pytest.raises(PatternError, match="does not match"):
        types_of(types, [[1, 0, 1]])
    with pytest.raises(PatternError, match="unknown"):
        type_counts(["stripes"])


# --------------------------------------------------------------------------- hand labels

def write_labels(tmp_path, *lines: str):
    path = tmp_path / "labels.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_hand_labels_are_read_one_based_into_a_layer_head_grid(tmp_path):
    path = write_labels(tmp_path, "layer\thead\ttype", "# a comment", "1\t1\tvertical", "", "2\t3\tblock")
    labels = load_hand_labels(path, num_layers=2, num_heads=3)
    assert labels == [["vertical", None, None], [None, None, "block"]]


@pytest.mark.parametrize(
    ("lines", "line_no", "message"),
    [
        (["layer\thead\tkind", "1\t1\tvertical"], 1, "header"),
        (["layer\thead\ttype", "1\t1\tvertical", "1\t2\tstripes"], 3, "unknown type 'stripes'"),
        (["layer\thead\ttype", "0\t1\tvertical"], 2, "layer 0 is out of range"),
        (["layer\thead\ttype", "1\t4\tvertical"], 2, "head 4 is out of range"),
        (["layer\thead\ttype", "1\tone\tvertical"], 2, "whole number"),
        (["layer\thead\ttype", "1\t1"], 2, "3 tab-separated fields"),
        (["layer\thead\ttype", "2\t2\tblock", "# again", "2\t2\tdiagonal"], 4, "labelled twice"),
    ],
)
def test_hand_label_errors_name_the_file_and_line(tmp_path, lines, line_no, message):
    path = write_labels(tmp_path, *lines)
    with pytest.raises(HandLabelError, match=message) as error:
        load_hand_labels(path, num_layers=2, num_heads=3)
    assert f"{path}:{line_no}:" in str(error.value)
    assert isinstance(error.value, LotteryError)


def test_a_missing_or_empty_hand_label_file_is_named(tmp_path):
    with pytest.raises(HandLabelError, match="not found"):
        load_hand_labels(tmp_path / "nope.tsv", 2, 3)
    with pytest.raises(HandLabelError, match="empty"):
        load_hand_labels(write_labels(tmp_path, ""), 2, 3)


def test_agreement_on_a_small_hand_example():
    rule = [["vertical", "vertical", "diagonal"], ["block", "heterogeneous", "vertical"]]
    hand = [["vertical", "diagonal", "diagonal"], ["block", None, "heterogeneous"]]
    result = agreement(rule, hand)
    # 5 labelled heads, 3 agree. Hand shares: vertical .2, diagonal .4, block .2, heterogeneous .2;
    # rule shares on those heads: vertical .6, diagonal .2, block .2. Chance agreement
    # p_e = .2*.6 + .4*.2 + .2*.2 = .24, kappa = (.6 - .24) / (1 - .24) = 9/19.
    assert result["n"] == 5
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["kappa"] == pytest.approx(9 / 19)
    assert result["confusion"]["diagonal"] == {"vertical": 1, "diagonal": 1, "vertical+diagonal": 0, "block": 0, "heterogeneous": 0}
    assert result["confusion"]["heterogeneous"]["vertical"] == 1
    assert sum(sum(row.values()) for row in result["confusion"].values()) == 5
    json.dumps(result)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    pairs = [(h, r) for hr, rr in zip(hand, rule) for h, r in zip(hr, rr) if h is not None]
    assert result["kappa"] == pytest.approx(sklearn_metrics.cohen_kappa_score(*zip(*pairs)))


def test_agreement_edge_cases():
    assert math.isnan(agreement([["block"]], [["block"]])["kappa"])  # one type on both sides: undefined
    with pytest.raises(PatternError, match="no head carries"):
        agreement([["block"]], [[None]])
    with pytest.raises(PatternError, match="shapes"):
        agreement([["block", "block"]], [["block"]])


# -------------------------------------------------------------------------------- figures

def test_figures_render_without_pyplot(tmp_path, tiny_model):
    features = attention_features(tiny_model, [pair_batch()], [CLS, SEP], keep_maps=1)
    types = classify(features)
    figure = type_examples_figure(features, types, per_type=2, tokens=[str(t) for t in features.map_input_ids[0]])
    assert isinstance(figure, Figure)
    figure.savefig(tmp_path / "examples.png")
    shares = type_shares_figure({
        "pre-trained": {"all heads": [name for row in types for name in row], "good survivors": types[0]},
        "fine-tuned": {"all heads": ["vertical"] * 3, "good survivors": []},
    })
    shares.savefig(tmp_path / "shares.png")
    assert (tmp_path / "examples.png").stat().st_size > 0 and (tmp_path / "shares.png").stat().st_size > 0
    assert isinstance(type_shares_figure({"all heads": ["block", "vertical"]}), Figure)
    with pytest.raises(PatternError, match="no kept map"):
        type_examples_figure(features, types, example=3)


def test_new_modules_import_without_lightning_hydra_wandb_or_pyplot():
    modules = ["lottery.patterns", "lottery.patterns_figures", "lottery.cost"]
    forbidden = ["lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "wandb", "matplotlib.pyplot"]
    code = (f"import sys\nfor name in {modules!r}: __import__(name)\n"
            f"print([m for m in {forbidden!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------ survivors against pruned heads

def test_survivor_contrast_by_hand():
    from lottery.patterns_stats import survivor_type_contrast

    types = [[["vertical", "vertical", "block", "block"]]]
    contrast = survivor_type_contrast(types, [[[1, 1, 0, 0]]], permutations=6000)
    vertical, block, diagonal = (TYPES.index(t) for t in ("vertical", "block", "diagonal"))
    assert contrast.survivors_share[0, vertical] == 1.0 and contrast.pruned_share[0, vertical] == 0.0
    assert contrast.difference[0, vertical] == 1.0 and contrast.difference[0, block] == -1.0
    # 2 of 4 heads at random: both vertical ones in 1 of the 6 pairs, both block ones in 1: |d| = 1 w.p. 1/3
    assert contrast.p[0, vertical] == pytest.approx(1 / 3, abs=0.02)
    assert contrast.p[0, diagonal] == 1.0  # no diagonal head: the difference is always 0
    assert (contrast.null_low[0, vertical], contrast.null_high[0, vertical]) == (-1.0, 1.0)


def test_pooled_contrast_counts_a_recurring_head_once():
    """Two seeds with the same mask over the same pre-trained heads carry no more evidence than one:
    the pooled null permutes the heads once for both seeds. (Independent permutations per seed would
    give p = 2 * (1/6)^2 = 1/18.)"""
    from lottery.patterns_stats import survivor_type_contrast

    types = [["vertical", "vertical", "block", "block"]]
    mask = [[1, 1, 0, 0]]
    contrast = survivor_type_contrast([types, types], [mask, mask], seeds=[1, 2], permutations=6000)
    vertical = TYPES.index("vertical")
    assert contrast.pooled_difference[vertical] == 1.0
    assert contrast.pooled_p[vertical] == pytest.approx(1 / 3, abs=0.02)
    assert contrast.seeds == [1, 2] and contrast.kept.tolist() == [2, 2]


def test_survivor_contrast_skips_seeds_that_keep_every_head_and_checks_input():
    from lottery.patterns_stats import survivor_type_contrast

    types = [["vertical", "block", "block", "diagonal"]]
    contrast = survivor_type_contrast([types, types], [[[1, 1, 1, 1]], [[1, 0, 0, 1]]], permutations=50)
    assert np.isnan(contrast.difference[0]).all() and not np.isnan(contrast.difference[1]).any()
    np.testing.assert_allclose(contrast.pooled_difference, contrast.difference[1])
    with pytest.raises(PatternError, match="unknown attention pattern type"):
        survivor_type_contrast([[["vertical", "spiral"]]], [[[1, 0]]])
    with pytest.raises(PatternError, match="one type grid per mask"):
        survivor_type_contrast([types], [[[1, 0, 0, 1]], [[1, 0, 0, 1]]])


def test_type_contrast_figure_draws_both_panels():
    from lottery.patterns_figures import type_contrast_figure
    from lottery.patterns_stats import survivor_type_contrast

    types = [["vertical", "vertical", "block", "heterogeneous"]]
    contrast = survivor_type_contrast([types], [[[1, 0, 1, 0]]], permutations=20)
    figure = type_contrast_figure({"pre-trained": contrast, "fine-tuned": contrast}, title="t", note="a note")
    assert isinstance(figure, Figure) and len(figure.axes) == 4
    with pytest.raises(PatternError):
        type_contrast_figure({})
