"""Measurement 12: the project's fine-tune against a plain PyTorch loop doing the same work.

Both sides start from the same weights and train on the same batches (the data module's seeded
order for each epoch of the recipe), with the same AdamW (weight-decay groups; the implementation
that `speed.adamw` names), linear schedule, gradient clipping and precision, then score the dev
split (the first `eval_examples` of it) in batches of recipe.eval_batch_size.

- The project: what the fine-tune stage (`pipeline.training.fit`) runs, save excluded:
  `resumable_fit` (a Lightning fit with its checkpoints every recipe.checkpoint_every_n_steps,
  exact-resume state, epoch order, CSV logger and progress bar) and `evaluate` (a Lightning
  validate), from the composed config as `python -m lottery` composes it.
- The plain loop: a DataLoader over the same batches, padded with `pad_sequence` from tensors made
  once, `for batch in loader: loss.backward(); clip; step`, then the dev set under inference_mode
  into the same metrics. No logging, checkpoints or checks.

On a CPU both sides end with byte-identical weights and the same dev metrics (recorded in the row);
the ratio is then the project's overhead alone.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from bench.measurements import row
from bench.timing import interleaved
from bench.workloads import PROJECT_ROOT, RUNTIME, log

CONF = PROJECT_ROOT / "conf"


def compose(overrides: list[str]):
    """The project's config, composed as `python -m lottery` would with these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import pipeline.config  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def make_run(model: str, epochs: int, train_examples: int, eval_examples: int, extra: list[str]):
    """A Run of STS-B (the `make run` task) on `model` (minilm | tiny | a BERT-layout folder)."""
    from pipeline.run import make_run as pipeline_run

    if model in ("minilm", "tiny"):
        model_overrides = [f"model={model}"]
    else:  # a folder, e.g. the random bert-base-sized model of bench/device_checks.sh
        model_overrides = ["model=custom", f"model.name_or_path={model}", "model.id=bench_model"]
    trainer = "gpu" if RUNTIME.device.startswith("cuda") else "cpu"
    overrides = [*model_overrides, "task=stsb", f"trainer={trainer}", f"recipe.max_epochs={epochs}",
                 f"data.train_limit={train_examples}", f"data.eval_limit={eval_examples}",
                 f"paths.root={tempfile.mkdtemp(prefix='bench-fit-')}", *extra]
    if trainer == "gpu" and not RUNTIME.bf16:
        overrides.append("trainer.precision=32-true")
    return pipeline_run(compose(overrides))


def project_finetune(run, start: torch.nn.Module) -> tuple[torch.nn.Module, dict]:
    """`pipeline.training.fit` without saving the model: resumable fit, then dev metrics."""
    from pipeline import training

    folder = Path(tempfile.mkdtemp(prefix="bench-fit-run-"))
    try:
        module = training.recipe_module(run, copy.deepcopy(start))
        training.resumable_fit(run, folder, module, "finetune")
        metrics = training.evaluate(run, module, folder, "finetune-eval")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return module.model, metrics


class _Pad:
    """The collate function of a plain loop: per-example tensors made once, `pad_sequence` per batch."""

    def __init__(self, split, pad_token_id: int, regression: bool):
        self.input_ids = [torch.tensor(ids) for ids in split.input_ids]
        self.token_type_ids = [torch.tensor(ids) for ids in split.token_type_ids]
        self.labels = torch.tensor(split.labels, dtype=torch.float if regression else torch.long)
        self.pad_token_id = pad_token_id

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        input_ids = pad_sequence([self.input_ids[i] for i in indices], batch_first=True, padding_value=self.pad_token_id)
        lengths = torch.tensor([len(self.input_ids[i]) for i in indices])
        return {"input_ids": input_ids,
                "token_type_ids": pad_sequence([self.token_type_ids[i] for i in indices], batch_first=True),
                "attention_mask": (torch.arange(input_ids.shape[1]) < lengths[:, None]).long(),
                "labels": self.labels[indices]}


