"""The protocol keys that reproduce the authors' training around the search (conf/protocol), each
against a hand computation on the tiny model: a test here fails if its key's value is ignored."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import pytest
import torch

from pipeline.run import make_run
from pipeline.training import datamodule
from tests.helpers import compose_config, tiny_overrides


def _train_batches(tmp_path, tiny_glue, *overrides: str) -> tuple[list[list[int]], int, int]:
    run = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "task=rte", *overrides)))
    data = datamodule(run)
    data.setup("fit")
    return list(data.train_dataloader().batch_sampler), len(data.train_dataset), run.settings.data.batch_size


def test_batching_is_the_authors_random_sampler_under_both_presets(tmp_path, tiny_glue):
    # src/run_glue.py:154: RandomSampler over the training set, cut into consecutive batches
    for preset in ("paper", "clean"):
        batches, n, size = _train_batches(tmp_path, tiny_glue, f"protocol={preset}", "seed=3")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(3 + 0)).tolist()  # epoch 0
        assert batches == [order[i:i + size] for i in range(0, n, size)], preset
    grouped, _, _ = _train_batches(tmp_path, tiny_glue, "protocol.batching=length_grouped", "seed=3")
    assert grouped != batches and sorted(map(sorted, grouped)) != sorted(map(sorted, batches))


def _attention_outputs(model, batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of every layer's attention block in one forward of `batch`."""
    seen = []
    hooks = [layer.attention.register_forward_hook(lambda module, args, output: seen.append((args[0], output[0])))
             for layer in model.bert.encoder.layer]
    with torch.no_grad():
        logits = model(**{key: value for key, value in batch.items() if key != "labels"}).logits
    for hook in hooks:
        hook.remove()
    return seen, logits


def test_empty_layer_bias_drop_leaves_layernorm_of_the_input_masked_pruned_and_saved(tiny_model, tiny_batch, tmp_path):
    # src/model_bert.py:285-296: every head of a layer pruned -> self.output.dense = None, and
    # BertSelfOutput.forward (268-275) returns LayerNorm(input_tensor): no projection, no bias
    from lottery.masks import StructuredMasks
    from lottery.pruning import load_pruned, prune_structure, save_pruned

    masks = StructuredMasks(torch.tensor([[0.0, 0, 0, 0], [1, 0, 1, 1]]), torch.tensor([1.0, 1]))
    norm = tiny_model.bert.encoder.layer[0].attention.output.LayerNorm
    bias = tiny_model.bert.encoder.layer[0].attention.output.dense.bias
    with torch.no_grad():
        bias.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))  # a random init's biases are 0
    logits = {}
    for choice, expected in (("drop", lambda x: norm(x)), ("keep", lambda x: norm(x + bias))):
        with masks.attach(tiny_model, choice):
            seen, logits[choice] = _attention_outputs(tiny_model, tiny_batch)
        layer_input, layer_output = seen[0]
        torch.testing.assert_close(layer_output, expected(layer_input), rtol=0, atol=1e-6)
        pruned = prune_structure(copy.deepcopy(tiny_model), masks, choice)
        _, pruned_logits = _attention_outputs(pruned, tiny_batch)
        torch.testing.assert_close(pruned_logits, logits[choice], rtol=0, atol=1e-5)
        assert (pruned.bert.encoder.layer[0].attention.output.dense.bias is None) == (choice == "drop")
        loaded = load_pruned(save_pruned(pruned, tmp_path / choice))  # the exported ticket reproduces it
        torch.testing.assert_close(_attention_outputs(loaded, tiny_batch)[1], logits[choice], rtol=0, atol=1e-5)
    assert not torch.allclose(logits["drop"], logits["keep"], atol=1e-4)


def test_empty_layer_bias_follows_the_protocol_into_the_tickets(tmp_path, tiny_glue, tiny_model, monkeypatch):
    import pipeline.tickets
    from lottery.masks import StructuredMasks

    monkeypatch.setattr(pipeline.tickets, "load_finetuned", lambda run: copy.deepcopy(tiny_model))
    masks = StructuredMasks(torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1]]), torch.tensor([1.0, 1]))
    for preset, expected in (("paper", "drop"), ("clean", "keep")):
        run = make_run(compose_config(tiny_overrides(tmp_path, tiny_glue, "experiment=structured", "task=rte",
                                                     f"protocol={preset}")))
        assert run.settings.tickets.empty_layer_bias == expected
        ticket = pipeline.tickets.StructuredTickets.runnable(run, masks)
        assert (ticket.bert.encoder.layer[0].attention.output.dense.bias is None) == (expected == "drop")
        hooks = pipeline.tickets.StructuredTickets.pruned_module(run, masks).model.bert.encoder.layer[0]
        assert len(hooks.attention.output.dense._forward_hooks) == (expected == "drop")


