"""Every supported family on its tiny random model: masks, gradients, physical pruning, accounting,
magnitude eligibility, save/load, FLOPs, and the self-contained adapter module.

What the tests compare against is written here by hand (layer lists, projection names, expected
parameter names, gating hooks), not taken from `lottery.architectures`."""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from lottery.accounting import encoder_parameter_count, structured_size
from lottery.architectures import ArchitectureError
from lottery.cost import flops_per_example, masks_flops
from lottery.importance import compute_importance, gate_gradients
from lottery.magnitude import WeightMasks, eligible_parameters, global_magnitude_step, sparsity_report
from lottery.masks import StructuredMasks, attach_masks
from lottery.models import (
    TINY_FAMILIES,
    ModelLayoutError,
    encoder_layers,
    forward_inputs,
    load_classifier,
    model_shape,
    tiny_bert,
    tiny_model,
)
from lottery.patterns import PatternError, attention_features
from lottery.pruning import load_pruned, prune_structure, save_pruned

DECODERS = ("llama", "mistral", "qwen2")
NO_TOKEN_TYPES = ("distilbert", "modernbert", *DECODERS)

# By hand, per family: the layers, the attention output projection (its input: the units' contexts),
# the MLP's output linear, and the query heads per unit (the tiny decoders: 4 heads in 2 KV groups).
BASE = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "electra": "electra"}
PARTS = {
    **{family: ("attention.output.dense", "output.dense", 1) for family in BASE},
    "distilbert": ("attention.out_lin", "ffn.lin2", 1),
    "deberta-v2": ("attention.output.dense", "output.dense", 1),
    "modernbert": ("attn.Wo", "mlp.Wo", 1),
    **{family: ("self_attn.o_proj", "mlp.down_proj", 2) for family in DECODERS},
}


def layers_by_hand(model, family):
    if family in BASE:
        return getattr(model, BASE[family]).encoder.layer
    return {"distilbert": lambda: model.distilbert.transformer.layer, "deberta-v2": lambda: model.deberta.encoder.layer,
            "modernbert": lambda: model.model.layers}.get(family, lambda: model.model.layers)()


