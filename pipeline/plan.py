"""`plan=true`: what a run would do, said before doing it, with nothing written.

The plan names the run's folders, says of each stage whether a finished result would be reused or
the stage would run, how many examples it would process, its FLOPs and its projected time on the
device at hand (`lottery.throughput`: 6 x non-embedding parameters x tokens to train, 2 x to
evaluate, over the rate `make bench` measured there); it only reads (the data files, to count them
and tokenise a sample; the model's config, to count its parameters without loading its weights;
the stages' records, to see what is finished; bench/results/throughput.json). Hydra's bookkeeping
of a planned run goes to the system's temporary folder (`pipeline.config.writable_or_temporary`),
so the output root is left as it was. A sweep's plans end with their total (`sweep_total_line`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from lottery.errors import ConfigError, LotteryError
from lottery.features import tokenize
from lottery.glue_data import Examples, read_split
from lottery.throughput import format_flops, format_seconds, nearest_rate, read_rates, stage_flops
from pipeline.run import Run
from pipeline.settings import TicketRunSettings
from pipeline.stages import STAGE_FILE, STAGE_FORMAT

THROUGHPUT_FILE = Path(__file__).resolve().parent.parent / "bench" / "results" / "throughput.json"
TOKEN_SAMPLE = 256  # examples tokenised per split to estimate its mean length


def is_finished(folder: Path) -> bool:
    """Whether `folder` holds a finished stage's record (reused unless an input changed: run_stage)."""
    try:
        record = json.loads((folder / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("format") == STAGE_FORMAT and "metrics" in record


def _limited(run: Run, split: str, examples: Examples) -> Examples:
    """`examples` after data.train_limit / data.eval_limit."""
    data = run.settings.data
    limit = data.train_limit if split == "train" else data.eval_limit
    return examples if limit is None or limit >= len(examples) else examples.subset(list(range(limit)))


def model_parameters(run: Run) -> int:
    """Non-embedding parameters of the run's model, from its config: built on the meta device, so
    no weights are read or allocated."""
    from transformers import AutoModelForSequenceClassification

    from lottery.throughput import non_embedding_parameter_count

    with torch.device("meta"):
        return non_embedding_parameter_count(AutoModelForSequenceClassification.from_config(model_config(run)))


def model_config(run: Run):
    """The run's model config with the task's labels (a tiny random model's, or read from its folder)."""
    from transformers import AutoConfig

    from lottery.models import minilm_path, tiny_config

    model = run.settings.model
    if model.random_init:
        return tiny_config(model.family_name, num_labels=run.task.num_labels)
    source = str(model.name_or_path or minilm_path())
    try:
        return AutoConfig.from_pretrained(source, num_labels=run.task.num_labels)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"model {source}: its config is not readable ({first_line}); the run would fail the same "
                          "way: check model.name_or_path") from error


def current_device(run: Run) -> tuple[str, str]:
    """(the name of the device the run would use, bench's precision name: 32 | bf16)."""
    from lottery.cost import device_name

    execution = run.settings.execution
    on_gpu = str(execution.accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    device = torch.device("cuda", 0) if on_gpu else torch.device("cpu")
    return device_name(device), "bf16" if "bf16" in execution.lightning_precision else "32"


@dataclass
class Compute:
    """A stage's work: FLOPs and projected seconds (None: no rate measured here)."""

    flops: float | None  # None: not estimated (the model's config is not readable here)
    seconds: float | None

    def text(self) -> str:
        return format_flops(self.flops) + ("" if self.seconds is None else f", about {format_seconds(self.seconds)}")


class Projection:
    """Tokens per example (a tokenised sample), parameters and the measured rates of one run."""

    def __init__(self, run: Run, throughput_file: Path) -> None:
        self.run = run
        self.max_length = int(run.settings.data.max_length)
        self.examples: dict[str, Examples] = {}
        self.notes: list[str] = []
        try:
            self.params: int | None = model_parameters(run)
        except LotteryError as error:  # e.g. a hub model offline: the plan still says what runs
            self.params = None
            self.notes.append(f"FLOPs not estimated: {error}")
        try:
            self.tokenizer = run.tokenizer
        except (OSError, ValueError, LotteryError) as error:
            self.tokenizer = None
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.notes.append(f"tokenizer not loadable ({reason}): {self.max_length} tokens per example, an upper bound")
        self.lengths: dict[str, float] = {}
        self.device, self.precision = current_device(run)
        entries = read_rates(throughput_file).get(self.device, [])
        self.rate = None if self.params is None else nearest_rate(entries, self.params, self.precision)

    def split(self, split: str) -> Examples:
        if split not in self.examples:
            examples = read_split(self.run.task, split, self.run.settings.data.glue_dir)
            self.examples[split] = _limited(self.run, split, examples)
        return self.examples[split]

    def mean_length(self, split: str) -> float:
        """Mean tokens per example of `split`, from up to TOKEN_SAMPLE evenly spaced examples (or
        data.max_length, an upper bound, where the tokenizer cannot be loaded)."""
        if split not in self.lengths:
            examples = self.split(split)
            if self.tokenizer is None or not len(examples):
                self.lengths[split] = float(self.max_length)
            else:
                step = max(1, len(examples) // TOKEN_SAMPLE)
                sample = examples.subset(list(range(0, len(examples), step))[:TOKEN_SAMPLE])
                ids = tokenize(sample, self.tokenizer, self.max_length).input_ids
                self.lengths[split] = sum(len(row) for row in ids) / len(ids)
        return self.lengths[split]

    def tokens(self, split: str, examples: int | None = None) -> float:
        n = len(self.split(split)) if examples is None else examples
        return n * self.mean_length(split)

    def compute(self, train_tokens: float = 0.0, eval_tokens: float = 0.0, params: int | None = None) -> Compute | None:
        """FLOPs and projected time of training on `train_tokens` and evaluating `eval_tokens` with a
        model of `params` non-embedding parameters (default the run's); None where they are unknown."""
        params = self.params if params is None else params
        if params is None:
            return None
        train, evaluation = stage_flops("train", params, train_tokens), stage_flops("eval", params, eval_tokens)
        seconds = None
        if self.rate is not None:
            seconds = train / self.rate["train_flops_per_s"] + evaluation / self.rate["eval_flops_per_s"]
        return Compute(train + evaluation, seconds)

    def header(self) -> list[str]:
        if self.params is None:
            return [f"  {note}" for note in self.notes]
        lengths = ", ".join(f"{split} {length:.1f}" for split, length in self.lengths.items())
        lines = [(f"  compute: {self.params:,} non-embedding parameters; mean tokens per example {lengths} "
                  f"(a sample of <= {TOKEN_SAMPLE}, at most {self.max_length}); FLOPs = 6 x parameters x tokens "
                  "to train, 2 x to evaluate"),
                 *(f"  {note}" for note in self.notes)]
        if self.rate is None:
            lines.append(f"  no throughput measured on {self.device} (precision {self.precision}): run make bench")
            return lines
        rate = self.rate
        threads = f", {rate['threads']} threads" if rate.get("threads") else ""
        lines.append(f"  time projected from make bench on {self.device} ({rate.get('date', 'undated')}, {rate['model']}, "
                     f"{rate['params']:,} parameters, precision {rate['precision']}{threads}): train "
                     f"{rate['train_flops_per_s']:.3g} FLOP/s, eval {rate['eval_flops_per_s']:.3g} FLOP/s; compute only "
                     "(start-up, loading and tokenising not counted)")
        return lines


@dataclass
class SweepTotal:
    """What the plans of this process added up to (a sweep's jobs run in-process under Hydra's
    basic launcher)."""

    jobs: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    unprojected: int = 0  # jobs without a measured rate
    unestimated: int = 0  # jobs whose model config was not readable

    def reset(self) -> None:
        self.jobs, self.flops, self.seconds, self.unprojected, self.unestimated = 0, 0.0, 0.0, 0, 0

    def add(self, flops: float | None, seconds: float | None) -> None:
        self.jobs += 1
        if flops is None:
            self.unestimated += 1
        else:
            self.flops += flops
        if seconds is None:
            self.unprojected += 1
        else:
            self.seconds += seconds


SWEEP = SweepTotal()


def sweep_total_line() -> str | None:
    """The total of a sweep's plans (None for fewer than two planned jobs)."""
    if SWEEP.jobs < 2:
        return None
    flops = format_flops(SWEEP.flops) + (f" ({SWEEP.unestimated} jobs not estimated)" if SWEEP.unestimated else "")
    time = (f"about {format_seconds(SWEEP.seconds)} one job after another" if not SWEEP.unprojected
            else f"time not projected for {SWEEP.unprojected} jobs (their plans say why)")
    return (f"sweep plan: {SWEEP.jobs} jobs, {flops} in the stages that run (reused ones count 0), {time}; "
            "searches' iterations not included")


def plan_lines(run: Run, throughput_file: Path = THROUGHPUT_FILE) -> list[str]:
    """The plan of one run, one line per stage and its compute."""
    lines, _ = plan_run(run, throughput_file)
    return lines


def plan_run(run: Run, throughput_file: Path = THROUGHPUT_FILE) -> tuple[list[str], Compute]:
    """The plan's lines and the total compute of the stages that would run."""
    settings = run.settings
    projection = Projection(run, throughput_file)
    epochs = settings.recipe.max_epochs
    first_dev = run.task.eval_splits[0]
    train = len(projection.split("train"))
    dev = sum(len(projection.split(split)) for split in run.task.eval_splits)
    selection_split = "train" if settings.search.split != "dev" else first_dev
    selection = len(projection.split(first_dev))  # a held-out or subset slice is as large as the first dev split
    if settings.search.split == "train_holdout":
        train -= selection
    dev_tokens = sum(projection.tokens(split) for split in run.task.eval_splits)
    train_tokens = projection.tokens("train", train) * epochs
    fitting = f"{train} training examples x {epochs} epochs, then {dev} dev examples"
    if settings.search.split == "train_holdout":
        fitting = f"the training examples less a seeded held-out slice x {epochs} epochs, then {dev} dev examples"
    selecting = (f"{dev} dev examples per evaluation" if settings.search.split == "dev"
                 else f"a seeded slice of the training examples ({settings.search.split}) per evaluation")
    selection_tokens = projection.tokens(selection_split, selection)
    totals = Compute(None if projection.params is None else 0.0, None if projection.rate is None else 0.0)

    def line(name: str, folder: Path, work: str, compute: Compute | None = None, per_iteration: bool = False) -> str:
        stages = run.mode.stages
        redone = settings.force and (folder != run.finetune_dir or stages == "fine-tune")  # its own stages
        state = "reuse" if is_finished(folder) and not redone else "run  "
        text = f"  {state} {name:<18} {folder}" + ("" if state == "reuse" else f"  ({work})")
        if compute is not None and state != "reuse" and totals.flops is not None:
            text += f"\n          {'per iteration: ' if per_iteration else ''}{compute.text()}"
            if not per_iteration:
                totals.flops += compute.flops
                if totals.seconds is not None and compute.seconds is not None:
                    totals.seconds += compute.seconds
        return text

    fine_tune = projection.compute(train_tokens, dev_tokens)
    lines = [(f"plan of {run.mode.name} on {settings.model.id} / {run.task.name} / seed {run.seed} "
              "(nothing is written; without plan=true it runs):"),
             line("fine-tune", run.finetune_dir, fitting, fine_tune)]
    if run.mode.stages != "fine-tune":
        lines.insert(1, f"  folder {run.experiment_dir}")
    if run.mode.stages != "fine-tune" and isinstance(settings, TicketRunSettings):
        if "search" in run.mode.stages:
            # structured: an importance pass (forward and backward) and an evaluation per iteration;
            # imp: a fine-tune and an evaluation per round; magnitude: an evaluation per step
            iteration = {"structured": projection.compute(selection_tokens, selection_tokens),
                         "imp": projection.compute(train_tokens, selection_tokens)}.get(
                run.mode.name, projection.compute(0.0, selection_tokens))
            lines.append(line("search", run.experiment_dir / "search", selecting, iteration, per_iteration=True))
        for kind in settings.tickets.kinds:
            lines.append(line(f"{kind} pruned", run.experiment_dir / "pruned" / kind, f"{dev} dev examples",
                              projection.compute(0.0, dev_tokens)))
            if settings.tickets.retrain:
                kept = ticket_parameters(run, projection, kind)
                lines.append(line(f"{kind} retrained", run.experiment_dir / "retrained" / kind,
                                  fitting, projection.compute(train_tokens, dev_tokens, kept)))
            if settings.tickets.cost:
                lines.append(line(f"{kind} cost", run.experiment_dir / "cost" / kind,
                                  f"timed batches of {list(settings.cost.batch_sizes)} x {settings.cost.seq_len} "
                                  "tokens"))
    if run.mode.stages != "fine-tune":
        results = run.experiment_dir / "results.json"
        lines.append(f"  results {results}" + (" (exists)" if results.is_file() else ""))
    lines[1:1] = projection.header()
    if totals.flops is None:
        lines.append("  total of the stages that run: not estimated")
        return "\n".join(lines).splitlines(), totals
    if totals.seconds is not None:
        total_time = f", about {format_seconds(totals.seconds)} on {projection.device}"
    else:
        total_time = f"; no throughput measured on {projection.device}: run make bench"
    lines.append(f"  total of the stages that run: {format_flops(totals.flops)}{total_time}"
                 + ("; plus the search's iterations" if "search" in run.mode.stages and run.mode.stages != "fine-tune"
                    and not is_finished(run.experiment_dir / "search") else ""))
    return "\n".join(lines).splitlines(), totals  # a stage's compute is a line of its own


def ticket_parameters(run: Run, projection: Projection, kind: str) -> int:
    """Non-embedding parameters of a structured ticket retrained physically smaller, where its
    mask is already drawn; otherwise (weight tickets train at full size, masks not drawn yet) the
    full model's, an upper bound."""
    if run.mode.pruning != "structured" or projection.params is None:
        return projection.params
    path = run.experiment_dir / "tickets" / f"{kind}.json"
    if not path.is_file():
        return projection.params
    from transformers import AutoModelForSequenceClassification

    from lottery.accounting import encoder_parameter_count, structured_size
    from lottery.masks import StructuredMasks

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(model_config(run))
    masks = StructuredMasks.load_json(path, expected_shape=StructuredMasks.for_model(model).shape)
    return projection.params - encoder_parameter_count(model) + structured_size(model, masks)["params_kept"]
