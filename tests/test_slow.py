"""Minutes-long checks on the packaged MiniLM and the real GLUE files (`make test-all`)."""

import pytest
import torch
from scipy.stats import spearmanr

from lottery.features import PadCollator, load_tokenized
from lottery.importance import compute_importance
from lottery.masks import StructuredMasks
from lottery.models import load_classifier, minilm_path
from lottery.tasks import get_task
from pipeline import train
from pipeline.config import SHARED_GLUE
from tests.helpers import compose_config, finetune_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_glue("RTE", "STS-B"),
]


def test_minilm_fine_tunes_on_a_slice_of_real_rte(tmp_path):
    cfg = compose_config(["task=rte", "model=minilm", f"paths.root={tmp_path}", f"data.glue_dir={SHARED_GLUE}",
                          "data.train_limit=256", "data.eval_limit=128", "recipe.max_epochs=1",
                          "trainer.enable_progress_bar=false"])
    metrics = train(cfg)
    assert 0.3 <= metrics["accuracy"] <= 1.0
    assert (finetune_dir(tmp_path, "rte", model="minilm") / "model" / "model.safetensors").is_file()


def reference_head_importance(model, batches):
    """Michel et al. written out independently: a gate per head multiplies the context inside a
    hand-made hook on each self-attention module; accumulate |dL/dgate| over batches."""
    layers = model.bert.encoder.layer
    heads = model.config.num_attention_heads
    gates = torch.ones(len(layers), heads, requires_grad=True)
    handles = []
    for index, layer in enumerate(layers):
        def hook(module, args, output, index=index):
            context = output[0]
            shaped = context.view(*context.shape[:-1], heads, -1) * gates[index][:, None]
            return (shaped.view(context.shape), *output[1:])
        handles.append(layer.attention.self.register_forward_hook(hook))
    total = torch.zeros(len(layers), heads)
    model.eval()
    for batch in batches:
        loss = model(**batch).loss
        (grad,) = torch.autograd.grad(loss, gates)
        total += grad.abs()
    for handle in handles:
        handle.remove()
    return total


def test_head_importance_matches_an_independent_implementation_on_minilm():
    from transformers import AutoTokenizer

    task = get_task("stsb")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    dev = load_tokenized(task, "dev", tokenizer, 128, SHARED_GLUE, None).subset(range(128))
    collate = PadCollator(tokenizer.pad_token_id, regression=True)
    batches = [collate([dev[i] for i in range(start, start + 32)]) for start in range(0, 128, 32)]
    torch.manual_seed(0)
    model = load_classifier(minilm_path(), num_labels=1)
    ours = compute_importance(model, StructuredMasks.for_model(model), batches, accumulate="per_batch")["head_raw"]
    reference = reference_head_importance(model, batches)
    assert spearmanr(ours.flatten(), reference.flatten())[0] >= 0.99
    assert torch.allclose(ours.float(), reference, rtol=1e-4, atol=1e-8)
