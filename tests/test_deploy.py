"""Tickets as deployable artefacts: the model card's Hub metadata, the latency command and the
ONNX export, on a retrained (physically pruned) ticket of the tiny BERT."""

import json

import pytest
import yaml

from lottery import export_onnx, latency
from lottery.model_card import base_model_metadata, dataset_of, model_card
from lottery.models import minilm_path
from lottery.schema import Results
from pipeline import train
from tests.helpers import compose_config, experiment_dir, finetune_dir, tiny_overrides


@pytest.fixture(scope="module")
def ticket(tmp_path_factory, tiny_glue):
    """MRPC (two metrics: accuracy and F1), the good ticket retrained."""
    root = tmp_path_factory.mktemp("deploy")
    results = train(compose_config(tiny_overrides(root, tiny_glue, "experiment=structured", "task=mrpc",
                                                  "structured.head_fraction=0.25", "tickets.kinds=[good]",
                                                  "tickets.cost=false")))
    folder = experiment_dir(root, "mrpc", "structured-paper") / "retrained" / "good" / "model"
    return folder, results, root


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_the_card_carries_the_hubs_model_index(ticket):
    folder, results, _ = ticket
    metadata = front_matter((folder / "README.md").read_text())
    assert metadata["library_name"] == "transformers" and "base_model" not in metadata  # a random init has none
    assert {"bert-lottery", "lottery-ticket", "structured-pruning", "glue"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["nyu-mll/glue"]
    (index,) = metadata["model-index"]
    good = results["tickets"]["good"]
    entries = {(m["name"], m["type"]): m["value"] for r in index["results"] for m in r["metrics"]}
    assert entries == {
        ("accuracy (pruned: the mask on the fine-tuned model)", "accuracy"): round(good["pruned"]["accuracy"], 4),
        ("f1 (pruned: the mask on the fine-tuned model)", "f1"): round(good["pruned"]["f1"], 4),
        ("accuracy (retrained: this model)", "accuracy"): round(good["retrained"]["accuracy"], 4),
        ("f1 (retrained: this model)", "f1"): round(good["retrained"]["f1"], 4)}
    dataset = index["results"][0]["dataset"]
    assert dataset == {"name": "GLUE MRPC", "type": "nyu-mll/glue", "config": "mrpc", "split": "validation"}


def test_a_base_models_license_and_a_custom_hub_dataset(ticket):
    from huggingface_hub import ModelCard

    _, results, _ = ticket
    assert base_model_metadata(minilm_path()) == {"license": "apache-2.0", "language": "en"}
    card = model_card(Results.from_dict(results), "good", "sentence-transformers/all-MiniLM-L6-v2",
                      license="apache-2.0", language="en")
    data = ModelCard(card).data  # the Hub library reads its own metadata back
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and data.license == "apache-2.0"
    assert len(data.eval_results) == 4 and data.eval_results[0].dataset_config == "mrpc"
    assert "base_model" not in front_matter(model_card(Results.from_dict(results), "good", "/local/folder"))
    custom = Results.from_dict({**results, "task": "boolq_v2", "settings": {
        **results["settings"], "task_definition": {"source": "hub:org/boolq/v2", "splits": ["train", "dev"]}}})
    assert dataset_of(custom) == {"type": "org/boolq", "name": "org/boolq", "config": "v2", "splits": {"dev": "dev"},
                                  "hub": True}
    stsb = Results.from_dict({**results, "task": "stsb", "metrics": ["pearson", "spearman", "pearson_spearman"],
                              "tickets": {"good": {**results["tickets"]["good"], "retrained": {
                                  "pearson": 0.5, "spearman": 0.25, "pearson_spearman": 0.375}, "pruned": None}}})
    metrics = front_matter(model_card(stsb, "good", None))["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [("pearsonr", 0.5), ("spearmanr", 0.25)]
    files = Results.from_dict({**results, "task": "reviews", "label_names": ["neg", "pos"],
                               "settings": {**results["settings"], "task_definition": {"source": "files"}}})
    card = model_card(files, "good", None)
    assert "datasets" not in front_matter(card) and "Labels (id: name): 0: neg, 1: pos." in card


def test_latency_prints_the_table_against_the_unpruned_architecture_or_a_base(ticket, capsys):
    folder, _, root = ticket
    assert latency.main([str(folder), "--batch-sizes", "1,4", "--seq-len", "16", "--repeats", "2", "--warmup", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| | base | ticket | speed-up |" in printed and "| latency, batch 4 (ms) |" in printed
    assert "its unpruned architecture" in printed
    encoder = next(line for line in printed.splitlines() if line.startswith("| encoder parameters |"))
    assert float(encoder.split("|")[4]) > 1  # the pruned encoder is smaller
    base = finetune_dir(root, "mrpc") / "model"
    assert latency.main([str(folder), "--base", str(base), "--batch-sizes", "2", "--seq-len", "8", "--repeats", "1",
                         "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["base"] == str(base) and set(measured["full"]["latency_s"]) == {"2"}
    with pytest.raises(SystemExit) as error:
        latency.main([str(root / "nowhere")])
    assert error.value.code == 2


def test_the_onnx_export_of_a_pruned_ticket_matches_pytorch(ticket, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    folder, _, _ = ticket
    assert json.loads((folder / "config.json").read_text())["pruned_structure"]  # physically pruned
    out = tmp_path / "ticket.onnx"
    assert export_onnx.main([str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    difference = float(printed.rsplit("max abs diff ", 1)[1].split()[0])
    assert out.is_file() and difference <= 1e-4
    # A graph that computed something else is refused, and nothing is written.
    monkeypatch.setattr(export_onnx, "max_difference", lambda model, path: 0.5)
    refused = tmp_path / "refused.onnx"
    assert export_onnx.main([str(folder), "--out", str(refused), "--exporter", "torchscript"]) == 1
    assert "differ from PyTorch's by up to 0.5" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [out]