def batch_for(family, seed=0):
    """Four sequences of 20 tokens ([CLS] ... [SEP], two padded from position 14), with labels."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, 2000, (4, 20), generator=g)
    input_ids[:, 0], input_ids[:, -1] = 101, 102
    attention_mask = torch.ones(4, 20, dtype=torch.long)
    attention_mask[2:, 14:], input_ids[2:, 14:] = 0, 0
    input_ids[2:, 13] = 102
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.tensor([0, 1, 1, 0])}
    if family not in NO_TOKEN_TYPES:
        batch["token_type_ids"] = torch.zeros_like(input_ids)
    return batch


def outputs(model, batch, family):
    with torch.no_grad():
        output = model(**batch)
    return output.logits, output.loss


def random_masks(shape, seed, empty_layer=0, removed_mlp=1):
    """Random 0/1 unit gates with one layer left without units and one MLP removed."""
    g = torch.Generator().manual_seed(seed)
    head = torch.randint(0, 2, shape, generator=g).float()
    head[empty_layer] = 0
    head[1 - empty_layer, int(torch.randint(0, shape[1], (1,), generator=g))] = 1  # the other layer keeps one
    mlp = torch.ones(shape[0])
    mlp[removed_mlp] = 0
    return StructuredMasks(head, mlp)


families = pytest.mark.parametrize("family", TINY_FAMILIES)


@families
@pytest.mark.parametrize("layout", [(0, 1), (1, 0)])
def test_pruned_model_equals_masked_model(family, layout):
    model = tiny_model(family, seed=1)
    batch = batch_for(family)
    masks = random_masks(model_shape(model), seed=sum(map(ord, family)) + layout[0], empty_layer=layout[0],
                         removed_mlp=layout[1])
    with attach_masks(model, masks):
        masked_logits, masked_loss = outputs(model, batch, family)
        size = structured_size(model, masks)
        prune_structure(model, masks)  # with the hooks still attached: they keep working
        hooked_logits, _ = outputs(model, batch, family)
    logits, loss = outputs(model, batch, family)
    assert (logits - masked_logits).abs().max() <= 1e-5 and (loss - masked_loss).abs() <= 1e-5
    assert (hooked_logits - masked_logits).abs().max() <= 1e-5
    assert encoder_parameter_count(model) == size["params_kept"] == sum(
        p.numel() for p in layers_by_hand(model, family).parameters())
    assert size["heads_kept"] == masks.num_heads_kept and size["mlps_kept"] == masks.num_mlps_kept
    expected = {"heads": [[u for u in range(masks.shape[1]) if masks.head[layer, u] == 1] for layer in range(2)],
                "mlps": masks.mlp.int().tolist()}
    assert model.config.pruned_structure == expected


@families
def test_structured_size_is_the_pruned_models_real_parameter_count(family):
    model = tiny_model(family)
    full = sum(p.numel() for p in layers_by_hand(model, family).parameters())
    ones = StructuredMasks.for_model(model)
    assert structured_size(model, ones)["params_kept"] == structured_size(model, ones)["params_total"] == full
    for seed in range(3):
        masks = random_masks(model_shape(model), seed, empty_layer=seed % 2, removed_mlp=(seed + 1) % 2)
        size = structured_size(model, masks)
        pruned = prune_structure(tiny_model(family), masks)
        assert size["params_kept"] == sum(p.numel() for p in layers_by_hand(pruned, family).parameters())
        assert size["params_total"] == full
        # pruning again by a smaller mask: sizes of the pruned model agree with the full one's
        keep = torch.rand(masks.shape, generator=torch.Generator().manual_seed(seed)) > 0.5
        smaller = StructuredMasks(masks.head * keep, masks.mlp * 0)
        assert structured_size(pruned, smaller) == structured_size(tiny_model(family), smaller)


def own_gate_gradients(model, family, masks, batch):
    """dL/dgate with gates multiplied in by hooks written here: a pre-hook on the attention output
    projection (each unit's slice of its input) and a hook on the MLP's output linear."""
    out_path, mlp_path, _ = PARTS[family]
    head = masks.head.clone().requires_grad_(True)
    mlp = masks.mlp.clone().requires_grad_(True)
    hooks = []
    for index, layer in enumerate(layers_by_hand(model, family)):
        def gate_units(module, args, index=index):
            (context,) = args
            width = context.shape[-1] // head.shape[1]
            return (context * head[index].repeat_interleave(width),)

        def gate_mlp(module, args, output, index=index):
            return output * mlp[index]

        hooks.append(layer.get_submodule(out_path).register_forward_pre_hook(gate_units))
        hooks.append(layer.get_submodule(mlp_path).register_forward_hook(gate_mlp))
    try:
        loss = model(**batch).loss
        return torch.autograd.grad(loss, [head, mlp])
    finally:
        for hook in hooks:
            hook.remove()


@families
def test_gate_gradients_equal_an_independent_autograd_computation(family):
    model = tiny_model(family, seed=2)
    batch = batch_for(family, seed=1)
    masks = StructuredMasks.for_model(model)
    masks.head[0, 1] = 0
    masks.mlp[1] = 0
    head, mlp, _, _ = gate_gradients(model, masks, batch)
    own_head, own_mlp = own_gate_gradients(model, family, masks, batch)
    assert head.shape == masks.shape and bool(head.abs().sum() > 0) and bool(mlp.abs().sum() > 0)
    torch.testing.assert_close(head, own_head, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(mlp, own_mlp, rtol=1e-4, atol=1e-7)


class _OldBertHeadGate:
    """The head hook bert-lottery had before the adapters: a forward hook on `attention.self`."""

    def __init__(self, gates, layer):
        self.gates, self.layer = gates, layer

    def __call__(self, module, args, output):
        context = output[0]
        head_dim = module.attention_head_size
        heads = context.reshape(*context.shape[:-1], context.shape[-1] // head_dim, head_dim)
        gate = self.gates[self.layer].to(dtype=context.dtype)
        return ((heads * gate.unsqueeze(-1)).reshape(context.shape), *output[1:])


def test_bert_head_gate_is_bit_identical_to_the_old_hook_on_attention_self():
    model = tiny_bert(num_labels=2, seed=0)
    batch = batch_for("bert")
    masks = StructuredMasks.for_model(model)
    masks.head[1, 2] = 0
    head, mlp, logits, _ = gate_gradients(model, masks, batch)
    gates = masks.head.clone().requires_grad_(True)
    mlp_gates = masks.mlp.clone().requires_grad_(True)
    hooks = []
    for index, layer in enumerate(model.bert.encoder.layer):
        hooks.append(layer.attention.self.register_forward_hook(_OldBertHeadGate(gates, index)))
        hooks.append(layer.output.dropout.register_forward_hook(
            lambda module, args, output, index=index: output * mlp_gates[index]))
    output = model(**batch)
    old_head, old_mlp = torch.autograd.grad(output.loss, [gates, mlp_gates])
    for hook in hooks:
        hook.remove()
    assert torch.equal(logits, output.logits.detach())
    assert torch.equal(head, old_head) and torch.equal(mlp, old_mlp)


def eligible_by_hand(family):
    """Parameter names of one layer that magnitude pruning may touch (no MLP output bias)."""
    bert_like = ["attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
                 "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
                 "attention.output.dense.weight", "attention.output.dense.bias", "intermediate.dense.weight",
                 "intermediate.dense.bias", "output.dense.weight"]
    if family in BASE:
        return f"{BASE[family]}.encoder.layer.{{i}}.", bert_like
    if family == "distilbert":
        return "distilbert.transformer.layer.{i}.", [
            "attention.q_lin.weight", "attention.q_lin.bias", "attention.k_lin.weight", "attention.k_lin.bias",
            "attention.v_lin.weight", "attention.v_lin.bias", "attention.out_lin.weight", "attention.out_lin.bias",
            "ffn.lin1.weight", "ffn.lin1.bias", "ffn.lin2.weight"]
    if family == "deberta-v2":
        return "deberta.encoder.layer.{i}.", [
            "attention.self.query_proj.weight", "attention.self.query_proj.bias", "attention.self.pos_query_proj.weight",
            "attention.self.pos_query_proj.bias", "attention.self.key_proj.weight", "attention.self.key_proj.bias",
            "attention.self.pos_key_proj.weight", "attention.self.pos_key_proj.bias",
            "attention.self.value_proj.weight", "attention.self.value_proj.bias", "attention.output.dense.weight",
            "attention.output.dense.bias", "intermediate.dense.weight", "intermediate.dense.bias",
            "output.dense.weight"]
    if family == "modernbert":
        return "model.layers.{i}.", ["attn.Wqkv.weight", "attn.Wo.weight", "mlp.Wi.weight", "mlp.Wo.weight"]
    biases = family == "qwen2"  # Qwen2: q/k/v biases; no o_proj or MLP biases; Llama/Mistral: none
    return "model.layers.{i}.", [
        "self_attn.q_proj.weight", *(["self_attn.q_proj.bias"] if biases else []), "self_attn.k_proj.weight",
        *(["self_attn.k_proj.bias"] if biases else []), "self_attn.v_proj.weight",
        *(["self_attn.v_proj.bias"] if biases else []), "self_attn.o_proj.weight", "mlp.gate_proj.weight",
        "mlp.up_proj.weight", "mlp.down_proj.weight"]


@families
def test_magnitude_eligibility_is_exactly_the_attention_and_mlp_weights(family):
    model = tiny_model(family)
    prefix, names = eligible_by_hand(family)
    expected = [prefix.format(i=i) + name for i in range(2) for name in names]
    assert list(eligible_parameters(model)) == expected
    weights_only = [name for name in expected if name.endswith(".weight")]
    assert list(eligible_parameters(model, include_biases=False)) == weights_only
    params = eligible_parameters(model)
    masks = global_magnitude_step(params, WeightMasks.ones_like(params), 0.5)
    report = sparsity_report(masks, model)
    assert len(report["head_survival"]) == 2 and all(len(row) == model_shape(model)[1] for row in report["head_survival"])
    assert all(0 < value < 100 for row in report["head_survival"] for value in row)
    assert all(0 < value < 100 for value in report["mlp_survival"])


def test_a_fused_qkv_is_eligible_only_as_a_whole():
    model = tiny_model("modernbert")
    with pytest.raises(ValueError, match="fused"):
        eligible_parameters(model, roles=("attention.self.query", "intermediate.dense"))
    assert list(eligible_parameters(model, roles=("attention.self.query", "attention.self.key",
                                                     "attention.self.value"))) == [
        f"model.layers.{i}.attn.Wqkv.weight" for i in range(2)]


def test_unit_survival_follows_key_value_groups_and_fused_thirds():
    llama = tiny_model("llama")
    params = eligible_parameters(llama)
    cut = dict(WeightMasks.ones_like(params))
    cut["model.layers.0.self_attn.q_proj.weight"][32:64] = False  # group 1's two query heads
    cut["model.layers.0.self_attn.k_proj.weight"][16:32] = False  # group 1's KV head
    survival = sparsity_report(WeightMasks(cut), llama)["head_survival"][0]
    per_group = 64 * 32 + 2 * 64 * 16 + 64 * 32  # q rows, k and v rows, o columns
    assert survival == [100.0, pytest.approx(100.0 * (per_group - 64 * 32 - 64 * 16) / per_group)]
    modern = tiny_model("modernbert")
    cut = dict(WeightMasks.ones_like(eligible_parameters(modern)))
    cut["model.layers.1.attn.Wqkv.weight"][64 + 16: 64 + 32] = False  # head 1's key rows
    survival = sparsity_report(WeightMasks(cut), modern)["head_survival"][1]
    assert survival == [100.0, pytest.approx(75.0), 100.0, 100.0]


@families
def test_save_and_load_pruned_round_trip(family, tmp_path):
    model = tiny_model(family, seed=3)
    batch = batch_for(family)
    masks = random_masks(model_shape(model), seed=5)
    prune_structure(model, masks)
    expected, _ = outputs(model, batch, family)
    save_pruned(model, tmp_path / "pruned")
    loaded = load_pruned(tmp_path / "pruned")
    assert type(loaded) is type(model) and loaded.config.pruned_structure == model.config.pruned_structure
    assert torch.equal(outputs(loaded, batch, family)[0], expected)


@pytest.mark.parametrize("family", DECODERS)
def test_a_decoder_unit_is_a_key_value_group_with_its_query_heads(family):
    model = tiny_model(family)
    assert model_shape(model) == (2, 2) and model.config.num_attention_heads == 4
    prune_structure(model, StructuredMasks([[0, 1], [1, 1]], [1, 1]))
    attention = model.model.layers[0].self_attn
    assert (attention.q_proj.out_features, attention.k_proj.out_features, attention.v_proj.out_features,
            attention.o_proj.in_features) == (32, 16, 16, 32)
    assert torch.isfinite(outputs(model, batch_for(family), family)[0]).all()


def test_deberta_with_shared_position_keys_prunes_like_it_masks():
    model = tiny_model("deberta-v2", seed=4, share_att_key=True)
    assert not hasattr(model.deberta.encoder.layer[0].attention.self, "pos_key_proj")
    batch = batch_for("deberta-v2")
    masks = random_masks(model_shape(model), seed=2)
    with attach_masks(model, masks):
        expected, _ = outputs(model, batch, "deberta-v2")
    size = structured_size(model, masks)
    prune_structure(model, masks)
    assert (outputs(model, batch, "deberta-v2")[0] - expected).abs().max() <= 1e-5
    assert encoder_parameter_count(model) == size["params_kept"]


def test_flops_of_a_tiny_decoder_match_a_hand_computation():
    # Tiny Llama, T = 10 tokens, per layer: projections q 64x64, k and v 64x32, o 64x64 = 12,288
    # weights, 2 * 10 * 12,288 = 245,760; scores + context of 4 query heads of 16:
    # 4 * 2 * (2 * 100 * 16) = 25,600; SwiGLU MLP 3 x 64 x 128 weights: 2 * 10 * 24,576 = 491,520.
    model = tiny_model("llama")
    assert flops_per_example(model, seq_len=10) == 2 * (245_760 + 25_600 + 491_520)
    # Layer 0 keeps KV group 0 (2 query heads) and no MLP, layer 1 no group and its MLP.
    masks = StructuredMasks([[1, 0], [0, 0]], [0, 1])
    pruned = (245_760 // 2 + 25_600 // 2) + 491_520
    assert masks_flops(model.config, masks.head.tolist(), masks.mlp.tolist(), 10) == pruned
    prune_structure(model, masks)
    assert flops_per_example(model, seq_len=10) == masks_flops(model.config, masks.head.tolist(), masks.mlp.tolist(), 10)


@families
def test_importance_criteria_score_every_unit_and_batches_fit_the_model(family):
    model = tiny_model(family)
    batch = {**batch_for(family), "token_type_ids": torch.zeros(4, 20, dtype=torch.long)}  # as the collator makes
    assert ("token_type_ids" in forward_inputs(model, batch)) == (family not in NO_TOKEN_TYPES)
    masks = StructuredMasks.for_model(model)
    masks.head[1, 0] = 0
    for criterion in ("michel", "taylor", "weight_norm"):
        scores = compute_importance(model, masks, [batch], criterion)
        assert scores["head_raw"].shape == masks.shape and scores["mlp_raw"].shape == (2,)
        assert bool((scores["head_raw"][0] > 0).all()) and bool((scores["mlp_raw"] > 0).all()), criterion
        if criterion != "michel":  # dL/dgate need not vanish at a gate of 0; w * dL/dw and |w| x gate do
            assert scores["head_raw"][1, 0] == 0, criterion


@pytest.mark.parametrize("family", [f for f in TINY_FAMILIES if f not in DECODERS])
def test_attention_patterns_are_measured_on_every_encoder(family):
    batch = {**batch_for(family), "token_type_ids": torch.zeros(4, 20, dtype=torch.long)}
    features = attention_features(tiny_model(family), [batch], [101, 102], max_examples=2)
    assert features.shape == (2, 4)


def test_attention_patterns_refuse_decoders():
    with pytest.raises(PatternError, match="decoder"):
        attention_features(tiny_model("qwen2"), [batch_for("qwen2")], [101, 102])


UNSUPPORTED = {"GPT2Config": {"n_layer": 1, "n_head": 2, "n_embd": 8},
               "T5Config": {"num_layers": 1, "num_heads": 2, "d_model": 8, "d_kv": 4, "d_ff": 16}}


@pytest.mark.parametrize("config_class", sorted(UNSUPPORTED))
def test_an_unsupported_model_names_the_supported_families(config_class, tmp_path):
    import transformers

    config = getattr(transformers, config_class)(**UNSUPPORTED[config_class])
    config.save_pretrained(tmp_path)
    with pytest.raises(ModelLayoutError) as error:
        load_classifier(tmp_path, num_labels=2)
    for family in ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "deberta-v2", "modernbert", "llama",
                   "mistral", "qwen2"):
        assert family in str(error.value)
    assert isinstance(error.value, ArchitectureError) and isinstance(error.value, ValueError)
    if config_class == "GPT2Config":
        model = transformers.GPT2ForSequenceClassification(config)
        with pytest.raises(ModelLayoutError, match="modernbert"):
            encoder_layers(model)


def test_a_decoder_without_a_pad_token_gets_one(tmp_path):
    model = tiny_model("llama")
    model.config.pad_token_id = None
    model.save_pretrained(tmp_path)
    assert load_classifier(tmp_path, num_labels=2).config.pad_token_id == 102  # its eos
    assert load_classifier(tmp_path, num_labels=2, pad_token_id=7).config.pad_token_id == 7


def test_the_adapter_module_is_self_contained_and_works_as_a_copy(tmp_path, monkeypatch):
    from lottery import architectures

    text = Path(architectures.__file__).read_text()
    stdlib = set(sys.stdlib_module_names)
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            names = [node.module]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in stdlib | {"torch", "transformers"}, name
    copy = tmp_path / "lottery_architectures.py"
    copy.write_text(text)
    spec = importlib.util.spec_from_file_location("copied_architectures", copy)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "copied_architectures", module)  # as an import (or remote code) does
    spec.loader.exec_module(module)
    batch = batch_for("qwen2")
    reference, copied = tiny_model("qwen2"), tiny_model("qwen2")
    prune_structure(reference, StructuredMasks([[0, 1], [0, 0]], [0, 1]))
    module.prune_to(copied, [[1], []], [0, 1])
    assert copied.config.pruned_structure == reference.config.pruned_structure
    assert torch.equal(outputs(copied, batch, "qwen2")[0], outputs(reference, batch, "qwen2")[0])
    with pytest.raises(ValueError, match="Supported model types"):
        module.family_of(transformers_config("gpt2"))


def transformers_config(model_type):
    import transformers

    return transformers.AutoConfig.for_model(model_type)
