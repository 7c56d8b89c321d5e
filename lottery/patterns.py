"""Which self-attention pattern each head shows: Kovaleva et al. (2019)'s five types, by rules.

Kovaleva et al. sorted BERT's attention maps into five types -- vertical (attention to [CLS]
and [SEP]), diagonal (to the previous/next token), vertical+diagonal, block (within the query's
own sentence of a pair) and heterogeneous (none of these) -- with a CNN trained on maps they
labelled by hand. Neither is available, so this module classifies with transparent rules on four
numbers per head, each measured on one example's map and then averaged over the examples (every
example weighs the same).

One example's map of one head is A [T, T] over its T real tokens (padding removed; rows are
queries i, columns keys j; each row is renormalised to sum to 1, which changes nothing but
rounding because padded keys get zero weight). Special tokens S are the key positions whose
token id is in `special_token_ids` (normally [CLS] and [SEP]); seg(j) is token j's
token_type_id.

- vertical share     v = mean_i sum_{j in S} A[i, j]
                     mass on [CLS]/[SEP]; uniform attention gives |S|/T (3/T for a pair).
- diagonal share     d = mean_i sum_{j not in S, |i - j| = 1} A[i, j]
                     mass on the previous and next token; uniform attention gives about 2/T.
                     Special keys are left out so that v and d never count the same weight
                     (v + d <= 1): a head fixed on [SEP] is not partly "diagonal" because the
                     token before [SEP] is its neighbour.
- block share        b = mean over segments g of (sum_{i in g} own_i) / (sum_{i in g} ordinary_i),
                     where ordinary_i = sum_{j not in S} A[i, j] and own_i is the same sum over
                     the keys j with seg(j) = seg(i): the share of a sentence's attention to
                     ordinary tokens that stays within the sentence, each query weighted by how
                     much it attends to ordinary tokens (one that looks almost only at
                     [CLS]/[SEP] barely counts). Special tokens are left out so that [SEP]-heavy
                     heads (most of BERT's) are judged on the rest of their attention. Taking
                     the mean over segments last makes uniform attention give exactly 1/2 for
                     any pair however unbalanced its sentences; a pure block head gives 1. A
                     single sentence (one segment) or a pair with a sentence of special tokens
                     only has no block share: that example is left out of b's average; with no
                     pair at all b is NaN and no head is "block".
- concentration      c = mean_i max_j A[i, j], the weight of each row's largest entry: 1/T for
                     uniform attention, 1 when every query looks at a single token.

The rule (`classify_head`, thresholds in `Thresholds`), in this order:
vertical+diagonal if v and d are each >= `mixed_part` and v + d >= `dominant`; else vertical if
v >= `dominant`; else diagonal if d >= `dominant`; else block if b >= `block` and
c <= `spread`; else heterogeneous.

Patterns are measured on an unpruned model: a physically pruned one is refused (its pruned
layers return no map for the removed heads). They are measured on encoders whose units are heads
(BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, DeBERTa-v2, ModernBERT); decoders are refused: their
units are key/value groups (an attention map belongs to one query head, not to a unit), and their
causal attention has no [CLS] to look at. DistilBERT, ModernBERT and DeBERTa-v3 take no token
types: the batches' token_type_ids only mark the sentences of a pair. To describe a ticket, classify the heads of the
unpruned model and pick the survivors with the ticket's head mask (`types_of`).

Hand labels (`load_hand_labels`) let one check the rules against a person's judgement
(`agreement`): a TSV with the header ``layer<TAB>head<TAB>type`` and one labelled head per line,
layers and heads numbered FROM 1 as in the report's and this module's figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lottery.errors import LotteryError
from lottery.models import forward_inputs, model_family, model_shape
from lottery.pruning import pruned_structure

TYPES = ("vertical", "diagonal", "vertical+diagonal", "block", "heterogeneous")
HAND_LABEL_HEADER = ("layer", "head", "type")


class PatternError(LotteryError, ValueError):
    """The input cannot be used to measure or compare attention patterns."""


class HandLabelError(PatternError):
    """A hand-label file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Thresholds:
    """Cut-offs of the rule; each sits far from what uniform (patternless) attention gives.

    Typical inputs are GLUE pairs of T = 20-60 tokens (STS-B dev: mean about 30), where uniform
    attention gives v = 3/T <= 0.15 and d ~ 2/T <= 0.1.
    """

    # A pattern "is" the head's pattern when it takes most of the attention: over half of it,
    # >= 3x the uniform share of either kind on T >= 20 tokens.
    dominant: float = 0.5
    # Each part of vertical+diagonal must be clearly visible: >= 0.2 is >= 1.3x the uniform
    # vertical and 2x the uniform diagonal share on T >= 20, and the two together must dominate.
    mixed_part: float = 0.2
    # Block share is 0.5 for uniform attention over a pair and 1 for a pure block; 0.8 is 60% of
    # the way from patternless to pure block.
    block: float = 0.8
    # A block is spread over its sentence: no single key takes most of a row on average. Without
    # this, a head that looks at the query token itself (or one word of the sentence) would pass
    # as a block, since those keys lie in the query's own sentence too.
    spread: float = 0.5