def test_random_accumulation_retrains_the_magnitude_random_ticket_in_accumulated_halves(tmp_path, tiny_glue,
                                                                                    monkeypatch):
    # src/train_with_masks.sh, "Magnitude pruning - Random" (lines 282-305): per_gpu_train_batch_size 16,
    # gradient_accumulation_steps 2 (good and bad: 32 x 1); run_glue.py:263-285 divides each loss by 2 and
    # clips and steps once per 2 batches. Here: the trainer and the data each retraining gets (a fit of
    # the tiny model costs seconds; Lightning's accumulate_grad_batches does the rest).
    import pipeline.training
    from lottery.magnitude import WeightMasks
    from lottery.magnitude.eligibility import eligible_parameters
    from pipeline.tickets import WeightTickets

    class Recorded(Exception):
        pass

    seen = []

    def recording(run, run_dir, module, job_type, callbacks=None, data=None, **overrides):
        trainer = pipeline.training.make_trainer(run, run_dir, job_type, callbacks, **overrides)
        data = data or pipeline.training.datamodule(run)
        data.setup("fit")
        sizes = [len(batch) for batch in data.train_dataloader().batch_sampler]
        seen.append((job_type, sizes, trainer.accumulate_grad_batches))
        raise Recorded

    monkeypatch.setattr(pipeline.training, "resumable_fit", recording)
    for preset in ("paper", "clean"):
        run = make_run(compose_config(tiny_overrides(tmp_path / preset, tiny_glue, "experiment=magnitude", "task=rte",
                                                     f"protocol={preset}", "data.train_limit=16")))
        masks = WeightMasks.ones_like(eligible_parameters(pipeline.training.pretrained_model(run)))
        for kind in ("good", "random"):
            with pytest.raises(Recorded):
                WeightTickets.retrain(run, tmp_path / preset / kind, masks, kind)
    # 16 examples, recipe batch 8: the paper's random ticket in 4 batches of 4, accumulated by 2 (2 steps)
    assert seen == [("retrained-good", [8, 8], 1), ("retrained-random", [4, 4, 4, 4], 2),
                    ("retrained-good", [8, 8], 1), ("retrained-random", [8, 8], 1)]


