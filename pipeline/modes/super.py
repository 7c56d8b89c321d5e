"""`experiment=super`: super-good / super-random / super-bad structured tickets (survivors across all
seeds of a task, written by `python -m lottery.report`) scored pruned and retrained on this seed,
like any structured ticket. The masks' content is part of the experiment's identity, so new
super masks (another sweep, another report) get their own folder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lottery.errors import ConfigError
from lottery.masks import StructuredMasks
from lottery.models import model_shape
from lottery.schema import SearchSummary
from lottery.tickets import KINDS, SUPER_RANDOMS, super_random
from pipeline.experiment import ticket_experiment
from pipeline.modes import Mode, register
from pipeline.run import Run
from pipeline.settings import (
    ALWAYS,
    NEVER,
    Concern,
    HeadTicketSettings,
    SearchSettings,
    TicketRunSettings,
    setting,
)
from pipeline.tickets import StructuredTickets


@dataclass(frozen=True)
class SuperSettings(Concern):
    """Where the super masks are (conf/experiment/super.yaml)."""

    dir: str | None = setting(None, "the folder of super_{good,random,bad}.json; None: where `python -m lottery.report` "
                              "writes them for this run (<paths.root>/report/super/<model.id>/<task>/structured-<protocol>); "
                              "recorded as the masks' content", identity=ALWAYS)


@dataclass(frozen=True)
class SuperSearchSettings(SearchSettings):
    """Super tickets are not searched: the threshold only says whether the bar is within a constant
    predictor's reach (the results' warning)."""

    threshold: float = setting(0.9, "the bar of the results' warning: threshold x the full model's score",
                               identity=NEVER)


@dataclass(frozen=True)
class SuperTicketSettings(HeadTicketSettings):
    kinds: tuple[str, ...] = setting(KINDS, "the super tickets to score (recorded as their masks' content)",
                                     identity=ALWAYS)
    super_random: str = setting("per_seed", "the super-random mask: per_seed (the authors' src/compute_super_masks.py:"
                                "120-147: drawn again for each seed, from the task's super-good and super-bad masks) | "
                                "once (super_random.json, one draw per task for every seed)",
                                protocol="super_random", unchanged="once")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.super_random not in SUPER_RANDOMS:
            raise ConfigError(f"tickets.super_random must be one of {SUPER_RANDOMS}, got {self.super_random!r}")


@dataclass(frozen=True, kw_only=True)
class SuperRunSettings(TicketRunSettings):
    search: SuperSearchSettings = setting(factory=SuperSearchSettings)
    tickets: SuperTicketSettings = setting(factory=SuperTicketSettings)
    super_tickets: SuperSettings = setting(factory=SuperSettings, config="super")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.super_tickets.dir is None:
            folder = (Path(self.paths.root) / "report" / "super" / self.model.id / self.task
                      / f"structured-{self.protocol}")
            object.__setattr__(self, "super_tickets", replace(self.super_tickets, dir=str(folder)))
        missing = [str(path) for path in self.mask_files().values() if not path.is_file()]
        if missing:
            raise ConfigError(
                f"super-ticket masks not found: {', '.join(missing)}. Run the structured sweep over several seeds, "
                f"then `python -m lottery.report {self.paths.root}` (it writes report/super/...), or point super.dir "
                "at such a folder.")

    def mask_files(self) -> dict[str, Path]:
        """The mask files the tickets come from: super_<kind>.json, except that a random ticket drawn per
        seed (tickets.super_random=per_seed) comes from super_good.json and super_bad.json."""
        folder = Path(str(self.super_tickets.dir))
        kinds = list(self.tickets.kinds)
        if self.redraws_random:
            kinds = [kind for kind in kinds if kind != "random"] + [k for k in ("good", "bad") if k not in kinds]
        return {kind: folder / f"super_{kind}.json" for kind in kinds}

    @property
    def redraws_random(self) -> bool:
        return self.tickets.super_random == "per_seed" and "random" in self.tickets.kinds

    def notes(self) -> dict[str, Any]:
        return {"super_dir": self.super_tickets.dir}

    def recorded(self) -> dict[str, Any]:
        """The masks' content: new super masks (another sweep, another report) get their own folder."""
        return {kind: StructuredMasks.load_json(path).content_sha256() for kind, path in self.mask_files().items()}


def draw(run: Run, good: None, reference) -> dict:
    """Each super ticket is its mask file; under tickets.super_random=per_seed the random one is drawn
    with the run's seed from the super-good and super-bad masks (heads and MLPs each, as the report)."""
    shape = model_shape(reference)
    files = run.settings.mask_files()

    def load(kind: str) -> StructuredMasks:
        return StructuredMasks.load_json(files[kind], expected_shape=shape)

    drawn = {kind: (lambda kind=kind: load(kind)) for kind in files}
    if run.settings.redraws_random:
        def random() -> StructuredMasks:
            good, bad = load("good"), load("bad")
            return StructuredMasks(super_random(good.head, bad.head, seed=run.seed),
                                   super_random(good.mlp, bad.mlp, seed=run.seed))
        drawn["random"] = random
    return drawn


def run_super(run: Run) -> dict:
    def unsearched(full: dict) -> SearchSummary:
        return SearchSummary(full_score=full[run.task.pruning_metric], super_dir=run.settings.super_tickets.dir)

    return ticket_experiment(run, StructuredTickets, draw, unsearched=unsearched)


register(Mode(
    name="super", run=run_super, description="super-survivor tickets across the seeds of a task",
    settings=SuperRunSettings, stages="fine-tune, tickets", label_prefix="super", pruning="structured", figures=("bars", "structured_heatmap"),
))
