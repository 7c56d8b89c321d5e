"""Tickets, drawn and scored the same way for every mode: good / random / bad masks saved next to
the experiment, each scored pruned (the mask on the fine-tuned model) and retrained (the mask on
the pre-trained model, fine-tuned with the same recipe and seed), and what it costs to run (the
ticket as deployed against the full model: parameters, FLOPs, measured latency).

What differs between structured tickets (heads and whole MLPs) and weight tickets (single
weights, magnitude pruning) is one small class each (`StructuredTickets`, `WeightTickets`): how a mask
is saved, sized, applied to the fine-tuned model, and retrained. Every stage records the sha256
of its mask, so editing a ticket's mask file redoes exactly that ticket's stages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from callbacks.weight_masks import WeightMaskEnforcer
from lightning_modules.glue_module import GlueModule
from lottery.accounting import embedding_parameter_count, encoder_parameter_count, structured_size
from lottery.cost import ticket_cost
from lottery.errors import ConfigError, CorruptFileError
from lottery.magnitude import WeightMasks, load_weight_masks, sparsity_report
from lottery.masks import StructuredMasks
from lottery.pruning import prune_structure, save_pruned
from lottery.schema import Ticket
from pipeline.run import Run
from pipeline.training import evaluate, fit, load_finetuned, pretrained_model, recipe_module, save_plain, stage

log = logging.getLogger("lottery")


class StructuredTickets:
    """Heads and whole MLPs (`StructuredMasks`); retrained tickets are physically smaller."""

    suffix = ".json"

    @staticmethod
    def save(masks: StructuredMasks, path: Path) -> None:
        masks.save_json(path)

    @staticmethod
    def load(path: Path, reference: nn.Module) -> StructuredMasks:
        return StructuredMasks.load_json(path, expected_shape=StructuredMasks.for_model(reference).shape)

    @staticmethod
    def describe(masks: StructuredMasks, reference: nn.Module) -> dict[str, Any]:
        size = structured_size(reference, masks)
        keys = ("size_pct", "size_pct_all", "heads_kept", "heads_total", "mlps_kept", "mlps_total", "params_kept")
        return {**{key: size[key] for key in keys}, "head_mask": masks.head.int().tolist(),
                "mlp_mask": masks.mlp.int().tolist()}

    @staticmethod
    def pruned_module(run: Run, masks: StructuredMasks) -> pl.LightningModule:
        return GlueModule(load_finetuned(run), run.task, masks=masks, empty_layer_bias=_empty_layer_bias(run))

    @staticmethod
    def retrain(run: Run, run_dir: Path, masks: StructuredMasks, kind: str) -> dict:
        model = prune_structure(pretrained_model(run), masks, _empty_layer_bias(run))
        return fit(run, run_dir, model, save_pruned, f"retrained-{kind}")

    @staticmethod
    def runnable(run: Run, masks: StructuredMasks) -> nn.Module:
        """The ticket as it would be deployed: physically smaller."""
        return prune_structure(load_finetuned(run), masks, _empty_layer_bias(run))


def _empty_layer_bias(run: Run) -> str:
    """tickets.empty_layer_bias of a structured ticket run (protocol.empty_layer_bias)."""
    return run.settings.tickets.empty_layer_bias


class WeightTickets:
    """Single weights (`WeightMasks`); retrained tickets keep their pruned weights at exactly zero."""

    suffix = ".npz"

    @staticmethod
    def save(masks: WeightMasks, path: Path) -> None:
        masks.save(path)

    @staticmethod
    def load(path: Path, reference: nn.Module) -> WeightMasks:
        masks = load_weight_masks(path)
        masks.check_compatible(reference)
        return masks

    @staticmethod
    def describe(masks: WeightMasks, reference: nn.Module) -> dict[str, Any]:
        report = sparsity_report(masks, reference)
        encoder_total = encoder_parameter_count(reference)
        pruned = masks.num_total() - masks.num_kept()
        all_params = sum(p.numel() for p in reference.parameters())
        non_embedding = all_params - embedding_parameter_count(reference)
        return {"sparsity": masks.sparsity(), "size_pct": 100.0 * (encoder_total - pruned) / encoder_total,
                "size_pct_all": 100.0 * (non_embedding - pruned) / all_params,
                "head_survival": report["head_survival"], "mlp_survival": report["mlp_survival"],
                "per_layer_sparsity": report["per_layer"]}

    @staticmethod
    def pruned_module(run: Run, masks: WeightMasks) -> pl.LightningModule:
        model = load_finetuned(run)
        masks.apply_(model)
        return recipe_module(run, model)

    @staticmethod
    def retrain(run: Run, run_dir: Path, masks: WeightMasks, kind: str) -> dict:
        model = pretrained_model(run)
        masks.check_compatible(model)
        masks.apply_(model)
        accumulation = _random_accumulation(run) if kind == "random" else 1
        metrics = fit(run, run_dir, model, save_plain, f"retrained-{kind}", callbacks=[WeightMaskEnforcer(masks)],
                      accumulation=accumulation)
        parameters = dict(model.named_parameters())
        leaked = sum(int(torch.count_nonzero(parameters[name].detach().cpu()[~mask])) for name, mask in masks.items())
        if leaked:
            raise RuntimeError(f"{leaked} pruned weights are non-zero after retraining the {kind} ticket")
        return metrics

    @staticmethod
    def runnable(run: Run, masks: WeightMasks) -> nn.Module:
        """The ticket as it would be deployed: the same dense shapes, zeros where pruned (no faster)."""
        model = load_finetuned(run)
        masks.apply_(model)
        return model


TicketType = type[StructuredTickets] | type[WeightTickets]


def draw_tickets(run: Run, ticket_type: TicketType, folder: Path, draw: dict[str, Callable[[], Any]],
                 reference: nn.Module) -> dict[str, Any]:
    """Each configured ticket kind's mask: read from `folder` if saved there, else drawn and saved.

    A saved mask that cannot be read is drawn again (with a warning); `force=true` redraws all."""
    tickets = {}
    for kind in run.settings.tickets.kinds:
        if kind not in draw:
            raise ConfigError(f"tickets.kinds names {kind!r}; this mode draws {sorted(draw)}")
        path = folder / f"{kind}{ticket_type.suffix}"
        if path.is_file() and not run.settings.force:
            try:
                tickets[kind] = ticket_type.load(path, reference)
                continue
            except CorruptFileError as error:
                log.warning("%s; drawing the %s ticket again", error, kind)
        tickets[kind] = draw[kind]()
        ticket_type.save(tickets[kind], path)
    return tickets


def score_tickets(run: Run, exp_dir: Path, ticket_type: TicketType, tickets: dict[str, Any], reference: nn.Module,
                  mask_folder: str = "tickets") -> dict[str, Ticket]:
    """Each ticket's size and its scores pruned and retrained; every stage resumable, and redone
    when its mask changed."""
    force, settings = run.settings.force, run.settings.tickets
    scored = {}
    for kind, masks in tickets.items():
        sha = masks.content_sha256()
        inputs = {"mask_sha256": sha}

        def pruned_work(run_dir: Path, masks: Any = masks, kind: str = kind) -> dict:
            return evaluate(run, ticket_type.pruned_module(run, masks), run_dir, f"pruned-{kind}")

        def retrained_work(run_dir: Path, masks: Any = masks, kind: str = kind) -> dict:
            return ticket_type.retrain(run, run_dir, masks, kind)

        def cost_work(run_dir: Path, masks: Any = masks) -> dict:
            return measure_cost(run, reference, ticket_type.runnable(run, masks))

        pruned = stage(exp_dir / "pruned" / kind, pruned_work, force=force, inputs=inputs)
        retrained = (stage(exp_dir / "retrained" / kind, retrained_work, force=force, inputs=inputs)
                     if settings.retrain else None)
        cost = stage(exp_dir / "cost" / kind, cost_work, force=force, inputs=inputs) if settings.cost else None
        scored[kind] = Ticket(mask_file=f"{mask_folder}/{kind}{ticket_type.suffix}", mask_sha256=sha, pruned=pruned,
                              retrained=retrained, cost=cost, **ticket_type.describe(masks, reference))
    return scored


def measure_cost(run: Run, full: nn.Module, ticket: nn.Module) -> dict[str, float]:
    """Parameters, FLOPs per example and eval latency of the ticket against the full model, measured
    in the same process (`lottery.cost.ticket_cost`), flattened to numbers; speed-ups = full / ticket
    (absent where the ticket keeps nothing to run)."""
    settings = run.settings.cost
    device = next(full.parameters()).device
    measured = ticket_cost(full.eval(), ticket.to(device).eval(), batch_sizes=tuple(settings.batch_sizes),
                           seq_len=settings.seq_len, repeats=settings.repeats, warmup=settings.warmup)
    flat = {"seq_len": float(measured["seq_len"]), "threads": float(measured["threads"])}
    for name in ("full", "pruned"):
        part = measured[name]
        flat[f"params_{name}"] = float(part["params"])
        flat[f"flops_per_example_{name}"] = float(part["flops_per_example"])
        for size, seconds in part["latency_s"].items():
            flat[f"latency_ms_b{size}_{name}"] = 1000.0 * seconds
    speedup = measured["speedup"]
    candidates = {"speedup_flops": speedup["flops"], "speedup_params": speedup["params"],
                  **{f"speedup_latency_b{size}": value for size, value in speedup["latency"].items()}}
    flat.update({key: float(value) for key, value in candidates.items() if value is not None})
    return flat


def _random_accumulation(run: Run) -> int:
    """magnitude.random_accumulation (protocol.random_accumulation); 1 for other weight-ticket modes
    (the authors retrained only magnitude random tickets with accumulation, src/train_with_masks.sh)."""
    magnitude = getattr(run.settings, "magnitude", None)
    return int(magnitude.random_accumulation) if magnitude is not None else 1
