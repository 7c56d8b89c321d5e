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
from lottery.cost import model_cost, ticket_cost
from lottery.errors import ConfigError, CorruptFileError
from lottery.magnitude import WeightMasks, load_weight_masks, sparsity_report
from lottery.masks import StructuredMasks
from lottery.pruning import prune_structure, save_pruned
from lottery.schema import Ticket
from pipeline.retrain_pool import retrain_at_once, retrain_processes
from pipeline.run import Run
from pipeline.settings.concerns import CostSettings, ExecutionSettings
from pipeline.stages import STAGE_FILE, read_stage
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


RETRAINED_MASK = "_retrained"  # tickets/<kind>_retrained<suffix>: a kind's own mask for retraining


def draw_tickets(run: Run, ticket_type: TicketType, folder: Path, draw: dict[str, Callable[[], Any]],
                 reference: nn.Module, retrained: bool = False) -> dict[str, Any]:
    """Each configured ticket kind's mask: read from `folder` if saved there, else drawn and saved.
    `retrained`: the masks some kinds are retrained with instead (`<kind>_retrained`), for the
    configured kinds that `draw` has.

    A saved mask that cannot be read is drawn again (with a warning); `force=true` redraws all."""
    tickets = {}
    for kind in run.settings.tickets.kinds:
        if kind not in draw:
            if retrained:
                continue
            raise ConfigError(f"tickets.kinds names {kind!r}; this mode draws {sorted(draw)}")
        path = folder / f"{kind}{RETRAINED_MASK if retrained else ''}{ticket_type.suffix}"
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
                  mask_folder: str = "tickets", retrained_masks: dict[str, Any] | None = None) -> dict[str, Ticket]:
    """Each ticket's size and its scores pruned and retrained; every stage resumable, and redone
    when its mask changed. `retrained_masks`: the kinds retrained with a mask of their own (recorded
    as the ticket's `retrained_mask`); the others are retrained with the mask they are pruned with."""
    force, settings = run.settings.force, run.settings.tickets
    retrained_masks = retrained_masks or {}
    for_retraining = {kind: retrained_masks.get(kind, masks) for kind, masks in tickets.items()}
    full_cost = FullModelCost(run, reference)
    concurrent = settings.retrain and retrain_concurrently(run, exp_dir, ticket_type, for_retraining)
    scored = {}
    for kind, masks in tickets.items():
        sha = masks.content_sha256()
        inputs = {"mask_sha256": sha}

        def pruned_work(run_dir: Path, masks: Any = masks, kind: str = kind) -> dict:
            return evaluate(run, ticket_type.pruned_module(run, masks), run_dir, f"pruned-{kind}")

        def retrained_work(run_dir: Path, masks: Any = for_retraining[kind], kind: str = kind) -> dict:
            return ticket_type.retrain(run, run_dir, masks, kind)

        def cost_work(run_dir: Path, masks: Any = masks) -> dict:
            return measure_cost(run, full_cost, ticket_type.runnable(run, masks))

        pruned = stage(exp_dir / "pruned" / kind, pruned_work, force=force, inputs=inputs)
        retrained = (stage(exp_dir / "retrained" / kind, retrained_work, force=force and not concurrent,
                           inputs={"mask_sha256": for_retraining[kind].content_sha256()})
                     if settings.retrain else None)
        cost = stage(exp_dir / "cost" / kind, cost_work, force=force, inputs=inputs) if settings.cost else None
        own = None
        if kind in retrained_masks:
            own = {"mask_file": f"{mask_folder}/{kind}{RETRAINED_MASK}{ticket_type.suffix}",
                   "mask_sha256": retrained_masks[kind].content_sha256(),
                   **ticket_type.describe(retrained_masks[kind], reference)}
        scored[kind] = Ticket(mask_file=f"{mask_folder}/{kind}{ticket_type.suffix}", mask_sha256=sha, pruned=pruned,
                              retrained=retrained, cost=cost, retrained_mask=own,
                              **ticket_type.describe(masks, reference))
    return scored


