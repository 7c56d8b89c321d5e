"""The model card (README.md) of a retrained ticket's folder, the Hub's convention for describing a
model: what it was pruned from and how, what it kept, how it scores beside the full model, and how
it was trained."""

from __future__ import annotations

from typing import Any

from lottery.schema import EVALUATIONS, Results, Ticket

CITATION = """@inproceedings{prasanna-etal-2020-bert,
    title = "When {BERT} Plays the Lottery, All Tickets Are Winning",
    author = "Prasanna, Sai and Rogers, Anna and Rumshisky, Anna",
    booktitle = "Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing (EMNLP)",
    year = "2020",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2020.emnlp-main.259",
    pages = "3208--3229",
}"""


def _score(metrics: dict[str, float] | None, metric: str) -> str:
    return "-" if not metrics or metrics.get(metric) is None else f"{metrics[metric]:.4f}"


def _structure(ticket: Ticket) -> list[str]:
    if ticket.head_mask is not None and ticket.mlp_mask is not None:
        lines = ["| layer | heads kept | MLP kept |", "|---|---|---|"]
        for layer, (heads, mlp) in enumerate(zip(ticket.head_mask, ticket.mlp_mask), start=1):
            kept = [str(h + 1) for h, gate in enumerate(heads) if gate]
            lines.append(f"| {layer} | {len(kept)}/{len(heads)}: {', '.join(kept) or 'none'} | {'yes' if mlp else 'no'} |")
        summary = (f"{ticket.heads_kept}/{ticket.heads_total} attention heads and {ticket.mlps_kept}/{ticket.mlps_total} "
                   "MLP blocks kept (heads numbered from 1 in each layer); the removed ones are physically cut out.")
        return [summary, "", *lines]
    if ticket.per_layer_sparsity is not None:
        lines = ["| layer | weights pruned |", "|---|---|"]
        lines += [f"| {layer} | {'-' if value is None else f'{100 * value:.1f}%'} |"
                  for layer, value in enumerate(ticket.per_layer_sparsity, start=1)]
        summary = (f"{100 * (ticket.sparsity or 0):.1f}% of the eligible encoder weights are pruned (global magnitude "
                   "pruning: zeros in the dense matrices).")
        return [summary, "", *lines]
    return []


def _loading(ticket: Ticket) -> list[str]:
    if ticket.head_mask is None:  # a weight (magnitude) ticket: the full architecture with zeros
        return ["```python", "from transformers import AutoModelForSequenceClassification",
                "model = AutoModelForSequenceClassification.from_pretrained(FOLDER_OR_REPO)", "```"]
    return ["```python", "from transformers import AutoModelForSequenceClassification",
            "model = AutoModelForSequenceClassification.from_pretrained(FOLDER_OR_REPO, trust_remote_code=True)",
            "```", "", ("The ticket is physically smaller than its architecture's config says, so the folder carries "
                        "its own small modeling code (`auto_map` in config.json) that cuts the removed heads and MLPs "
                        "out before loading the weights; it needs no bert-lottery. `lottery.pruning.load_pruned(FOLDER)` "
                        "loads it too.")]


def model_card(results: Results, kind: str, base_model: str | None) -> str:
    """README.md of the retrained `kind` ticket of `results` (`base_model`: the pre-trained model's
    hub id or folder, None for a random initialisation)."""
    ticket = results.tickets[kind]
    metric = results.table_metric
    recipe: dict[str, Any] = results.settings.get("recipe", {})
    front = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             "tags: [bert-lottery, pruning, lottery-ticket, glue]", "datasets: [nyu-mll/glue]"]
    if base_model:
        front.append(f"base_model: {base_model}")
    front.append("---")
    scores = ["| model | " + " | ".join(f"dev {m}" for m in results.metrics) + " |",
              "|---|" + "---|" * len(results.metrics),
              "| full model (fine-tuned) | " + " | ".join(_score(results.full, m) for m in results.metrics) + " |"]
    for evaluation in EVALUATIONS:
        label = {"pruned": "this mask on the fine-tuned model",
                 "retrained": "this model (the mask on the pre-trained model, fine-tuned)"}[evaluation]
        scores.append(f"| {label} | " + " | ".join(_score(getattr(ticket, evaluation), m) for m in results.metrics)
                      + " |")
    lines = [
        *front, "",
        f"# {results.model} {results.task.upper()} — {kind} {results.mode} ticket (seed {results.seed})", "",
        (f"A subnetwork ('{kind}' ticket) of {base_model or 'a randomly initialised model'} for GLUE {results.task}, "
         f"found by bert-lottery's `{results.mode}` experiment (variant `{results.variant}`, protocol "
         f"`{results.protocol.get('name')}`: {results.protocol.get('keys')}) and re-fine-tuned from the pre-trained "
         "weights, as in Prasanna et al. (2020)."), "",
        "## Size", "",
        (f"{ticket.size_pct_all:.1f}% of the full model's parameters are kept non-embedding parameters (the paper's "
         f"size); {ticket.size_pct:.1f}% of the encoder's parameters are kept."), "",
        *_structure(ticket), "",
        "## Dev scores", "", f"The table metric of {results.task} is {metric}; the search drove on {results.metric}.",
        "", *scores, "",
        "## Training", "",
        "Fine-tuned with " + ", ".join(f"{key} {value}" for key, value in recipe.items()) + f", seed {results.seed}.", "",
        "## Loading", "", *_loading(ticket), "",
        "## Citation", "", "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(lines)