@dataclass
class AttentionFeatures:
    """Per-head pattern features (arrays of equal shape, [layers, heads] for a model).

    `maps` holds the full maps [layers, heads, T, T] of the first few examples (real tokens
    only), with their token ids and token_type_ids, for figures.
    """

    vertical: np.ndarray
    diagonal: np.ndarray
    block: np.ndarray
    concentration: np.ndarray
    num_examples: int = 1
    block_examples: int = 1  # how many examples were pairs, i.e. had a block share
    maps: list[np.ndarray] = field(default_factory=list)
    map_input_ids: list[list[int]] = field(default_factory=list)
    map_segments: list[list[int]] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.vertical.shape)


# ------------------------------------------------------------------------------------- features


def map_features(maps: np.ndarray, special: Sequence[bool], segments: Sequence[int]) -> AttentionFeatures:
    """The four features of maps [..., T, T] of one example (T real tokens), see the module doc."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim < 2 or maps.shape[-2] != maps.shape[-1]:
        raise PatternError(f"attention maps must be [..., T, T], got shape {maps.shape}")
    size = maps.shape[-1]
    special = np.asarray(special, dtype=bool)
    segments = np.asarray(segments)
    if special.shape != (size,) or segments.shape != (size,):
        raise PatternError(f"special and segments must have one entry per token ({size}), got {special.shape}, {segments.shape}")
    maps = maps / maps.sum(axis=-1, keepdims=True)
    ordinary = ~special
    positions = np.arange(size)
    neighbours = (np.abs(positions[:, None] - positions[None, :]) == 1) & ordinary[None, :]

    vertical = maps[..., special].sum(axis=-1).mean(axis=-1)
    diagonal = (maps * neighbours).sum(axis=-1).mean(axis=-1)
    concentration = maps.max(axis=-1).mean(axis=-1)
    return AttentionFeatures(
        vertical=vertical,
        diagonal=diagonal,
        block=_block_share(maps, ordinary, segments),
        concentration=concentration,
        block_examples=int(_is_pair(ordinary, segments)),
    )


def _is_pair(ordinary: np.ndarray, segments: np.ndarray) -> bool:
    """At least two segments, each with an ordinary (non-special) token."""
    groups = np.unique(segments)
    return len(groups) >= 2 and all(ordinary[segments == g].any() for g in groups)


def _block_share(maps: np.ndarray, ordinary: np.ndarray, segments: np.ndarray) -> np.ndarray:
    if not _is_pair(ordinary, segments):
        return np.full(maps.shape[:-2], np.nan)
    same = segments[:, None] == segments[None, :]
    ordinary_mass = (maps * ordinary).sum(axis=-1)  # [..., T]
    own_mass = (maps * (same & ordinary[None, :])).sum(axis=-1)
    per_segment = []
    for group in np.unique(segments):
        queries = segments == group
        total = ordinary_mass[..., queries].sum(axis=-1)
        # 0 / 0 only when the whole sentence attends to special tokens alone: no block share.
        share = np.full(total.shape, np.nan)
        np.divide(own_mass[..., queries].sum(axis=-1), total, out=share, where=total > 0)
        per_segment.append(share)
    return np.mean(per_segment, axis=0)


def _accumulate(examples: list[AttentionFeatures]) -> AttentionFeatures:
    """Mean over examples; block over the examples (pairs) where it is defined."""
    if not examples:
        raise PatternError("no examples to measure attention patterns on (the batches were empty)")
    blocks = np.array([e.block for e in examples if e.block_examples]).reshape(-1, *examples[0].vertical.shape)
    counted = (~np.isnan(blocks)).sum(axis=0)
    return AttentionFeatures(
        vertical=np.mean([e.vertical for e in examples], axis=0),
        diagonal=np.mean([e.diagonal for e in examples], axis=0),
        block=np.where(counted > 0, np.nansum(blocks, axis=0) / np.maximum(counted, 1), np.nan),
        concentration=np.mean([e.concentration for e in examples], axis=0),
        num_examples=len(examples),
        block_examples=len(blocks),
    )


def _check_supported(model: nn.Module) -> None:
    family = model_family(model)
    if family.decoder:
        raise PatternError(
            f"attention patterns are measured on encoders; {type(model).__name__} ({model.config.model_type}) is a "
            f"decoder (its units are key/value groups and its attention is causal): use an encoder model")


def _check_unpruned(model: nn.Module) -> None:
    _, num_heads = model_shape(model)
    structure = pruned_structure(model)
    pruned = [layer for layer, heads in enumerate(structure["heads"]) if len(heads) != num_heads]
    if pruned:
        raise PatternError(
            f"the model's heads are physically pruned (layers {pruned}); attention patterns are measured on the "
            f"unpruned model: classify its heads, then select a ticket's survivors with its head mask (types_of)"
        )


@torch.inference_mode()
def _run(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], special_ids: torch.Tensor,
         max_examples: int, keep_maps: int) -> AttentionFeatures:
    device = next(model.parameters()).device
    num_layers, _ = model_shape(model)
    examples: list[AttentionFeatures] = []
    maps: list[np.ndarray] = []
    map_ids: list[list[int]] = []
    map_segments: list[list[int]] = []
    for batch in batches:
        input_ids = batch["input_ids"]
        attention_mask = batch.get("attention_mask", torch.ones_like(input_ids))
        token_type_ids = batch.get("token_type_ids", torch.zeros_like(input_ids))
        inputs = forward_inputs(model, {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
                                        "token_type_ids": token_type_ids.to(device)})
        output = model(**inputs, output_attentions=True)
        attentions = output.attentions
        if not attentions or len(attentions) != num_layers or any(a is None for a in attentions):
            raise PatternError(f"{type(model).__name__} returned no attention maps with output_attentions=True "
                               f"under the eager attention implementation")
        for row in range(input_ids.shape[0]):
            if len(examples) == max_examples:
                break
            real = attention_mask[row].bool().cpu()
            ids, segments = input_ids[row].cpu()[real], token_type_ids[row].cpu()[real]
            example_maps = torch.stack([a[row].float().cpu() for a in attentions])[..., real, :][..., real].numpy()
            examples.append(map_features(example_maps, torch.isin(ids, special_ids).numpy(), segments.numpy()))
            if len(maps) < keep_maps:
                maps.append(example_maps.astype(np.float32))
                map_ids.append(ids.tolist())
                map_segments.append(segments.tolist())
        if len(examples) == max_examples:
            break
    features = _accumulate(examples)
    features.maps, features.map_input_ids, features.map_segments = maps, map_ids, map_segments
    return features


def attention_features(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    special_token_ids: Sequence[int],
    max_examples: int = 64,
    keep_maps: int = 4,
) -> AttentionFeatures:
    """Pattern features [layers, heads] of an unpruned model, averaged over up to `max_examples`.

    `batches` are dicts with input_ids, attention_mask and token_type_ids (other keys, such as
    labels, are ignored). `special_token_ids` are the ids counted as vertical targets, normally
    ``[tokenizer.cls_token_id, tokenizer.sep_token_id]``. The model runs in eval mode (attention
    dropout would blur the maps) under the eager attention implementation, the only one that
    returns attention weights (SDPA silently returns none); its training flag and attention
    implementation are restored afterwards. The maps of the first `keep_maps` examples are kept.
    """
    _check_supported(model)
    _check_unpruned(model)
    if max_examples < 1:
        raise PatternError(f"max_examples must be >= 1, got {max_examples}")
    special_ids = torch.as_tensor(list(special_token_ids), dtype=torch.long)
    previous_implementation = model.config._attn_implementation
    was_training = model.training
    model.eval()
    model.set_attn_implementation("eager")
    try:
        return _run(model, batches, special_ids, max_examples, keep_maps)
    finally:
        model.set_attn_implementation(previous_implementation)
        model.train(was_training)


# ----------------------------------------------------------------------------------- the rule


def classify_head(vertical: float, diagonal: float, block: float, concentration: float,
                  thresholds: Thresholds = Thresholds()) -> str:
    """The type of one head from its features (the rule in the module docstring)."""
    t = thresholds
    if vertical >= t.mixed_part and diagonal >= t.mixed_part and vertical + diagonal >= t.dominant:
        return "vertical+diagonal"
    if vertical >= t.dominant:
        return "vertical"
    if diagonal >= t.dominant:
        return "diagonal"
    if block >= t.block and concentration <= t.spread:  # False for a NaN block share
        return "block"
    return "heterogeneous"


def classify(features: AttentionFeatures, thresholds: Thresholds = Thresholds()) -> list[list[str]]:
    """The type of every head, [layers][heads], from features of shape [layers, heads]."""
    if len(features.shape) != 2:
        raise PatternError(f"classify needs features of shape [layers, heads], got {features.shape}")
    return [
        [
            classify_head(float(features.vertical[layer, head]), float(features.diagonal[layer, head]),
                          float(features.block[layer, head]), float(features.concentration[layer, head]), thresholds)
            for head in range(features.shape[1])
        ]
        for layer in range(features.shape[0])
    ]


def types_of(types: Sequence[Sequence[str]], head_mask) -> list[str]:
    """The types of the heads whose gate is 1 in `head_mask` [layers, heads] (a ticket's survivors)."""
    gates = np.asarray(head_mask.detach().cpu() if isinstance(head_mask, torch.Tensor) else head_mask)
    shape = (len(types), len(types[0]) if types else 0)
    if gates.shape != shape:
        raise PatternError(f"head mask of shape {gates.shape} does not match the {shape} classified heads")
    return [types[layer][head] for layer, head in zip(*np.nonzero(gates == 1), strict=True)]


def type_counts(types: Iterable[str]) -> dict[str, int]:
    """How many heads of each type, in `TYPES` order (zeros included)."""
    counts = Counter(types)
    unknown = set(counts) - set(TYPES)
    if unknown:
        raise PatternError(f"unknown attention pattern type(s) {sorted(unknown)}; types are {', '.join(TYPES)}")
    return {name: counts[name] for name in TYPES}


# ---------------------------------------------------------------------------------- hand labels


def load_hand_labels(path: str | Path, num_layers: int, num_heads: int) -> list[list[str | None]]:
    """Hand-assigned types [layers][heads] (None where a head is not labelled) from a TSV file.

    The file starts with the header ``layer<TAB>head<TAB>type``; each further line labels one head,
    layer and head numbered from 1 (as in the figures), type one of `TYPES`. Blank lines and lines
    starting with ``#`` are skipped; a head labelled twice is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise HandLabelError(f"hand-label file not found: {path}")
    labels: list[list[str | None]] = [[None] * num_heads for _ in range(num_layers)]
    header_seen = False
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [value.strip() for value in line.split("\t")]
        where = f"{path}:{line_no}"
        if not header_seen:
            if tuple(fields) != HAND_LABEL_HEADER:
                raise HandLabelError(f"{where}: the header must be 'layer<TAB>head<TAB>type', got {line!r}")
            header_seen = True
            continue
        if len(fields) != 3:
            raise HandLabelError(f"{where}: expected 3 tab-separated fields (layer, head, type), got {len(fields)}: {line!r}")
        layer = _label_index(fields[0], num_layers, "layer", where)
        head = _label_index(fields[1], num_heads, "head", where)
        if fields[2] not in TYPES:
            raise HandLabelError(f"{where}: unknown type {fields[2]!r}; types are {', '.join(TYPES)}")
        if labels[layer][head] is not None:
            raise HandLabelError(f"{where}: layer {layer + 1} head {head + 1} is labelled twice")
        labels[layer][head] = fields[2]
    if not header_seen:
        raise HandLabelError(f"{path}: empty file; expected the header 'layer<TAB>head<TAB>type'")
    return labels


def _label_index(text: str, count: int, name: str, where: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise HandLabelError(f"{where}: {name} must be a whole number from 1 to {count}, got {text!r}") from None
    if not 1 <= number <= count:
        raise HandLabelError(f"{where}: {name} {number} is out of range: {name}s are numbered from 1 to {count}")
    return number - 1


def agreement(rule_types: Sequence[Sequence[str]], hand_types: Sequence[Sequence[str | None]]) -> dict:
    """How well the rule matches hand labels, over the heads that carry a hand label.

    Returns a JSON-friendly dict: n (heads compared), accuracy, kappa (Cohen's: (p_o - p_e) /
    (1 - p_e), with p_e from each side's type frequencies; NaN when p_e = 1, i.e. both sides used
    one and the same type only) and confusion[hand type][rule type] counts over `TYPES`.
    """
    if len(rule_types) != len(hand_types) or any(len(r) != len(h) for r, h in zip(rule_types, hand_types, strict=True)):
        raise PatternError("rule and hand labels cover different [layers][heads] shapes")
    pairs = [(hand, rule) for rule_row, hand_row in zip(rule_types, hand_types, strict=True)
             for rule, hand in zip(rule_row, hand_row, strict=True) if hand is not None]
    if not pairs:
        raise PatternError("no head carries a hand label: nothing to compare")
    type_counts([hand for hand, _ in pairs])  # validates both sides
    type_counts([rule for _, rule in pairs])
    n = len(pairs)
    confusion = {hand: {rule: 0 for rule in TYPES} for hand in TYPES}
    for hand, rule in pairs:
        confusion[hand][rule] += 1
    observed = sum(confusion[name][name] for name in TYPES) / n
    hand_share = {name: sum(confusion[name].values()) / n for name in TYPES}
    rule_share = {name: sum(confusion[hand][name] for hand in TYPES) / n for name in TYPES}
    expected = sum(hand_share[name] * rule_share[name] for name in TYPES)
    kappa = (observed - expected) / (1 - expected) if expected < 1 else float("nan")
    return {"n": n, "accuracy": observed, "kappa": kappa, "confusion": confusion}
