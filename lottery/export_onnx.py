"""`python -m lottery.export_onnx FOLDER`: a ticket as ONNX, checked against PyTorch in onnxruntime.

    python -m lottery.export_onnx .../retrained/good/model [--out FILE] [--opset N]

FOLDER is a ticket's model folder (physically pruned tickets load with `lottery.pruning.load_pruned`).
The graph takes the model's inputs (input_ids, attention_mask and, where the model takes them,
token_type_ids; int64 [batch, sequence], both axes dynamic) and returns `logits`. It is exported
with torch's ONNX exporter (`torch.onnx.export(dynamo=True)`, the default since torch 2.9;
`--exporter torchscript` for the older one) to FOLDER/model.onnx unless `--out` says otherwise,
then run in onnxruntime (CPU) on batches of other shapes than the export's, with padding; the
largest absolute difference from PyTorch's logits is printed, and the command fails (exit 1,
nothing written) when it exceeds `--atol` (1e-4). Needs `pip install 'bert-lottery[export]'`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from lottery.errors import LotteryError
from lottery.models import forward_input_names

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CHECK_SHAPES = ((1, 7), (3, 19))  # (batch, sequence): neither is the export's (2, 16)
EXTERNAL_DATA_BYTES = 1 << 30  # weights beside the graph (model.onnx.data) above 1 GiB: protobuf's 2 GiB limit


class ExportError(LotteryError, RuntimeError):
    """The export cannot run here, or its graph does not compute what the model does."""


class LogitsOnly(nn.Module):
    """The model with named tensor inputs and its logits as the one output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def model_inputs(model: nn.Module) -> tuple[str, ...]:
    """The inputs of `INPUTS` that the model's forward takes (DistilBERT, decoders: no token types)."""
    names = forward_input_names(model)
    return tuple(name for name in INPUTS if names is None or name in names)


def example_batch(model: nn.Module, inputs: tuple[str, ...], batch: int, length: int, seed: int = 0) -> tuple:
    """Random token ids; the last row padded at its end (attention mask 0), as real batches are."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, int(model.config.vocab_size), (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    if length > 2:
        mask[-1, length // 2:] = 0
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return tuple(tensors[name] for name in inputs)


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as error:
        raise ExportError(f"{error.name} is not installed: pip install 'bert-lottery[export]' "
                          "(onnx, onnxruntime, onnxscript)") from None
    return onnxruntime


@contextlib.contextmanager
def _exporter_chatter_silenced() -> Iterator[None]:
    """The dynamo exporter's notes that say nothing about this export: operators of torchvision
    (not installed) it skips, that the inputs' shared axes keep one name each, and a deprecation
    inside torch's own pytree code."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"# The axis name: \w+ will not be used")
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        registration.setLevel(level)


def export(model: nn.Module, path: Path, opset: int | None = None, exporter: str = "dynamo") -> None:
    """Write `model` (eval mode, CPU) to `path` as ONNX with dynamic batch and sequence axes."""
    with _exporter_chatter_silenced():
        _export(model, path, opset, exporter)


def _export(model: nn.Module, path: Path, opset: int | None, exporter: str) -> None:
    inputs = model_inputs(model)
    wrapped = LogitsOnly(model).eval()
    example = example_batch(model, inputs, 2, 16)
    if exporter == "dynamo":
        from torch.export import Dim

        axes = {0: Dim("batch"), 1: Dim("sequence")}
        big = sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_BYTES
        torch.onnx.export(wrapped, example, str(path), dynamo=True, input_names=list(inputs), output_names=["logits"],
                          opset_version=opset, dynamic_shapes={name: axes for name in inputs},
                          external_data=big, verbose=False)
    else:
        axes = {name: {0: "batch", 1: "sequence"} for name in inputs} | {"logits": {0: "batch"}}
        torch.onnx.export(wrapped, example, str(path), dynamo=False, input_names=list(inputs), output_names=["logits"],
                          opset_version=opset, dynamic_axes=axes)


def max_difference(model: nn.Module, path: Path) -> float:
    """The largest |logit difference| between onnxruntime running `path` and `model`, over batches
    of `CHECK_SHAPES`."""
    onnxruntime = _require_onnx()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = model_inputs(model)
    worst = 0.0
    for seed, (batch, length) in enumerate(CHECK_SHAPES, start=1):
        tensors = example_batch(model, inputs, batch, length, seed)
        with torch.inference_mode():
            expected = LogitsOnly(model)(*tensors).numpy()
        (found,) = session.run(["logits"], {name: t.numpy() for name, t in zip(inputs, tensors)})
        worst = max(worst, float(abs(found - expected).max()))
    return worst


def export_checked(folder: Path, out: Path | None = None, opset: int | None = None, exporter: str = "dynamo",
                   atol: float = 1e-4) -> tuple[Path, float]:
    """Export the ticket in `folder` and check it; writes `out` (default FOLDER/model.onnx) only if
    its outputs match PyTorch's within `atol`. Returns (the file, the largest difference)."""
    from lottery.pruning import load_ticket

    _require_onnx()
    model = load_ticket(folder).to("cpu", torch.float32).eval()
    out = Path(out) if out is not None else Path(folder) / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".onnx-") as staging:
        staged = Path(staging) / out.name  # the same name, so that external weights keep their reference
        try:
            export(model, staged, opset, exporter)
        except Exception as error:  # the exporter's own errors are long: one line, and what to try
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            other = "torchscript" if exporter == "dynamo" else "dynamo"
            raise ExportError(f"torch.onnx.export ({exporter}) failed: {type(error).__name__}: {first}; try "
                              f"--exporter {other}") from error
        difference = max_difference(model, staged)
        if not difference <= atol:
            raise ExportError(f"the ONNX graph's logits differ from PyTorch's by up to {difference:.3g} (> --atol "
                              f"{atol:g}); nothing written")
        for produced in Path(staging).iterdir():
            os.replace(produced, out.parent / produced.name)
    return out, difference


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lottery.export_onnx", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a ticket's model folder (.../retrained/<ticket>/model)")
    parser.add_argument("--out", type=Path, default=None, help="the .onnx file (default: FOLDER/model.onnx)")
    parser.add_argument("--opset", type=int, default=None, help="the ONNX opset (default: the exporter's)")
    parser.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest accepted |logit difference| (1e-4)")
    args = parser.parse_args(argv)
    try:
        path, difference = export_checked(args.folder, args.out, args.opset, args.exporter, args.atol)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (LotteryError, FileNotFoundError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {path}; onnxruntime vs PyTorch logits, batches {', '.join(f'{b}x{t}' for b, t in CHECK_SHAPES)}: "
          f"max abs diff {difference:.2e} (<= {args.atol:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
