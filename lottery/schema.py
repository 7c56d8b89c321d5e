"""The one definition of `results.json`: what an experiment writes and the report and tests read.

`Results` is written by the pipeline through `write_results` and read back by `read_results`,
which checks the format and version and names the file and the missing keys when it cannot use
one. A ticket's row labels ("s-good pr") come from `row_label`, nowhere else.

Version history: 1 (implicit, no `format` key) had no settings, protocol, group or size_pct_all;
2 adds them.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lottery.errors import CorruptFileError
from lottery.io import read_json, write_json

RESULTS_FILENAME = "results.json"
RESULTS_FORMAT = "bert-lottery/results"
RESULTS_VERSION = 2
EVALUATIONS = ("pruned", "retrained")
EVALUATION_ABBREVIATIONS = {"pruned": "pr", "retrained": "re"}
PRUNINGS = ("structured", "weights")  # what a ticket masks: heads and MLPs, or single weights
# results.json's names for fields called otherwise here ("unit" now means an attention unit only).
FILE_KEYS = {"pruning": "unit"}
# The protocol's keys (conf/protocol/*.yaml), in the order results list them, each with where a run's
# `settings` record it (the end of its dotted path there): runs that differ only at these paths
# differ only in protocol (the report's protocol comparison).
PROTOCOL_KEYS = {
    "accumulate": "importance.accumulate",
    "phase_change": "search.phase_change",
    "sampling": "sampling",
    "magnitude_exit": "exit_mask",
    "batching": "data.batching",
    "empty_layer_bias": "empty_layer_bias",
    "random_accumulation": "random_accumulation",
    "random_pairing": "random_pairing",
    "super_random": "super_random",
}


def is_protocol_setting(path: str) -> bool:
    """Whether a dotted path of a run's `settings` records a protocol key."""
    return any(path == end or path.endswith("." + end) for end in PROTOCOL_KEYS.values())


def row_label(prefix: str, kind: str, evaluation: str) -> str:
    """The paper's row label of a ticket's evaluation, e.g. ("s", "good", "pruned") -> "s-good pr"."""
    return f"{prefix}-{kind} {EVALUATION_ABBREVIATIONS[evaluation]}"


@dataclass
class Ticket:
    """One ticket (good, random, bad, ...): its size, its mask, and its two evaluations."""

    size_pct: float  # kept encoder parameters / the full encoder's, %
    size_pct_all: float  # the paper's size: kept non-embedding parameters / all parameters, %
    mask_file: str  # relative to the results file's folder
    mask_sha256: str
    pruned: dict[str, float] | None = None  # the mask on the fine-tuned model, dev metrics
    retrained: dict[str, float] | None = None  # the mask on the pre-trained model, fine-tuned, dev metrics
    # structured tickets
    heads_kept: int | None = None
    heads_total: int | None = None
    mlps_kept: int | None = None
    mlps_total: int | None = None
    params_kept: int | None = None
    head_mask: list[list[int]] | None = None
    mlp_mask: list[int] | None = None
    # weight (magnitude) tickets
    sparsity: float | None = None
    head_survival: list[list[float | None]] | None = None  # % of each head's weights kept
    mlp_survival: list[float | None] | None = None
    per_layer_sparsity: list[float | None] | None = None
    # what it costs to run (issue 12): parameters, FLOPs, latency of the pruned model vs the full one
    cost: dict[str, Any] | None = None
    # the mask it was retrained with, where not the one it was pruned with (protocol.random_pairing=separate):
    # its mask_file, mask_sha256 and the size and structure fields above
    retrained_mask: dict[str, Any] | None = None

    def as_retrained(self) -> Ticket:
        """The ticket its retrained model is: itself, or with the size and structure of `retrained_mask`."""
        if not self.retrained_mask:
            return self
        known = {item.name for item in fields(self)}
        return replace(self, retrained_mask=None, **{k: v for k, v in self.retrained_mask.items() if k in known})


@dataclass(frozen=True)
class SearchSummary:
    """What an experiment's search found (results.json's `search`, and its search folder's summary.json).

    Every search: the full model's score on the selection split and the bar a mask had to reach
    (`lottery.pass_rule`), and the iteration (structured) or step / round (weights) of the good mask.
    A structured search adds how many iterations it evaluated and its `SearchConfig`; a weight search
    the good mask's sparsity and every step's record. Tickets not searched for (super tickets) have
    the full model's dev score and where their masks came from.
    """

    full_score: float
    threshold_score: float | None = None
    good_iteration: int | None = None
    iterations: int | None = None  # structured
    config: dict[str, Any] | None = None  # structured: SearchConfig.to_dict()
    sparsity: float | None = None  # weights
    history: list[dict[str, Any]] | None = None  # weights: one record per step or round
    super_dir: str | None = None  # super tickets

    def to_dict(self) -> dict[str, Any]:
        """The fields that apply (those not None)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSummary:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class Results:
    """One experiment of one (model, task, seed): the paper's rows and everything needed to
    group, label and draw it."""

    model: str
    task: str
    seed: int
    mode: str  # the experiment mode (finetune, structured, magnitude, imp, super, ...)
    variant: str  # readable name of the settings beside the seed, e.g. "structured-paper"
    group: str  # hash of the settings without the seed: runs with the same group are seeds of one variant
    settings: dict[str, Any]
    protocol: dict[str, Any]  # {"name": ..., "preset": ..., "keys": {...}}
    pruning: str  # what its tickets mask, PRUNINGS (results.json: "unit")
    label_prefix: str  # "s", "m", ...: row labels are "<prefix>-<ticket> pr|re"
    figures: list[str]  # the report sections that draw this mode's results
    metric: str  # the metric that drives pruning
    table_metric: str  # the metric the paper's table shows
    metrics: list[str]  # every metric in the evaluations
    num_layers: int
    num_heads: int
    full: dict[str, float]
    majority_baseline: dict[str, float]
    search: dict[str, Any] = field(default_factory=dict)  # SearchSummary.to_dict()
    warning: str | None = None
    label_names: list[str] | None = None  # class names in label-id order (None: a regression)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    format: str = RESULTS_FORMAT
    version: int = RESULTS_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tickets"] = {kind: {k: v for k, v in ticket.items() if v is not None}
                           for kind, ticket in data["tickets"].items()}
        return {FILE_KEYS.get(key, key): value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "results") -> Results:
        if not isinstance(data, dict):
            raise CorruptFileError(f"{source} is not a results object")
        names = {file_key: name for name, file_key in FILE_KEYS.items()}
        data = {names.get(key, key): value for key, value in data.items()}
        if data.get("format") != RESULTS_FORMAT or data.get("version") != RESULTS_VERSION:
            raise CorruptFileError(
                f"{source} is results format {data.get('format')!r} version {data.get('version')!r}; this "
                f"bert-lottery reads {RESULTS_FORMAT!r} version {RESULTS_VERSION}: rerun the experiment to rewrite it")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise CorruptFileError(f"{source} lacks the keys {missing}")
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        ticket_keys = {f.name for f in fields(Ticket)}
        try:
            values["tickets"] = {kind: Ticket(**{k: v for k, v in ticket.items() if k in ticket_keys})
                                 for kind, ticket in (data.get("tickets") or {}).items()}
        except TypeError as error:
            raise CorruptFileError(f"{source} has a malformed ticket ({error})") from None
        return cls(**values)


def write_results(path: str | Path, results: Results) -> Path:
    return write_json(path, results.to_dict())


def read_results(path: str | Path) -> Results:
    return Results.from_dict(read_json(path), source=str(path))