def plain_finetune(run, start: torch.nn.Module) -> tuple[torch.nn.Module, dict]:
    """The same fine-tune as a plain PyTorch loop."""
    from lightning_modules.metrics import TaskMetrics
    from lottery.samplers import EpochBatchSampler
    from pipeline import training

    recipe, device = run.cfg.recipe, torch.device(RUNTIME.device)
    data = training.datamodule(run)
    data.setup()
    train, dev = data.splits["train"], data.splits[run.task.eval_splits[0]]
    pad_id = run.tokenizer.pad_token_id or 0
    sampler = EpochBatchSampler(train.lengths, int(recipe.batch_size), run.seed, batching=str(run.cfg.data.batching))
    pinned = device.type == "cuda"
    collate = _Pad(train, pad_id, run.task.is_regression)

    model = copy.deepcopy(start).to(device)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    adamw = str(run.cfg.speed.adamw)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, eps=recipe.adam_eps,
                                  foreach=adamw == "foreach", fused=adamw == "fused")
    epochs = int(recipe.max_epochs)
    total = epochs * len(sampler)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup_ratio * total), total)
    clipped = [p for group in optimizer.param_groups for p in group["params"]]
    torch.manual_seed(run.seed)  # as resumable_fit seeds before its fit: the same dropout masks
    model.train()
    for epoch in range(epochs):
        loader = DataLoader(range(len(train)), batch_sampler=sampler.global_batches(epoch), collate_fn=collate,
                            pin_memory=pinned)
        for batch in loader:
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            with RUNTIME.autocast():
                loss = model(**batch).loss
            loss.backward()
            if recipe.grad_clip:
                torch.nn.utils.clip_grad_norm_(clipped, recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    model.eval()
    metrics = TaskMetrics(run.task).to(device)
    dev_collate = _Pad(dev, pad_id, run.task.is_regression)
    size = int(recipe.eval_batch_size)
    with torch.inference_mode():
        for start_index in range(0, len(dev), size):
            batch = dev_collate(list(range(start_index, min(start_index + size, len(dev)))))
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            with RUNTIME.autocast():
                metrics.update(0, model(**batch).logits, batch["labels"])
    return model, metrics.compute()


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((x.detach().float().cpu() - y.detach().float().cpu()).abs().max())
               for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def fit_vs_plain(key: str, label: str, model: str, epochs: int, train_examples: int, eval_examples: int,
                 repeats: int, target: float | None, extra: list[str] | None = None) -> dict:
    """One table row: the project's fine-tune / the plain loop, interleaved, `repeats` rounds after
    one warm-up round; the weights of the last round's two models compared."""
    from pipeline.training import pretrained_model

    run = make_run(model, epochs, train_examples, eval_examples, list(extra or []))
    start = pretrained_model(run).to(RUNTIME.device)
    steps = epochs * -(-min(train_examples, 10**9) // int(run.cfg.recipe.batch_size))
    last: dict[str, tuple[torch.nn.Module, dict]] = {}

    def side(name, finetune):
        def go():
            last[name] = finetune(run, start)
        return go

    log(f"{label}: project fine-tune vs plain loop, {epochs} epochs of {train_examples} STS-B examples, "
        f"dev {eval_examples}{', ' + ' '.join(extra) if extra else ''}")
    started = time.perf_counter()
    times = interleaved({"project": side("project", project_finetune), "plain": side("plain", plain_finetune)},
                        repeats, 1, label=label)
    ratio = times.ratio("project", "plain")
    difference = _max_difference(last["project"][0], last["plain"][0])
    same_metrics = last["project"][1] == last["plain"][1]
    wall = {name: times.median(name) for name in ("project", "plain")}
    values = sorted(a / b for a, b in zip(times.wall["project"], times.wall["plain"], strict=True))
    display = (f"{ratio:.3f} (min {values[0]:.3f}; project {wall['project']:.2f} s, plain {wall['plain']:.2f} s; "
               f"weights {'identical' if difference == 0 else f'differ by up to {difference:.2g}'})")
    return row(key, label, ratio, display, f"<= {target:.2f}" if target else "information",
               ratio <= target if target else None, steps=steps, epochs=epochs, train_examples=train_examples,
               eval_examples=eval_examples, overrides=list(extra or []), min_ratio=values[0],
               identical_weights=difference == 0, max_weight_difference=difference, same_dev_metrics=same_metrics,
               dev_metrics={name: last[name][1] for name in last}, measured_s=time.perf_counter() - started,
               cpu_time_ratio=times.ratio("project", "plain", "cpu"), median_s=wall, **times.to_dict())
