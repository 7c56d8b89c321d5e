"""Measurement 12: the project's fine-tune against a plain PyTorch loop doing the same work.

Both sides start from the same weights and train on the same batches (the data module's seeded
order for each epoch of the recipe), with the same AdamW recipe (weight-decay groups), linear
schedule, gradient clipping and precision, then score the dev split (the first `eval_examples` of
it) in batches of recipe.eval_batch_size.

- The project: what the fine-tune stage (`pipeline.training.fit`) runs, save excluded:
  `resumable_fit` (a Lightning fit with its checkpoints every recipe.checkpoint_every_n_steps,
  exact-resume state, epoch order, CSV logger and progress bar) and `evaluate` (a Lightning
  validate), from the composed config as `python -m lottery` composes it.
- The plain loop, as a user would write it: a DataLoader over the same batches, padded with
  `pad_sequence` from tensors made once, torch's AdamW with its defaults for the device (for_loop
  on a CPU, foreach on a GPU), `for batch in loader: loss.backward(); clip; step`, then the dev set
  under inference_mode into the same metrics. No logging, checkpoints or checks.

On a CPU both sides end with byte-identical weights and the same dev metrics (recorded in the row;
speed.adamw=foreach gives the same numbers as for_loop there). Variants of the project's side
(other `speed` settings) run in the same interleaved rounds, so each setting's effect is measured
against the same plain loop.
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


def make_run(model: str, epochs: int, train_examples: int, eval_examples: int, extra: list[str], root: Path):
    """A Run of STS-B (the `make run` task) on `model` (minilm | tiny | a BERT-layout folder),
    writing under `root`."""
    from pipeline.run import make_run as pipeline_run

    if model in ("minilm", "tiny"):
        model_overrides = [f"model={model}"]
    else:  # a folder, e.g. the random bert-base-sized model of bench/device_checks.sh
        model_overrides = ["model=custom", f"model.name_or_path={model}", "model.id=bench_model"]
    trainer = "gpu" if RUNTIME.device.startswith("cuda") else "cpu"
    overrides = [*model_overrides, "task=stsb", f"trainer={trainer}", f"recipe.max_epochs={epochs}",
                 f"data.train_limit={train_examples}", f"data.eval_limit={eval_examples}",
                 f"paths.root={root}",
                 f"trainer.precision={'bf16-mixed' if RUNTIME.bf16 else '32-true'}",
                 f"protocol.precision={'bf16' if RUNTIME.bf16 else 'fp32'}", *extra]  # on a GPU the two must agree
    return pipeline_run(compose(overrides))


def project_finetune(run, start: torch.nn.Module) -> tuple[torch.nn.Module, dict]:
    """`pipeline.training.fit` without saving the model: resumable fit, then dev metrics."""
    from pipeline import training

    folder = Path(tempfile.mkdtemp(prefix="fit-", dir=run.settings.paths.root))
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

    recipe, device = run.settings.recipe, torch.device(RUNTIME.device)
    data = training.datamodule(run)
    data.setup()
    train, dev = data.splits["train"], data.splits[run.task.eval_splits[0]]
    pad_id = run.tokenizer.pad_token_id or 0
    sampler = EpochBatchSampler(train.lengths, int(recipe.batch_size), run.seed, batching=str(run.settings.data.batching))
    pinned = device.type == "cuda"
    collate = _Pad(train, pad_id, run.task.is_regression)

    model = copy.deepcopy(start).to(device)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, eps=recipe.adam_eps)
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


# Every speed setting at its slow end (data.pin_memory only matters on a GPU).
ALL_OFF = ["speed.adamw=for_loop", "speed.finite_check_every_n_steps=1", "speed.log_every_step=true",
           "data.pin_memory=false", "callbacks.progress_bar.min_interval_s=0"]
# One setting off at a time (on the tiny model, where the overhead is all there is).
EACH_OFF = {
    "adamw=for_loop": ["speed.adamw=for_loop"],
    "finite check every step": ["speed.finite_check_every_n_steps=1"],
    "self.log every step": ["speed.log_every_step=true"],
    "Rich bar, drawn every batch": ["+callbacks.progress_bar.rich=true", "callbacks.progress_bar.min_interval_s=0"],
    "Rich bar, throttled (default in a terminal)": ["+callbacks.progress_bar.rich=true"],
}


def fine_tunes(model: str, epochs: int, train_examples: int, eval_examples: int, repeats: int,
               variants: dict[str, list[str]]) -> tuple[dict, object, dict]:
    """The plain loop, the project's fine-tune with the default settings ("project") and with each
    variant's overrides, interleaved: `repeats` rounds after one warm-up round. Returns the
    details, the Timings and the last round's (model, dev metrics) of each."""
    root = Path(tempfile.mkdtemp(prefix="bench-fine-tunes-"))
    try:
        return _fine_tunes(model, epochs, train_examples, eval_examples, repeats, variants, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _fine_tunes(model: str, epochs: int, train_examples: int, eval_examples: int, repeats: int,
                variants: dict[str, list[str]], root: Path) -> tuple[dict, object, dict]:
    from pipeline.training import datamodule, pretrained_model

    runs = {"project": make_run(model, epochs, train_examples, eval_examples, [], root)}
    runs.update({name: make_run(model, epochs, train_examples, eval_examples, extra, root)
                 for name, extra in variants.items()})
    start = pretrained_model(runs["project"]).to(RUNTIME.device)
    last: dict[str, tuple[torch.nn.Module, dict]] = {}

    def side(name, finetune, run):
        def go():
            last[name] = finetune(run, start)
        return go

    workloads = {"plain": side("plain", plain_finetune, runs["project"])}
    workloads.update({name: side(name, project_finetune, run) for name, run in runs.items()})
    data = datamodule(runs["project"])
    data.setup()  # tokenised once here (cached for the process), not in the first timed fine-tune
    steps = epochs * -(-len(data.splits["train"]) // int(runs["project"].settings.recipe.batch_size))
    log(f"{model}: the project's fine-tune vs a plain loop, {epochs} epochs x {train_examples} STS-B examples "
        f"({steps} steps), dev {eval_examples}; variants: {', '.join(variants) or 'none'}")
    started = time.perf_counter()
    times = interleaved(workloads, repeats, 1, label=f"fine-tunes {model}")
    details = {"model": model, "epochs": epochs, "train_examples": train_examples, "eval_examples": eval_examples,
               "steps": steps, "variants": variants, "measured_s": time.perf_counter() - started,
               "median_s": {name: times.median(name) for name in workloads},
               "max_weight_difference_to_plain": {name: _max_difference(last[name][0], last["plain"][0])
                                                  for name in runs},
               "dev_metrics": {name: last[name][1] for name in last}, **times.to_dict()}
    return details, times, last


def _ratios(times, numerator: str, denominator: str) -> list[float]:
    return sorted(a / b for a, b in zip(times.wall[numerator], times.wall[denominator], strict=True))


def _as_logged(metrics: dict) -> dict:
    """Metrics rounded to float32, as Lightning's self.log stores them."""
    return {name: float(torch.tensor(value, dtype=torch.float32)) for name, value in metrics.items()}


def fit_vs_plain_row(key: str, label: str, details: dict, times, target: float | None) -> dict:
    """The project's fine-tune (default settings) / the plain loop; with "all_off" among the
    variants, also the same with every speed setting off (the state before issue 17's levers)."""
    ratio = times.ratio("project", "plain")
    values = _ratios(times, "project", "plain")
    difference = details["max_weight_difference_to_plain"]["project"]
    text = (f"{ratio:.3f} (min {values[0]:.3f}; {details['steps']} steps: project {times.median('project'):.2f} s, "
            f"plain {times.median('plain'):.2f} s; weights {'identical' if difference == 0 else f'differ by {difference:.2g}'}")
    extra = {}
    if "all_off" in times.wall:
        off = times.ratio("all_off", "plain")
        text += f"; speed settings off: {off:.3f}"
        extra["all_off_ratio"] = off
    return row(key, label, ratio, text + ")", f"<= {target:.2f}" if target else "information",
               ratio <= target if target else None, min_ratio=values[0],
               identical_weights=difference == 0, cpu_time_ratio=times.ratio("project", "plain", "cpu"),
               same_dev_metrics=_as_logged(details["dev_metrics"]["project"]) == _as_logged(details["dev_metrics"]["plain"]),
               **extra, **details)


def levers_row(key: str, label: str, details: dict, times) -> dict:
    """Each variant's fine-tune / the default fine-tune (> 1: the default is faster)."""
    effects = {name: times.ratio(name, "project") for name in details["variants"]}
    text = "; ".join(f"{name} {value:.3f}" for name, value in effects.items())
    return row(key, label, None, text, "information", None, effects=effects, **details)
