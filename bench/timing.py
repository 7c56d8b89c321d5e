"""Interleaved timing: one call of each workload per round, so background load hits all alike."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch


@dataclass
class Timings:
    """Per workload, the seconds of each timed call: wall clock and CPU time of this process (all threads)."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str, kind: str = "wall") -> float:
        return median(getattr(self, kind)[name])

    def ratio(self, numerator: str, denominator: str, kind: str = "wall") -> float:
        values = getattr(self, kind)
        return paired_ratio(values[numerator], values[denominator])

    def to_dict(self, *names: str) -> dict:
        names = names or tuple(self.wall)
        return {"wall_s": {n: self.wall[n] for n in names}, "cpu_s": {n: self.cpu[n] for n in names}}


def interleaved(workloads: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1, label: str = "") -> Timings:
    """Time `repeats` rounds after `warmup` untimed ones; every workload runs once per round.

    Round r runs the workloads rotated left by r (two workloads: A B, B A, ...), so each takes
    every position in turn, neighbours in the given order stay neighbours (except across the
    wrap), and with three or more no workload runs twice back to back.
    """
    names = list(workloads)
    timings = Timings({name: [] for name in names}, {name: [] for name in names})
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            cpu, start = time.process_time(), time.perf_counter()
            workloads[name]()
            synchronize()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            if round_index >= warmup:
                timings.wall[name].append(wall)
                timings.cpu[name].append(cpu)
        if label:
            if round_index < warmup:
                print(f"[bench] {label} warm-up round {round_index + 1}/{warmup}", file=sys.stderr, flush=True)
            else:
                summary = ", ".join(f"{n} {timings.wall[n][-1]:.3f}s (cpu {timings.cpu[n][-1]:.3f}s)" for n in names)
                print(f"[bench] {label} round {round_index - warmup + 1}/{repeats}: {summary}", file=sys.stderr, flush=True)
    return timings


def synchronize() -> None:
    """Wait for queued GPU work, so a workload's wall time covers its kernels (no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator/denominator (paired: same round, same background load)."""
    return median([a / b for a, b in zip(numerator, denominator, strict=True)])
