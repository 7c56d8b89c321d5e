"""Tickets that travel: a model card in every retrained ticket's folder, and `python -m lottery.publish`
up to the upload call (the Hub is not reachable here: a stand-in HfApi records the calls)."""

import shutil
from pathlib import Path

import pytest

from lottery.publish import PublishError, check_folder, main, publish
from pipeline import train
from tests.helpers import compose_config, experiment_dir, tiny_overrides


@pytest.fixture(scope="module")
def ticket(tmp_path_factory, tiny_glue):
    root = tmp_path_factory.mktemp("publish")
    results = train(compose_config(tiny_overrides(root, tiny_glue, "experiment=structured", "task=rte",
                                                  "structured.head_fraction=0.25", "tickets.kinds=[good]",
                                                  "tickets.cost=false")))
    return experiment_dir(root, "rte", "structured-paper") / "retrained" / "good" / "model", results


def test_every_retrained_ticket_has_a_model_card(ticket):
    folder, results = ticket
    card = (folder / "README.md").read_text()
    good = results["tickets"]["good"]
    assert card.startswith("---\n") and "\nlibrary_name: transformers\n" in card
    assert f"{good['heads_kept']}/{good['heads_total']} attention heads" in card
    assert f"{good['size_pct_all']:.1f}% of the full model's parameters" in card
    assert f"| full model (fine-tuned) | {results['full']['accuracy']:.4f} |" in card
    assert f"| this model (the mask on the pre-trained model, fine-tuned) | {good['retrained']['accuracy']:.4f} |" in card
    assert "protocol `paper`" in card and "lr 0.001" in card and "When {BERT} Plays the Lottery" in card


class FakeHub:
    """Records the calls; `received`: the files an upload_folder call sends, chosen from its folder by
    huggingface_hub's own filter (what HfApi.upload_folder applies to allow/ignore_patterns)."""

    def __init__(self):
        self.calls = []
        self.received = None

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        self.received = sorted(filter_repo_objects(files, allow_patterns=kwargs.get("allow_patterns"),
                                                   ignore_patterns=kwargs.get("ignore_patterns")))


def test_publish_checks_the_folder_then_creates_and_uploads(ticket):
    folder, _ = ticket
    hub = FakeHub()
    url = publish(folder, "someone/tiny-rte-good", private=True, api=hub)
    assert url == "https://huggingface.co/someone/tiny-rte-good"
    assert hub.calls[0] == ("create_repo", {"repo_id": "someone/tiny-rte-good", "private": True, "exist_ok": True,
                                           "repo_type": "model"})
    assert hub.calls[1][0] == "upload_folder" and hub.calls[1][1]["folder_path"] == str(folder)
    assert {"config.json", "README.md", "model.safetensors"} <= set(check_folder(folder))


SECRETS = {".env": "HF_TOKEN=hf_secret\n", "credentials.txt": "password\n", "checkpoints/last.ckpt": "pickled state",
           "pytorch_model.bin": "a pickle", "logs/finetune/metrics.csv": "step,loss\n"}


@pytest.fixture
def cluttered(ticket, tmp_path):
    """The ticket's folder with what must never leave the machine beside it."""
    folder = tmp_path / "model"
    shutil.copytree(ticket[0], folder)
    for name, text in SECRETS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_publish_sends_only_the_ticket(cluttered, ticket):
    hub = FakeHub()
    publish(cluttered, "someone/tiny-rte-good", api=hub)
    ticket_files = sorted(p.name for p in ticket[0].iterdir())  # what bert-lottery wrote: all of it goes
    assert hub.received == ticket_files
    assert {"config.json", "README.md", "model.safetensors", "tokenizer.json", "modeling_lottery_ticket.py",
            "lottery_architectures.py"} <= set(hub.received)
    assert not set(SECRETS) & set(hub.received)


def test_dry_run_lists_what_would_go_and_what_is_left_out_and_uploads_nothing(cluttered, capsys, monkeypatch):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("a dry run contacted the Hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_hub)
    assert main([str(cluttered), "--repo-id", "someone/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    would, left_out = out.split("Left out")
    assert "Would upload" in would and "  model.safetensors\n" in would and "  config.json\n" in would
    for name in SECRETS:
        assert f"  {name}\n" in left_out and f"  {name}\n" not in would


def test_publish_refuses_what_the_hub_could_not_load(tmp_path, ticket):
    with pytest.raises(PublishError, match="not a folder"):
        check_folder(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(PublishError, match=r"lacks \['README.md', 'model.safetensors'\]"):
        check_folder(tmp_path)


@pytest.mark.e2e
@pytest.mark.parametrize("family", ["bert", "distilbert", "modernbert", "qwen2"])
def test_a_pruned_ticket_loads_with_plain_transformers_where_the_project_cannot_be_imported(tmp_path, family):
    import subprocess
    import sys

    import torch

    from lottery.masks import StructuredMasks
    from lottery.models import model_shape, tiny_model
    from lottery.pruning import load_pruned, prune_structure, save_pruned

    model = tiny_model(family, num_labels=2, seed=0)
    layers, units = model_shape(model)
    head = torch.ones(layers, units)
    head[0, 1:] = 0
    head[1] = 0  # a layer with no units left
    mlp = torch.ones(layers)
    mlp[0] = 0
    save_pruned(prune_structure(model, StructuredMasks(head, mlp)), tmp_path / "ticket")
    batch = {"input_ids": torch.randint(1000, 2000, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long)}
    with torch.no_grad():
        expected = load_pruned(tmp_path / "ticket")(**batch).logits
    torch.save((batch, expected), tmp_path / "expected.pt")
    code = (
        "import sys\n"
        "for name in ('lottery', 'pipeline', 'callbacks', 'lightning_modules'):\n"
        "    sys.modules[name] = None  # bert-lottery cannot be imported\n"
        "import torch\n"
        "from transformers import AutoModelForSequenceClassification\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / 'ticket')!r}, trust_remote_code=True)\n"
        f"batch, expected = torch.load({str(tmp_path / 'expected.pt')!r})\n"
        "with torch.no_grad():\n"
        "    logits = model.eval()(**batch).logits\n"
        "print(type(model).__name__, float((logits - expected).abs().max()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    name, difference = result.stdout.split()[-2:]
    assert name == "LotteryTicketForSequenceClassification" and float(difference) <= 1e-6
