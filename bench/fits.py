"""Measurements that need whole training runs rather than single steps.

9.  a Lightning fit with the exact-resume state (callbacks.exact_resume.ExactResume and the
    data module's resumable batch position) saved at every checkpoint vs the same fit without
    it, checkpointing every 2 steps in both                               target <= 1.02
10. two training jobs in parallel on the same cores, each given its share of the CPUs
    (pipeline.threads), vs the same two jobs one after the other with all cores each
                                                                           target <= 1.15
    and, for contrast, the same two jobs in parallel oversubscribed (all cores each)  information
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from bench.measurements import _timing_details, row
from bench.timing import interleaved
from bench.workloads import PROJECT_ROOT, RUNTIME, clone_model, log, make_batch
from callbacks.exact_resume import ExactResume
from lightning_modules.glue_module import GlueModule


class _Batches(pl.LightningDataModule):
    """A fixed list of batches; `resume_at` is what ExactResume calls on resume (unused here)."""

    def __init__(self, batches: list[dict]) -> None:
        super().__init__()
        self.batches = batches

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        pass


def _fit(model, batches: list[dict], exact_resume: bool, folder: Path) -> None:
    callbacks = [ModelCheckpoint(dirpath=str(folder), save_last=True, save_top_k=0, every_n_train_steps=2)]
    if exact_resume:
        callbacks.insert(0, ExactResume())
    trainer = pl.Trainer(max_epochs=1, accelerator="gpu" if RUNTIME.device.startswith("cuda") else "cpu",
                         devices=1, precision="bf16-mixed" if RUNTIME.bf16 else "32-true", logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=callbacks)
    trainer.fit(GlueModule(model, "rte"), datamodule=_Batches(batches))


def resumable_state(model, batch_size: int, seq_len: int, steps: int, repeats: int) -> list[dict]:
    """Measurement 9: a fit of `steps` training steps with and without the exact-resume state."""
    batches = [{k: v.cpu() for k, v in make_batch(batch_size, seq_len, seed=i).items()} for i in range(steps)]
    start_state = clone_model(model).cpu().state_dict()
    folder = Path(tempfile.mkdtemp(prefix="bench-resume-"))

    def run(exact_resume: bool):
        def fit():
            fresh = clone_model(model)
            fresh.load_state_dict(start_state)
            _fit(fresh, batches, exact_resume, folder / ("on" if exact_resume else "off"))
        return fit

    log(f"resumable state: fits of {steps} steps with / without ExactResume, checkpoint every 2 steps")
    times = interleaved({"resume_on": run(True), "resume_off": run(False)}, repeats, 1, label="resumable state")
    ratio = times.ratio("resume_on", "resume_off")
    return [row("resumable_state", f"9. fit of {steps} steps, checkpoint every 2: exact-resume state saved / not saved",
                ratio, f"{ratio:.3f}", "<= 1.02", ratio <= 1.02, steps=steps,
                **_timing_details(times, "resume_on", "resume_off"))]


WORKER = """
import sys, time, torch
from bench.workloads import TrainStep, load_model, make_batch
torch.set_num_threads(int(sys.argv[1]))
quick, steps = sys.argv[2] == "quick", int(sys.argv[3])
model = load_model(quick)
step = TrainStep(model, make_batch(int(sys.argv[4]), int(sys.argv[5])))
step()  # warm-up
start = time.perf_counter()
for _ in range(steps):
    step()
print(time.perf_counter() - start)
"""


def _jobs(threads: int, parallel: bool, quick: bool, steps: int, batch_size: int, seq_len: int) -> float:
    """Wall time of two training jobs (subprocesses), at the same time or one after the other."""
    command = [sys.executable, "-c", WORKER, str(threads), "quick" if quick else "full", str(steps),
               str(batch_size), str(seq_len)]
    start = time.perf_counter()
    if parallel:
        running = [subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE) for _ in range(2)]
        for process in running:
            process.communicate()
    else:
        for _ in range(2):
            subprocess.run(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, check=True)
    return time.perf_counter() - start


def parallel_jobs(cores: int, quick: bool, steps: int, batch_size: int, seq_len: int, repeats: int) -> list[dict]:
    """Measurement 10: two jobs sharing `cores` cores, given their share vs oversubscribed vs in turn."""
    from pipeline.threads import available_cpus

    share = max(1, cores // 2)
    log(f"two training jobs of {steps} steps: parallel with {share} thread(s) each, parallel with {cores}, "
        f"one after the other with {cores} (available CPUs: {available_cpus()})")
    timings: dict[str, list[float]] = {"shared": [], "oversubscribed": [], "sequential": []}
    for _ in range(repeats):
        timings["sequential"].append(_jobs(cores, False, quick, steps, batch_size, seq_len))
        timings["shared"].append(_jobs(share, True, quick, steps, batch_size, seq_len))
        timings["oversubscribed"].append(_jobs(cores, True, quick, steps, batch_size, seq_len))
    median = {name: sorted(values)[len(values) // 2] for name, values in timings.items()}
    shared = median["shared"] / median["sequential"]
    over = median["oversubscribed"] / median["sequential"]
    details = {"median_s": median, "wall_s": timings, "steps": steps, "threads_each_shared": share}
    return [
        row("parallel_shared", f"10a. two jobs in parallel, {share} thread(s) each (their share) / one after the other "
            f"({cores} threads each)", shared, f"{shared:.3f}", "<= 1.15", shared <= 1.15, **details),
        row("parallel_oversubscribed", f"10b. two jobs in parallel, {cores} threads each (oversubscribed) / one after "
            f"the other", over, f"{over:.3f}", "information", None, **details),
    ]