def retrain_concurrently(run: Run, exp_dir: Path, ticket_type: TicketType, tickets: dict[str, Any]) -> bool:
    """Retrain the tickets whose retrained stage is not finished several at once, each in its own
    process (`tickets.retrain_processes`; pipeline.retrain_pool); True if it did, False to leave them
    to the sequential loop."""
    if run.settings.tickets.retrain_processes == 1:
        return False
    pending = {}
    for kind, masks in tickets.items():
        inputs = {"mask_sha256": masks.content_sha256()}
        done = exp_dir / "retrained" / kind / STAGE_FILE
        if run.settings.force or read_stage(done, inputs) is None:
            pending[kind] = (masks, inputs)
    processes = retrain_processes(run, len(pending))
    if processes < 2:
        return False
    log.info("retraining %s at once, %d processes", ", ".join(pending), processes)
    retrain_at_once(run, exp_dir, ticket_type, pending, processes)
    return True


def cost_devices(execution: ExecutionSettings, cost: CostSettings) -> list[str]:
    """Where the cost stage times the models: the run's device (cuda or cpu), and the CPU too when
    `cost.cpu=true` on a GPU run."""
    accelerator = str(execution.accelerator)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return ["cuda", *(["cpu"] if cost.cpu else [])] if on_gpu else ["cpu"]


def cost_precision(run: Run) -> str:
    """The precision the run's models run at (bf16 under trainer.precision=bf16-*, else fp32)."""
    return "bf16" if str(run.settings.execution.precision).startswith("bf16") else "fp32"


class FullModelCost:
    """The full model's `model_cost` on each device, measured once per experiment (the first ticket
    that needs it) and shared by every ticket's cost, so all tickets compare against one timing."""

    def __init__(self, run: Run, full: nn.Module) -> None:
        self.run, self.full, self.measured = run, full, {}

    def on(self, device: str) -> dict:
        if device not in self.measured:
            settings = self.run.settings.cost
            precision = cost_precision(self.run) if device == "cuda" else "fp32"
            self.measured[device] = model_cost(self.full, device, batch_sizes=settings.batch_sizes,
                                               seq_len=settings.seq_len, precision=precision,
                                               min_run_time_s=float(settings.min_run_time_s))
        return self.measured[device]


def measure_cost(run: Run, full: FullModelCost, ticket: nn.Module) -> dict[str, float | str]:
    """Parameters, FLOPs per example and eval latency of the ticket against the full model on each of
    `cost_devices` (`lottery.cost.ticket_cost`: blocked_autorange), flattened; the run's device's
    numbers unprefixed, the CPU's (cost.cpu=true on a GPU run) prefixed `cpu_`. Records where and how
    it was timed: device (cpu, or the GPU's name), precision, threads. Speed-ups = full / ticket (absent
    where the ticket keeps nothing to run); latency_vs_flops = the latency speed-up / the FLOPs speed-up."""
    flat: dict[str, float | str] = {}
    for index, device in enumerate(cost_devices(run.settings.execution, run.settings.cost)):
        measured = ticket_cost(full.on(device), ticket)
        prefix = "" if index == 0 else f"{device}_"
        flat[f"{prefix}device"] = measured["device_name"] if device == "cuda" else "cpu"
        flat[f"{prefix}precision"] = measured["precision"]
        flat[f"{prefix}threads"] = float(measured["threads"])
        flat[f"{prefix}seq_len"] = float(measured["seq_len"])
        for name in ("full", "pruned"):
            part = measured[name]
            flat[f"{prefix}params_{name}"] = float(part["params"])
            flat[f"{prefix}flops_per_example_{name}"] = float(part["flops_per_example"])
            for size, seconds in part["latency_s"].items():
                flat[f"{prefix}latency_ms_b{size}_{name}"] = 1000.0 * seconds
        speedup = measured["speedup"]
        candidates = {"speedup_flops": speedup["flops"], "speedup_params": speedup["params"],
                      **{f"speedup_latency_b{size}": value for size, value in speedup["latency"].items()},
                      **{f"latency_vs_flops_b{size}": value for size, value in measured["latency_vs_flops"].items()}}
        flat.update({f"{prefix}{key}": float(value) for key, value in candidates.items() if value is not None})
    return flat


def _random_accumulation(run: Run) -> int:
    """magnitude.random_accumulation (protocol.random_accumulation); 1 for other weight-ticket modes
    (the authors retrained only magnitude random tickets with accumulation, src/train_with_masks.sh)."""
    magnitude = getattr(run.settings, "magnitude", None)
    return int(magnitude.random_accumulation) if magnitude is not None else 1
