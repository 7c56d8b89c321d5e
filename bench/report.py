"""bench.json and bench.md, written atomically (temporary file in the same folder, then os.replace)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.flops import __doc__ as FLOPS_DOC
from lottery.io import write_text


def status(entry: dict, quick: bool) -> str:
    if entry["passed"] is None:
        return "info"
    if quick:
        return "n/a (quick)"
    return "pass" if entry["passed"] else "FAIL"


def markdown_table(rows: list[dict], quick: bool) -> str:
    lines = ["| measurement | value | target | pass/fail |", "|---|---|---|---|"]
    for entry in rows:
        cells = [entry["measurement"], entry["display"], entry["target"], status(entry, quick)]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def load_warning(meta: dict) -> str | None:
    """A warning when other processes loaded the CPU (load average above the core count)."""
    loads = []
    for text in (meta.get("load_before"), meta.get("load_after")):
        try:
            loads.append(float(str(text).split()[0]))
        except (ValueError, IndexError):
            pass
    cores = meta.get("cpu_count") or 0
    if not (loads and cores and max(loads) > cores):
        return None
    policy = str(meta.get("omp_wait_policy", "unset"))
    text = (
        f"**Warning: the machine was loaded by other processes (1-min load average up to {max(loads):.1f} on "
        f"{cores} cores; {meta['threads']} threads, OMP_WAIT_POLICY {policy}).** Times are inflated and ratios noisy"
    )
    if meta["threads"] > 1 and policy.lower() != "passive":
        text += (
            ": with several OpenMP threads and the default (spinning) wait policy, a spinning thread and the "
            "working one share the one free core, so every parallel op can cost a scheduler time slice, most "
            "harmful to workloads of many small ops. Rerun on an idle machine or with OMP_WAIT_POLICY=PASSIVE"
        )
    else:
        text += ". Rerun on an idle machine"
    return text + " before trusting pass/fail."


def markdown(result: dict) -> str:
    meta = result["meta"]
    quick = meta["quick"]
    summary = (
        f"{meta['date']} · {meta['model']} · batch {meta['batch_size']} x {meta['seq_len']} tokens · "
        f"{meta.get('device', 'CPU, ' + str(meta['threads']) + ' threads')} · median of {meta['repeats']} interleaved repeats after {meta['warmup']} warm-up "
        f"(training section) · OMP_WAIT_POLICY {meta.get('omp_wait_policy', 'unset')} · torch {meta['torch']}, transformers {meta['transformers']} · "
        f"load average {meta['load_before']} -> {meta['load_after']} · {meta['wall_s']:.0f} s"
    )
    header = ["# bert-lottery speed benchmark", "", summary, ""]
    if quick:
        header += ["**Quick mode** (tiny random BERT, small batch; a smoke test): the targets are for MiniLM and are not judged.", ""]
    warning = load_warning(meta)
    if warning:
        header += [warning, ""]
    ratios = (
        "Ratios are medians of per-round ratios, both sides timed in the same round (wall clock; judged). "
        "The cpu-time ratio uses this process's CPU time (all threads) instead. A training step is forward + "
        "backward + AdamW step in train mode. In 2a/2b the masked full model carries the same gates as the "
        "pruned ticket."
    )
    flops = "\n".join("    " + line if line.strip() else "" for line in FLOPS_DOC.strip().splitlines()[1:])
    notes = ["", ratios, "", "FLOPs:" + flops]
    return "\n".join([*header, markdown_table(result["rows"], quick), *notes]) + "\n"


def write(result: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    json_path = write_text(out_dir / "bench.json", json.dumps(result, indent=2) + "\n")
    md_path = write_text(out_dir / "bench.md", markdown(result))
    return json_path, md_path
