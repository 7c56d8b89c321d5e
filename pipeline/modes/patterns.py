"""`experiment=patterns`: which of Kovaleva et al.'s five self-attention patterns each head shows
(`lottery.patterns`), for the pre-trained and the fine-tuned model of (model, task, seed).

Writes into its experiment folder `patterns.json` ({"pretrained": {"types": [L][H], "features":
{...}}, "finetuned": {...}, "examples": N, "thresholds": {...}, "finetune_settings": {...}}, plus, with hand labels, the labels
used and their agreement with the rules) and `maps_<model>.npz` (the attention maps of the first
dev examples, for the report's grid of example maps). The report joins it with the structured
experiments' good tickets of the same seeds (share of each type among all heads, survivors and
super-survivors).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lottery.errors import ConfigError
from lottery.io import atomic_write, read_json, write_json
from lottery.models import model_shape
from lottery.patterns import (
    Thresholds,
    agreement,
    attention_features,
    classify,
    load_hand_labels,
)
from pipeline.identity import record_settings
from pipeline.modes import Mode, register
from pipeline.run import Run
from pipeline.settings import ALWAYS, Concern, RunSettings, setting
from pipeline.training import datamodule, finetune, load_finetuned, pretrained_model, stage

PATTERNS_FILE = "patterns.json"


@dataclass(frozen=True)
class PatternsSettings(Concern):
    """conf/experiment/patterns.yaml."""

    examples: int = setting(64, "dev examples the per-head features are averaged over", identity=ALWAYS)
    hand_labels: str | None = setting(None, "a TSV (header: layer, head, type; numbered from 1) used instead of the "
                                      "rules; agreement is reported (recorded as its content)", identity=ALWAYS)

    def __post_init__(self) -> None:
        if isinstance(self.examples, bool) or not isinstance(self.examples, int) or self.examples < 1:
            raise ConfigError(f"patterns.examples must be a positive integer, got {self.examples!r}")
        if self.hand_labels is not None and not Path(str(self.hand_labels)).is_file():
            raise ConfigError(f"patterns.hand_labels={self.hand_labels!r} is not a file: give a TSV of layer, head, type")


@dataclass(frozen=True, kw_only=True)
class PatternsRunSettings(RunSettings):
    patterns: PatternsSettings = setting(factory=PatternsSettings)

    def recorded(self) -> dict[str, Any]:
        labels = self.patterns.hand_labels
        return {"examples": int(self.patterns.examples), "thresholds": asdict(Thresholds()),
                "hand_labels": None if labels is None else Path(str(labels)).read_text()}


def _describe(run: Run, model, batches, hand_labels: list | None) -> tuple[dict, dict]:
    tokenizer = run.tokenizer
    special = [i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id) if i is not None]
    features = attention_features(model, batches, special, max_examples=run.settings.patterns.examples)
    rules = classify(features)
    record = {
        "types": rules if hand_labels is None else [[hand or rule for hand, rule in zip(h_row, r_row)]
                                                     for h_row, r_row in zip(hand_labels, rules)],
        "rule_types": rules,
        "features": {name: getattr(features, name).tolist() for name in ("vertical", "diagonal", "block",
                                                                         "concentration")},
        "examples": features.num_examples,
    }
    if hand_labels is not None:
        record["agreement"] = agreement(rules, hand_labels)
    maps = {f"map_{i}": m for i, m in enumerate(features.maps)}
    maps |= {f"input_ids_{i}": np.asarray(ids) for i, ids in enumerate(features.map_input_ids)}
    return record, maps


def run_patterns(run: Run) -> dict:
    finetune(run)
    exp_dir = run.experiment_dir
    record_settings(exp_dir, run.identity)

    def work(run_dir: Path) -> dict:
        data = datamodule(run)
        data.setup()
        batches = list(data.val_dataloader()[0])
        finetuned = load_finetuned(run)
        shape = model_shape(finetuned)
        labels = run.settings.patterns.hand_labels
        hand = None if labels is None else load_hand_labels(str(labels), *shape)
        result = {"model": run.settings.model.id, "task": run.task.name, "seed": run.seed, "group": run.group,
                  "num_layers": shape[0], "num_heads": shape[1], "thresholds": asdict(Thresholds()),
                  "finetune_settings": run.finetune_identity}
        for name, model in (("pretrained", pretrained_model(run)), ("finetuned", finetuned)):
            result[name], maps = _describe(run, model, batches, hand)
            atomic_write(run_dir / f"maps_{name}.npz", lambda handle, maps=maps: np.savez_compressed(handle, **maps))
        write_json(run_dir / PATTERNS_FILE, result)
        return {"examples": float(result["finetuned"]["examples"])}

    stage(exp_dir, work, force=run.settings.force)
    return read_json(exp_dir / PATTERNS_FILE)


register(Mode(
    name="patterns", run=run_patterns, description="attention pattern types of each head (Kovaleva et al. 2019)",
    settings=PatternsRunSettings,
))
