"""bert-lottery as a library: find a ticket of a model already in memory, with your own data, metric
and loss, and use it (`from lottery import find_ticket, magnitude_ticket, Ticket, retrain`).

    ticket = find_ticket(model, batches, metric)        # heads + MLPs, the paper's structured search
    ticket.prune(model).save_pretrained(...)            # or ticket.save(model, folder, tokenizer)
    random = ticket.random(seed=1)                      # the same size, drawn at random

`data` is any iterable of batches: dicts of tensors (`input_ids`, `attention_mask`, `labels`, ...)
or a DataLoader yielding them. `metric(model) -> float` scores the model as it is (masks attached),
higher is better; or `metric(logits, labels) -> float`, scored over `data`. `loss(model, batch) ->
scalar tensor` replaces the model's own loss (the output's `.loss`) in the importance of heads and
MLPs.

The searches are those of the command line: the structured one is `lottery.search.StructuredSearch`
fed by the same criteria (`lottery.importance`) as `experiment=structured` (which drives it from a
Lightning fit, for DDP and resuming), and the magnitude one is `lottery.magnitude.magnitude_search`,
the loop `experiment=magnitude` runs.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lottery.errors import ConfigError
from lottery.importance import ImportanceAccumulator, get_criterion, normalize_head_importance, normalize_mlp_importance
from lottery.importance.michel import gate_gradients
from lottery.magnitude import (
    MagnitudeSearch,
    WeightMasks,
    bad_weight_ticket,
    eligible_parameters,
    magnitude_search,
    random_weight_ticket,
    snapshot_cpu,
)
from lottery.masks import StructuredMasks
from lottery.models import model_shape
from lottery.search import SearchConfig, StructuredSearch
from lottery.tickets import bad_ticket, random_ticket

if TYPE_CHECKING:
    from typing_extensions import Self

Batch = Mapping[str, Tensor]
Metric = Callable[..., float]
Loss = Callable[[nn.Module, Batch], Tensor]
TICKET_FILE = "ticket.json"


def _takes_predictions(metric: Metric) -> bool:
    """Whether `metric` is metric(logits, labels) rather than metric(model)."""
    try:
        parameters = [p for p in inspect.signature(metric).parameters.values()
                      if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(parameters) == 2


def _score(model: nn.Module, data: Iterable[Batch], metric: Metric) -> float:
    if not _takes_predictions(metric):
        return float(metric(model))
    logits, labels = [], []
    device = next(model.parameters()).device
    with torch.no_grad():
        was_training = model.training
        model.eval()
        for batch in data:
            inputs = {key: value.to(device) for key, value in batch.items() if key != "labels"}
            logits.append(model(**inputs).logits.cpu())
            labels.append(batch["labels"].cpu())
        model.train(was_training)
    return float(metric(torch.cat(logits), torch.cat(labels)))


def _importance(model: nn.Module, masks: StructuredMasks, batches: list[Batch], criterion: str, accumulate: str,
                loss: Loss | None) -> tuple[Tensor, Tensor]:
    """Normalised (head [L, H], MLP [L]) importance of the masked model over `batches`, as the search's
    Lightning pass computes it (`callbacks.structured_pruning`)."""
    scorer = get_criterion(criterion)
    if not scorer.uses_data:
        head_raw, mlp_raw = (t.detach().to("cpu", torch.float64) for t in scorer.static(model, masks))
    else:
        if loss is not None and criterion != "michel":
            raise ConfigError(f"a custom loss works with criterion='michel' (the gates' gradients), not {criterion!r}")
        accumulator = ImportanceAccumulator.for_masks(masks, len(batches), accumulate)
        for index, batch in enumerate(batches):
            if loss is None:
                scores = scorer.batch(model, masks, batch)
                head, mlp, tokens = scores.head, scores.mlp, scores.tokens
            else:
                head, mlp, _, _ = gate_gradients(model, masks, batch, loss_fn=loss)
                mask = batch.get("attention_mask")
                tokens = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
            accumulator.add(index, head.cpu(), mlp.cpu(), tokens)
        head_raw, mlp_raw = accumulator.raw()
    return normalize_head_importance(head_raw), normalize_mlp_importance(mlp_raw)


@dataclass
class Ticket:
    """A subnetwork: structured masks (heads [L, H] and MLPs [L], 1 = kept) or weight masks, with the
    search that found it (`history`: one record per evaluated mask) and its score."""

    masks: StructuredMasks | WeightMasks
    score: float | None = None
    full_score: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    target: str = "heads_mlps"

    @property
    def structured(self) -> bool:
        return isinstance(self.masks, StructuredMasks)

    # ----- other tickets of the same size -----
    def random(self, seed: int, sampling: str = "exact") -> Ticket:
        """A ticket of the same size drawn at random (structured: `sampling` exact | bernoulli)."""
        if self.structured:
            head, mlp = random_ticket(self.masks.head, self.masks.mlp, seed=seed, sampling=sampling,
                                      target=self.target)
            return Ticket(StructuredMasks(head, mlp), target=self.target)
        return Ticket(random_weight_ticket(self.masks, seed=seed), target=self.target)

    def bad(self, seed: int, model: nn.Module | None = None) -> Ticket:
        """A ticket of the same size made of what this one pruned (weights: of `model`'s smallest)."""
        if self.structured:
            head, mlp = bad_ticket(self.masks.head, self.masks.mlp, seed=seed, target=self.target)
            return Ticket(StructuredMasks(head, mlp), target=self.target)
        if model is None:
            raise ConfigError("a bad weight ticket is drawn from the model's weights: Ticket.bad(seed, model)")
        params = {name: value.detach() for name, value in model.named_parameters() if name in self.masks}
        return Ticket(bad_weight_ticket(params, self.masks, seed=seed), target=self.target)

    # ----- using it -----
    def apply(self, model: nn.Module):
        """Mask `model` (reversible): returns a handle whose `.remove()` (or `with`) takes the masks off."""
        if self.structured:
            return self.masks.attach(model)
        return _WeightMasking(model, self.masks)

    def prune(self, model: nn.Module) -> nn.Module:
        """Make `model` the ticket, in place: heads and MLPs removed (physically smaller), or pruned
        weights zeroed (magnitude tickets keep their dense shapes). Returns the model."""
        if self.structured:
            from lottery.pruning import prune_structure

            return prune_structure(model, self.masks)
        self.masks.apply_(model)
        return model

    def save(self, model: nn.Module, folder: str | Path, tokenizer: Any = None) -> Path:
        """A portable ticket: `model` pruned (a copy) with the modeling code that lets plain
        `from_pretrained(folder, trust_remote_code=True)` load it, its tokenizer, and ticket.json
        (the masks and the search's history) that `Ticket.load` reads."""
        import copy

        from lottery.io import write_json
        from lottery.pruning import save_pruned

        if not self.structured:
            raise ConfigError("save writes a physically pruned model: magnitude tickets keep dense shapes; save "
                              "ticket.prune(model) with save_pretrained")
        folder = save_pruned(self.prune(copy.deepcopy(model)), folder, tokenizer)
        write_json(folder / TICKET_FILE, self.to_dict())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Ticket:
        """The ticket `save` wrote into `folder`."""
        return cls.from_dict(json.loads((Path(folder) / TICKET_FILE).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return {"format": "bert-lottery/ticket/v1", "target": self.target, "score": self.score,
                "full_score": self.full_score, "head_mask": self.masks.head.int().tolist(),
                "mlp_mask": self.masks.mlp.int().tolist(), "history": self.history}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ticket:
        return cls(StructuredMasks.from_lists(data["head_mask"], data["mlp_mask"]), score=data.get("score"),
                   full_score=data.get("full_score"), history=list(data.get("history", [])),
                   target=data.get("target", "heads_mlps"))


class _WeightMasking:
    """Zeroes a weight ticket's pruned weights; `remove()` puts the values back."""

    def __init__(self, model: nn.Module, masks: WeightMasks) -> None:
        self._model = model
        self._saved = snapshot_cpu(model, list(masks))
        masks.apply_(model)

    def remove(self) -> None:
        parameters = dict(self._model.named_parameters())
        with torch.no_grad():
            for name, value in self._saved.items():
                parameters[name].copy_(value)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def find_ticket(model: nn.Module, data: Iterable[Batch], metric: Metric, *, loss: Loss | None = None,
                target: str = "heads_mlps", threshold: float = 0.9, criterion: str = "michel",
                accumulate: str = "running", head_fraction: float = 0.1, mlps_per_step: int = 1,
                phase_change: str = "failed") -> Ticket:
    """The paper's structured search on `model` as it is (fine-tuned): mask the least important heads
    and MLPs step by step while `metric` stays >= `threshold` x the full model's. The model is left
    unmasked. Returns the good ticket, its score and the search's history."""
    config = SearchConfig(target=target, threshold=threshold, head_fraction=head_fraction,
                          mlps_per_step=mlps_per_step, phase_change=phase_change)
    batches = list(data)
    search = StructuredSearch(*model_shape(model), config)
    masks = StructuredMasks.ones(*model_shape(model))
    with masks.attach(model):
        while not search.done:
            masks.set(*search.current_mask())
            score = _score(model, batches, metric)
            search.report(*_importance(model, masks, batches, criterion, accumulate, loss), score)
    head, mlp = search.good_mask()
    history = [{"iteration": r.iteration, "phase": r.phase, "score": r.score, "passed": r.passed,
                "heads_kept": int(r.head_mask.sum()), "mlps_kept": int(r.mlp_mask.sum())} for r in search.history]
    good = search.history[search.last_passing_iteration]
    return Ticket(StructuredMasks(head, mlp), score=good.score, full_score=search.full_score, history=history,
                  target=target)


def magnitude_ticket(model: nn.Module, data: Iterable[Batch], metric: Metric, *, threshold: float = 0.9,
                     fraction: float = 0.1, max_steps: int = 10, exit_mask: str = "previous",
                     include_biases: bool = True) -> Ticket:
    """The paper's global magnitude pruning of `model`'s encoder weights: `fraction` of the remaining
    eligible weights per step while `metric` stays >= `threshold` x full. The model's weights are
    restored afterwards. Returns the good weight ticket."""
    batches = list(data)
    params = eligible_parameters(model, include_biases=include_biases)
    original = snapshot_cpu(model, params)
    search = MagnitudeSearch(fraction=fraction, threshold=threshold, max_steps=max_steps, exit_mask=exit_mask)

    def score(step: int, masks: WeightMasks) -> float:
        with _WeightMasking(model, masks):
            return _score(model, batches, metric)

    magnitude_search(search, original, score)
    good = search.history[search.good_step] if search.good_step is not None else None
    return Ticket(search.good, score=None if good is None else good["score"], full_score=search.full_score,
                  history=[dict(record) for record in search.history], target="weights")
