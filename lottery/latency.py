"""`python -m lottery.latency FOLDER`: how fast a ticket runs against its base model.

    python -m lottery.latency outputs/minilm/stsb/seed1337/structured-paper-<hash>/retrained/good/model \
        --device cpu --batch-sizes 1,32 --seq-len 128

FOLDER is a ticket's model folder (physically pruned, or a magnitude ticket's dense one). The base
is the architecture it was cut from, built from its config.json (the base model's shapes, random
weights: latency does not depend on the weights' values), or `--base FOLDER_OR_HUB_ID`. Both run
on the same random batches, interleaved, in this process (`lottery.cost.ticket_cost`); the table
gives each batch size's median forward latency, parameters, encoder FLOPs and the speed-ups.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from lottery.cost import ticket_cost
from lottery.errors import ConfigError, LotteryError


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-sizes takes integers separated by commas, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batch-sizes must be positive integers, got {text!r}")
    return sizes


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible here; use --device cpu")
    return torch.device(name)


def measure(folder: Path, base: str | None, device: torch.device, batch_sizes: Sequence[int], seq_len: int,
            repeats: int, warmup: int) -> dict:
    """`ticket_cost` of the ticket in `folder` against its base, on `device`."""
    from lottery.pruning import load_ticket, unpruned_architecture

    ticket = load_ticket(folder)
    if base is None:
        reference, base_name = unpruned_architecture(folder), "its unpruned architecture (config.json)"
    else:
        from lottery.models import load_classifier

        reference, base_name = load_classifier(base, ticket.config.num_labels).eval(), base
    cost = ticket_cost(reference.to(device), ticket.to(device), batch_sizes=batch_sizes, seq_len=seq_len,
                       repeats=repeats, warmup=warmup)
    return {"ticket": str(folder), "base": base_name, **cost}


def _millions(count: float) -> str:
    return f"{count / 1e6:.2f}M"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(cost: dict) -> str:
    """The measurement as a Markdown table: base, ticket, speed-up per row."""
    full, pruned, speedup = cost["full"], cost["pruned"], cost["speedup"]
    rows = [("parameters", _millions(full["params"]), _millions(pruned["params"]), speedup["params"]),
            ("encoder parameters", _millions(full["encoder_params"]), _millions(pruned["encoder_params"]),
             speedup["encoder_params"]),
            ("encoder GFLOPs per sequence", f"{full['flops_per_example'] / 1e9:.3f}",
             f"{pruned['flops_per_example'] / 1e9:.3f}", speedup["flops"])]
    rows += [(f"latency, batch {size} (ms)", f"{1e3 * seconds:.2f}", f"{1e3 * pruned['latency_s'][size]:.2f}",
              speedup["latency"][size]) for size, seconds in full["latency_s"].items()]
    settings = (f"device {cost['device']}, {cost['threads']} threads, sequence length {cost['seq_len']}, "
                f"median of {cost['repeats']} runs after {cost['warmup']} warm-up")
    lines = [f"ticket: {cost['ticket']}", f"base:   {cost['base']}", settings, "",
             "| | base | ticket | speed-up |", "|---|---|---|---|"]
    lines += [f"| {name} | {base} | {ticket} | {_ratio(ratio)} |" for name, base, ticket, ratio in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lottery.latency", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a ticket's model folder (.../retrained/<ticket>/model)")
    parser.add_argument("--base", default=None, help="the base model's folder or hub id (default: the ticket's "
                                                     "unpruned architecture, from its config.json)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 32], help="e.g. 1,32 (default)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per batch size (the median is shown)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: torch's own)")
    parser.add_argument("--json", action="store_true", help="print the measurement as JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        if args.seq_len < 1:
            raise ConfigError(f"--seq-len must be positive, got {args.seq_len}")
        if args.threads:
            torch.set_num_threads(args.threads)
        cost = measure(args.folder, args.base, _device(args.device), args.batch_sizes, args.seq_len, args.repeats,
                       args.warmup)
    except (LotteryError, FileNotFoundError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(cost, indent=2) if args.json else table(cost))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