def test_random_pairing_scores_the_seed_42_draw_pruned_and_the_model_seed_draw_retrained(tmp_path, tiny_glue,
                                                                                         tiny_model, monkeypatch):
    # src/franken_bert.py:860-865/894-898 (pruned row): np.random.rand with numpy seeded 42 (--seed's
    # default, set at 372 and again after each model at 918), for every model seed alike;
    # src/run_glue.py:758-763/797-801 (retrained row): the same Bernoulli rule, numpy seeded with the
    # model's --seed (711). Here the same rule from our sampler: torch.rand of a generator seeded so.
    import pipeline.tickets
    from lottery.masks import StructuredMasks
    from lottery.schema import Ticket
    from pipeline.modes.structured import draw, draw_retrained
    from pipeline.tickets import StructuredTickets, draw_tickets, score_tickets

    good = StructuredMasks(torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 0]]), torch.tensor([1.0, 0]))

    def bernoulli(seed: int) -> tuple[list, list]:  # heads first, then MLPs, from one generator
        generator = torch.Generator().manual_seed(seed)
        head = (torch.rand(8, generator=generator) < 4 / 8).float().view(2, 4)
        return head.int().tolist(), (torch.rand(2, generator=generator) < 1 / 2).int().tolist()

    assert bernoulli(42) != bernoulli(3)  # the two draws differ at this size
    used = []
    monkeypatch.setattr(StructuredTickets, "pruned_module", staticmethod(lambda run, masks: masks))
    monkeypatch.setattr(pipeline.tickets, "evaluate",
                        lambda run, masks, run_dir, job: used.append((job, masks.head.int().tolist(),
                                                                      masks.mlp.int().tolist())) or {"accuracy": 0.5})
    monkeypatch.setattr(StructuredTickets, "retrain", staticmethod(
        lambda run, run_dir, masks, kind: used.append((f"retrained-{kind}", masks.head.int().tolist(),
                                                       masks.mlp.int().tolist())) or {"accuracy": 0.5}))
    for preset, pruned_seed in (("paper", 42), ("clean", 3)):
        run = make_run(compose_config(tiny_overrides(tmp_path / preset, tiny_glue, "experiment=structured",
                                                     "task=rte", f"protocol={preset}", "seed=3",
                                                     "tickets.sampling=bernoulli", "tickets.kinds=[random]",
                                                     "tickets.cost=false")))
        folder = tmp_path / preset / "tickets"
        tickets = draw_tickets(run, StructuredTickets, folder, draw(run, good, tiny_model), tiny_model)
        own = draw_tickets(run, StructuredTickets, folder, draw_retrained(run, good, tiny_model), tiny_model,
                           retrained=True)
        used.clear()
        scored = score_tickets(run, tmp_path / preset, StructuredTickets, tickets, tiny_model, retrained_masks=own)
        assert used == [("pruned-random", *bernoulli(pruned_seed)), ("retrained-random", *bernoulli(3))], preset
        ticket = Ticket(**json.loads(json.dumps(asdict(scored["random"]))))  # as results.json holds it
        assert (ticket.head_mask, ticket.mlp_mask) == bernoulli(pruned_seed)
        retrained = ticket.as_retrained()
        assert (retrained.head_mask, retrained.mlp_mask) == bernoulli(3)
        if preset == "paper":
            assert ticket.retrained_mask["mask_file"] == "tickets/random_retrained.json"
            saved = StructuredMasks.load_json(folder / "random_retrained.json")
            assert (saved.head.int().tolist(), saved.mlp.int().tolist()) == bernoulli(3)
            assert retrained.heads_kept == sum(map(sum, bernoulli(3)[0])) and retrained.mask_file.endswith("_retrained.json")
        else:
            assert ticket.retrained_mask is None and not (folder / "random_retrained.json").exists()


def test_super_random_is_drawn_again_for_each_seed_from_super_good_and_bad(tmp_path, tiny_glue, tiny_model):
    # src/compute_super_masks.py:120-147: for each seed of a task, the middling (random) mask is drawn
    # again (random.sample, line 141-142) from the elements in neither super-good nor super-bad, resized
    # to super-good's size; clean: super_random.json, one draw per task. Here the resizing by hand:
    # drop random members of the pool, or add random elements not in it (generator seeded seed + 0).
    from lottery.masks import StructuredMasks
    from pipeline.modes.super import draw

    good = StructuredMasks(torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0]]), torch.tensor([1.0, 0]))
    bad = StructuredMasks(torch.tensor([[0.0, 0, 0, 0], [0, 0, 1, 1]]), torch.tensor([0.0, 1]))
    once = StructuredMasks(torch.tensor([[0.0, 0, 0, 1], [1, 0, 0, 0]]), torch.tensor([1.0, 0]))
    for kind, masks in (("good", good), ("bad", bad), ("random", once)):
        masks.save_json(tmp_path / f"super_{kind}.json")

    def by_hand(seed: int) -> tuple[list, list]:
        head = torch.zeros(8)
        head[torch.tensor([2, 3, 4, 5])] = 1  # in neither: 4 for 2 -> drop 2 of them
        head[torch.tensor([2, 3, 4, 5])[torch.randperm(4, generator=torch.Generator().manual_seed(seed))[:2]]] = 0
        mlp = torch.zeros(2)  # in neither: none for 1 -> add 1 of the 2 MLPs
        mlp[torch.randperm(2, generator=torch.Generator().manual_seed(seed))[:1]] = 1
        return head.view(2, 4).int().tolist(), mlp.int().tolist()

    drawn = {}
    for preset, seed in (("paper", 3), ("paper", 4), ("clean", 3)):
        run = make_run(compose_config(tiny_overrides(tmp_path / preset, tiny_glue, "experiment=super", "task=rte",
                                                     f"protocol={preset}", f"seed={seed}", f"super.dir={tmp_path}")))
        random = draw(run, None, tiny_model)["random"]()
        drawn[preset, seed] = random.head.int().tolist(), random.mlp.int().tolist()
    assert drawn["paper", 3] == by_hand(3) and drawn["paper", 4] == by_hand(4)
    assert by_hand(3) != by_hand(4)  # the seeds draw different masks at this size
    assert drawn["clean", 3] == (once.head.int().tolist(), once.mlp.int().tolist())
