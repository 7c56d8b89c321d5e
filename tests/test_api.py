"""The Python API end to end on the tiny BERT, with its own data (a list of dict batches), its own
metric and its own loss: the ticket's pruned model gives the masked model's logits, the saved ticket
loads with plain `from_pretrained(trust_remote_code=True)` where the project cannot be imported,
and the README's example notebook runs."""

import copy
import json
import subprocess
import sys

import torch
import torch.nn.functional as F

import lottery
from lottery.models import tiny_bert
from tests.helpers import ROOT


def batches(seed: int = 0, count: int = 4, size: int = 8, length: int = 12) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(1000, 2000, (size, length), generator=generator),
             "attention_mask": torch.ones(size, length, dtype=torch.long),
             "labels": torch.randint(0, 2, (size,), generator=generator)} for _ in range(count)]


def logits_of(model, data) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits for b in data])


def smoothed_loss(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits, batch["labels"], label_smoothing=0.1)


def test_find_prune_save_and_load_a_ticket_with_own_data_metric_and_loss(tmp_path):
    model, data = tiny_bert(num_labels=2, seed=0).eval(), batches()
    labels = torch.cat([b["labels"] for b in data])
    calls = []

    def agreement(m) -> float:  # a metric of the model as it is (masks attached)
        calls.append(1)
        return float((logits_of(m, data).argmax(-1) == labels).float().mean())

    before = logits_of(model, data)
    ticket = lottery.find_ticket(model, data, agreement, loss=smoothed_loss, head_fraction=0.25, threshold=0.9)
    assert torch.equal(logits_of(model, data), before)  # the model is left unmasked
    assert len(ticket.history) == len(calls) >= 2 and ticket.history[0]["phase"] == "full"
    assert ticket.score >= 0.9 * ticket.full_score - 1e-9
    good = [record for record in ticket.history if record["passed"]][-1]
    assert (ticket.masks.num_heads_kept, ticket.masks.num_mlps_kept) == (good["heads_kept"], good["mlps_kept"]) != (8, 2)

    with ticket.apply(model):
        masked = logits_of(model, data)
    pruned = ticket.prune(copy.deepcopy(model))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert torch.allclose(logits_of(pruned, data), masked, atol=1e-5)

    random, bad = ticket.random(seed=1), ticket.bad(seed=1)
    assert random.masks.num_heads_kept == bad.masks.num_heads_kept == ticket.masks.num_heads_kept

    folder = ticket.save(model, tmp_path / "ticket")
    assert lottery.Ticket.load(folder).masks == ticket.masks
    # Plain transformers, in a process where bert-lottery cannot be imported.
    probe = (
        "import json, sys, torch\n"
        "class NoProject:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('lottery', 'pipeline', 'callbacks', 'lightning_modules'):\n"
        "            raise ImportError(f'{name} must not be needed')\n"
        "sys.meta_path.insert(0, NoProject())\n"
        "from transformers import AutoModelForSequenceClassification\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()\n"
        f"ids = torch.tensor({data[0]['input_ids'].tolist()})\n"
        "with torch.no_grad():\n"
        "    print(json.dumps(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.tolist()))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            check=False, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    assert torch.allclose(loaded, masked[: len(loaded)], atol=1e-5)


def test_magnitude_ticket_with_a_metric_of_predictions_and_retrain():
    model, data = tiny_bert(num_labels=2, seed=0).eval(), batches()
    weights = {name: value.clone() for name, value in model.named_parameters()}

    def accuracy(logits, labels) -> float:  # a metric over (predictions, labels), scored on `data`
        return float((logits.argmax(-1) == labels).float().mean())

    ticket = lottery.magnitude_ticket(model, data, accuracy, fraction=0.2, max_steps=3)
    assert all(torch.equal(value, weights[name]) for name, value in model.named_parameters())  # restored
    assert [record["step"] for record in ticket.history] == list(range(len(ticket.history)))
    kept = sum(int(mask.sum()) for mask in ticket.masks.values())
    assert 0 < kept < sum(mask.numel() for mask in ticket.masks.values())

    with ticket.apply(model):
        assert all(int(torch.count_nonzero(dict(model.named_parameters())[name][~mask])) == 0
                   for name, mask in ticket.masks.items())
    assert all(torch.equal(value, weights[name]) for name, value in model.named_parameters())

    retrained = lottery.retrain(ticket, tiny_bert(num_labels=2, seed=0), data, epochs=1, lr=1e-3,
                                accelerator="cpu")
    parameters = dict(retrained.named_parameters())
    assert all(int(torch.count_nonzero(parameters[name].detach()[~mask])) == 0 for name, mask in ticket.masks.items())
    assert not torch.equal(parameters["classifier.weight"], weights["classifier.weight"])  # it trained


def test_the_example_notebook_runs():
    """examples/api.ipynb's code cells, in order, in this process (the README's example)."""
    notebook = json.loads((ROOT / "examples" / "api.ipynb").read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "examples/api.ipynb", "exec"), namespace)  # noqa: S102
    assert namespace["ticket"].history and namespace["pruned"] is not None


def test_the_readme_example_runs(tmp_path):
    """The README's Python API block, in this process (its ticket saved under tmp_path)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block.replace('"/tmp/my-ticket"', repr(str(tmp_path / "ticket"))), "README.md", "exec"),  # noqa: S102
         namespace)
    assert torch.allclose(namespace["pruned"](input_ids=namespace["data"][0]["input_ids"]).logits,
                          namespace["masked"], atol=1e-5)
