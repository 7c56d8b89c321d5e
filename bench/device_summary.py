"""The numbers of `bench/device_checks.sh bench` in one JSON and one markdown table (issue 17).

    python -m bench.device_summary --out OUT [--fine-tunes bench.json] [--packing packing.json]
        [--e2e-seconds S --e2e-exit RC --e2e-timeout T --e2e-root DIR]

A part that did not run (or timed out) is reported as such, never left out silently.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lottery.io import write_text

E2E_GOAL_S = 90.0
PACKED_USE_GOAL = 0.20


def _read(path: str | None) -> dict | None:
    if not path or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        return None


def _fine_tune_lines(bench: dict | None) -> list[str]:
    if bench is None:
        return ["| fine-tune / plain loop | not measured (no bench.json: the run failed or timed out) | <= 1.10 |"]
    lines = []
    for row in bench["rows"]:
        lines.append(f"| {row['measurement']} | {row['display']} | {row['target']} |")
    return lines


def _packing_lines(packing: dict | None) -> list[str]:
    if packing is None:
        return ["| matrix-rate use, bert-base-sized fine-tune | not measured (no packing.json) | >= 20% packed |"]
    lines = []
    for phase in packing["phases"]:
        lines.append(f"| matrix-rate use, bert-base-sized fine-tune, K = {phase['k']} "
                     f"({phase['workers_reporting']} reporting, {phase['late_workers']} late) | "
                     f"{100 * phase['matrix_rate_use']:.1f}% ({phase['tflops']:.1f} TFLOP/s, "
                     f"{phase['tokens_per_s']:.0f} tokens/s) | {'>= 20% packed' if phase['k'] > 1 else 'information'} |")
    return lines


def _e2e(args: argparse.Namespace) -> dict | None:
    if args.e2e_seconds is None:
        return None
    root = Path(args.e2e_root) if args.e2e_root else None
    results = sorted(str(p.relative_to(root)) for p in root.rglob("results.json")) if root and root.is_dir() else []
    stages = sorted(str(p.parent.relative_to(root)) for p in root.rglob("metrics.json")) if root and root.is_dir() else []
    timed_out = args.e2e_exit in (124, 137)
    return {"seconds": args.e2e_seconds, "exit": args.e2e_exit, "timed_out": timed_out, "timeout_s": args.e2e_timeout,
            "results": results, "finished_stages": stages, "goal_s": E2E_GOAL_S,
            "passed": args.e2e_exit == 0 and bool(results) and args.e2e_seconds <= E2E_GOAL_S}


def _e2e_line(e2e: dict | None) -> str:
    if e2e is None:
        return "| MiniLM STS-B structured experiment, end to end, solo | not run | <= 90 s |"
    if e2e["timed_out"]:
        value = f"> {e2e['timeout_s']:.0f} s (stopped by its timeout; {len(e2e['finished_stages'])} stages finished)"
    elif e2e["exit"] != 0:
        value = f"failed (exit {e2e['exit']} after {e2e['seconds']:.0f} s)"
    else:
        value = f"{e2e['seconds']:.0f} s"
    return f"| MiniLM STS-B structured experiment, end to end, solo | {value} | <= 90 s |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--fine-tunes")
    parser.add_argument("--packing")
    parser.add_argument("--e2e-seconds", type=float)
    parser.add_argument("--e2e-exit", type=int)
    parser.add_argument("--e2e-timeout", type=float)
    parser.add_argument("--e2e-root")
    parser.add_argument("--environment")
    args = parser.parse_args(argv)
    fine_tunes, packing, e2e = _read(args.fine_tunes), _read(args.packing), _e2e(args)
    environment = Path(args.environment).read_text().strip() if args.environment and Path(args.environment).is_file() else ""
    result = {"environment": environment, "fine_tunes": fine_tunes, "packing": packing, "e2e": e2e}
    lines = ["# bert-lottery on the GPU (bench/device_checks.sh bench)", "", "```", environment, "```", "",
             "| measurement | value | goal |", "|---|---|---|",
             *_fine_tune_lines(fine_tunes), *_packing_lines(packing), _e2e_line(e2e), ""]
    if fine_tunes:
        lines.append(f"Fine-tunes: {fine_tunes['meta']['device']}, median of {fine_tunes['meta']['repeats']} "
                     f"interleaved rounds after one warm-up round.")
    if packing:
        lines.append(f"Packing: {packing['seconds_per_phase']:.0f} s per phase; {packing['formula']}; "
                     f"use = rate / 790 TFLOP/s (dense bf16, H200).")
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "device_bench.json", json.dumps(result, indent=2) + "\n")
    write_text(args.out / "device_bench.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
