"""The ticket experiment, one flow for every kind of ticket: fine-tune -> search -> draw -> score -> finish.

    <experiment folder>/settings.json       what determines the results (`Run.identity`)
    search/    the mode's search files, good<suffix> (the good mask), summary.json
    tickets/<kind><suffix>                  each ticket's mask (drawn once; an edited one is used)
    tickets/<kind>_retrained<suffix>        the mask a ticket is retrained with, where it is not the pruned one
    pruned/<kind>/, retrained/<kind>/, cost/<kind>/   its scores (`pipeline.tickets.score_tickets`)
    results.json

A mode supplies only what is its own: its search (a stage: resumable, and reused once finished),
or for tickets that are not searched for (super tickets) the summary that stands for it; and how
its tickets are drawn from the good mask. How masks are saved, sized, applied and retrained is its
tickets' class (`pipeline.tickets.StructuredTickets`, `WeightTickets`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from lottery.io import write_json
from lottery.models import model_shape
from lottery.schema import SearchSummary
from pipeline.identity import record_settings
from pipeline.results import finish, new_results
from pipeline.run import Run
from pipeline.stages import unfinished_unless_readable
from pipeline.tickets import TicketType, draw_tickets, score_tickets
from pipeline.training import finetune, load_finetuned, stage

SEARCH_DIR = "search"
SUMMARY_FILE = "summary.json"
# A search: (run, its folder) -> its summary, with the good mask saved as <folder>/good<suffix>.
Search = Callable[[Run, Path], SearchSummary]
# How a mode draws its tickets: (run, good mask or None, the fine-tuned model) -> {kind: draw}.
Draw = Callable[[Run, Any, nn.Module], dict[str, Callable[[], Any]]]


def good_mask_path(run: Run, ticket_type: TicketType) -> Path:
    return run.experiment_dir / SEARCH_DIR / f"good{ticket_type.suffix}"


def searched(run: Run, search: Search) -> SearchSummary:
    """The search as a stage: run once (its summary recorded beside its files), then reused."""

    def work(folder: Path) -> dict:
        summary = search(run, folder).to_dict()
        write_json(folder / SUMMARY_FILE, summary)
        return summary

    return SearchSummary.from_dict(stage(run.experiment_dir / SEARCH_DIR, work, force=run.settings.force))


def ticket_experiment(run: Run, ticket_type: TicketType, draw: Draw, search: Search | None = None,
                      unsearched: Callable[[dict], SearchSummary] | None = None,
                      draw_retrained: Draw | None = None) -> dict:
    """Fine-tune, search (or, for tickets not searched for, `unsearched(full dev metrics)`), draw,
    score and write the results of one experiment; returns its results dict. `draw_retrained`: the
    kinds retrained with a mask of their own, not the one they are pruned with (protocol.random_pairing)."""
    full = finetune(run)
    record_settings(run.experiment_dir, run.recorded_settings)
    if search is not None:  # a finished search whose good mask is missing or truncated is redone
        good_path = good_mask_path(run, ticket_type)
        unfinished_unless_readable(good_path.parent, lambda: ticket_type.load(good_path, load_finetuned(run)))
    summary = searched(run, search) if search is not None else unsearched(full)
    reference = load_finetuned(run)  # after the search, which loads its own copy
    good = ticket_type.load(good_mask_path(run, ticket_type), reference) if search is not None else None
    folder = run.experiment_dir / "tickets"
    tickets = draw_tickets(run, ticket_type, folder, draw(run, good, reference), reference)
    retrained_masks = (draw_tickets(run, ticket_type, folder, draw_retrained(run, good, reference), reference,
                                    retrained=True) if draw_retrained is not None else {})
    results = new_results(run, full, *model_shape(reference), search=summary)
    results.tickets = score_tickets(run, run.experiment_dir, ticket_type, tickets, reference,
                                    retrained_masks=retrained_masks)
    return finish(run, results)
