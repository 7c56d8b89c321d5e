"""python -m lottery.report DIR [--out FOLDER] [--wandb] [--seed N] [--strict]"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lottery.errors import LotteryError
from lottery.report.build import write_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lottery.report",
        description="Tables, figures, stability statistics and super-survivor masks of a sweep.")
    parser.add_argument("dir", type=Path, help="sweep output folder; every results.json below it is read")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: DIR/report)")
    parser.add_argument("--wandb", action="store_true", help="also log tables and figures to a W&B run (job_type report)")
    parser.add_argument("--seed", type=int, default=0, help="seed for drawing super-random and super-bad masks")
    parser.add_argument("--strict", action="store_true", help="exit non-zero when any file had to be skipped")
    args = parser.parse_args(argv)
    try:
        outcome = write_report(args.dir, out=args.out, seed=args.seed)
    except LotteryError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"Wrote {len(outcome.written)} files under {outcome.out}:")
    for path in outcome.written:
        print(f"  {path.relative_to(outcome.out)}")
    if outcome.skipped:
        print(f"Skipped {len(outcome.skipped)} (listed in {outcome.out / 'skipped.md'}):", file=sys.stderr)
        for what, why in outcome.skipped:
            print(f"  {what}: {why}", file=sys.stderr)
    if args.wandb:
        from lottery.report.wandb_push import push_to_wandb

        push_to_wandb(outcome.out, outcome.written)
        print("Logged the tables and figures to W&B (job_type=report).")
    return 1 if args.strict and outcome.skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
