"""The model card (README.md) of a retrained ticket's folder, the Hub's convention for describing a
model: what it was pruned from and how, what it kept, how it scores beside the full model, and how
it was trained.

Its metadata (the YAML front matter) is built with `huggingface_hub.ModelCardData`, as the Hub
reads it: `model-index` with one `EvalResult` per dev metric of the ticket, pruned (the mask on the
fine-tuned model) and retrained (this model), on the task's dataset (`nyu-mll/glue` and the task's
config, or a custom task's dataset); base_model, license (from the base model's own card where it
has one), tags, library_name transformers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lottery.schema import EVALUATIONS, Results, Ticket
from lottery.tasks import TASKS, split_suffix

# The Hub's metric ids (its `evaluate` names) of the project's metric keys, with their arguments.
HUB_METRICS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "accuracy": ("accuracy", None), "f1": ("f1", None), "f1_macro": ("f1", {"average": "macro"}),
    "mcc": ("matthews_correlation", None), "pearson": ("pearsonr", None), "spearman": ("spearmanr", None),
}
EVALUATION_NAMES = {"pruned": "pruned: the mask on the fine-tuned model",
                    "retrained": "retrained: this model"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

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


def dataset_of(results: Results) -> dict[str, Any]:
    """The dataset a run was scored on, as the Hub names it: id (`type`), readable name, config
    and the split of each dev split; for a custom task from files, its task name."""
    glue = TASKS.get(results.task)
    if glue is not None:
        return {"type": "nyu-mll/glue", "name": f"GLUE {glue.folder}", "config": glue.hub_config,
                "splits": {name: glue.hub_dev_splits[name] for name in glue.eval_splits}, "hub": True}
    definition = results.settings.get("task_definition") or {}
    source = str(definition.get("source", ""))
    if source.startswith("hub:"):
        name, _, config = source.removeprefix("hub:").rpartition("/")
        dev = (definition.get("splits") or ["train", "validation"])[1]
        return {"type": name, "name": name, "config": None if config in ("", "None") else config,
                "splits": {"dev": dev}, "hub": True}
    return {"type": results.task, "name": results.task, "config": None, "splits": {"dev": "dev"}, "hub": False}


def card_data(results: Results, kind: str, base_model: str | None, license: str | None = None,
              language: str | list[str] | None = None):
    """The card's metadata (`huggingface_hub.ModelCardData`): model-index with the ticket's dev
    scores pruned and retrained, base model, dataset, license, tags."""
    from huggingface_hub import EvalResult, ModelCardData  # imported here: only cards need it

    ticket = results.tickets[kind]
    dataset = dataset_of(results)
    suffixes = {split_suffix(split): split for split in dataset["splits"]}
    evaluations = []
    for evaluation in EVALUATIONS:
        scores = getattr(ticket, evaluation) or {}
        for metric in results.metrics:
            suffix = next((s for s in suffixes if s and metric.endswith(s)), "")
            if metric.removesuffix(suffix) not in HUB_METRICS or scores.get(metric) is None:
                continue  # pearson_spearman, the mean STS-B prunes on, is no metric of the Hub's
            hub_metric, args = HUB_METRICS[metric.removesuffix(suffix)]
            evaluations.append(EvalResult(
                task_type="text-classification", task_name="Text Classification" if results.label_names
                else "Text Regression", dataset_type=dataset["type"], dataset_name=dataset["name"],
                dataset_config=dataset["config"], dataset_split=dataset["splits"][suffixes[suffix]],
                metric_type=hub_metric, metric_args=args, metric_value=round(float(scores[metric]), 4),
                metric_name=f"{metric} ({EVALUATION_NAMES[evaluation]})"))
    unit = "structured-pruning" if ticket.head_mask is not None else "magnitude-pruning"
    tags = ["bert-lottery", "pruning", "lottery-ticket", unit, *(["glue"] if results.task in TASKS else [])]
    hub_base = base_model if base_model and HUB_ID.fullmatch(base_model) else None
    return ModelCardData(
        model_name=f"{results.model}-{results.task}-{kind}-{results.mode}-seed{results.seed}",
        base_model=hub_base, library_name="transformers", pipeline_tag="text-classification", license=license,
        language=language, tags=tags, datasets=[dataset["type"]] if dataset["hub"] else None,
        eval_results=evaluations or None)


def base_model_metadata(folder: str | Path | None) -> dict[str, Any]:
    """license and language from a local base model's own card (README.md front matter), if any."""
    readme = Path(folder) / "README.md" if folder else None
    if readme is None or not readme.is_file():
        return {}
    from huggingface_hub import metadata_load

    try:
        metadata = metadata_load(readme) or {}
    except Exception:  # noqa: BLE001  (a card whose front matter is not YAML: nothing to take from it)
        return {}
    return {key: metadata[key] for key in ("license", "language") if metadata.get(key)}


def model_card(results: Results, kind: str, base_model: str | None, license: str | None = None,
               language: str | list[str] | None = None) -> str:
    """README.md of the retrained `kind` ticket of `results` (`base_model`: the pre-trained model's
    hub id or folder, None for a random initialisation; `license`, `language`: the base model's)."""
    ticket = results.tickets[kind]
    deployed = ticket.as_retrained()  # under protocol.random_pairing=separate, not the mask scored pruned
    metric = results.table_metric
    recipe: dict[str, Any] = results.settings.get("recipe", {})
    dataset = dataset_of(results)
    front = ["---", card_data(results, kind, base_model, license, language).to_yaml().rstrip("\n"), "---"]
    labels = ([f"Labels (id: name): {', '.join(f'{i}: {name}' for i, name in enumerate(results.label_names))}.", ""]
              if results.label_names else [])
    scores = ["| model | " + " | ".join(f"dev {m}" for m in results.metrics) + " |",
              "|---|" + "---|" * len(results.metrics),
              "| full model (fine-tuned) | " + " | ".join(_score(results.full, m) for m in results.metrics) + " |"]
    for evaluation in EVALUATIONS:
        label = {"pruned": ("another draw of this random mask on the fine-tuned model (the authors' seed 42)"
                            if ticket.retrained_mask else "this mask on the fine-tuned model"),
                 "retrained": "this model (the mask on the pre-trained model, fine-tuned)"}[evaluation]
        scores.append(f"| {label} | " + " | ".join(_score(getattr(ticket, evaluation), m) for m in results.metrics)
                      + " |")
    lines = [
        *front, "",
        f"# {results.model} {results.task.upper()} — {kind} {results.mode} ticket (seed {results.seed})", "",
        (f"A subnetwork ('{kind}' ticket) of {base_model or 'a randomly initialised model'} for {dataset['name']}, "
         f"found by bert-lottery's `{results.mode}` experiment (variant `{results.variant}`, protocol "
         f"`{results.protocol.get('name')}`: {results.protocol.get('keys')}) and re-fine-tuned from the pre-trained "
         "weights, as in Prasanna et al. (2020)."), "",
        "## Size", "",
        (f"{deployed.size_pct_all:.1f}% of the full model's parameters are kept non-embedding parameters (the paper's "
         f"size); {deployed.size_pct:.1f}% of the encoder's parameters are kept."), "",
        *_structure(deployed), "",
        "## Dev scores", "", f"The table metric of {results.task} is {metric}; the search drove on {results.metric}.",
        "", *scores, "", *labels,
        "## Training", "",
        "Fine-tuned with " + ", ".join(f"{key} {value}" for key, value in recipe.items()) + f", seed {results.seed}.", "",
        "## Loading", "", *_loading(ticket), "",
        "## Citation", "", "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(lines)
