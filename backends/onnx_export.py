"""torch -> ONNX for the static vision encoder (the common first step of the ORT and QNN backends)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch

from edgevlm.backends.base import BackendError
from edgevlm.third_party import quiet_loggers
from edgevlm.export.vision import INPUT_NAMES, OUTPUT_NAMES

OPSET = 18


def export_onnx(encoder: torch.nn.Module, example: dict[str, np.ndarray], path: Path) -> Path:
    """Export with torch.export (dynamo) at the example's static shapes; one self-contained file."""
    args = tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES)
    try:
        # The exporter prints progress lines to stdout; keep our own output clean.
        with contextlib.redirect_stdout(io.StringIO()), quiet_loggers("torch.onnx"):
            program = torch.onnx.export(encoder, args, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                        opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    except Exception as e:
        raise BackendError(f"ONNX export of the vision encoder failed: {e}",
                           "report the failing op; as a way out try another recipe precision") from None
    program.save(str(path), external_data=False)
    return path




def external_data_files(path: Path) -> list[Path]:
    """The side files an ONNX model's initializers live in (an exporter moves weights out of a
    model above protobuf's 2 GiB limit): they ship, and are checksummed, with the model."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = {entry.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
             for entry in t.external_data if entry.key == "location"}
    return [Path(path).with_name(n) for n in sorted(names)]


def remove_onnx(path: Path) -> None:
    """Delete a model and its external-data files."""
    path = Path(path)
    if path.exists():
        for extra in external_data_files(path):
            extra.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
