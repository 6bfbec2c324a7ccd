"""ONNX Runtime vision encoder: fp32, fp16 (weights and compute, fp32 I/O) and int8 (static QDQ).

The QDQ int8 form is the one ONNX Runtime's XNNPACK, NNAPI, CoreML and QNN execution providers
accelerate; on the CPU EP it runs as well. The intended EP and its options go in the manifest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgevlm.backends.base import BackendError, VisionExportRequest, WrittenArtifact, require
from edgevlm.backends.onnx_dtypes import ort_dtype_name
from edgevlm.backends.onnx_export import export_onnx, external_data_files, remove_onnx
from edgevlm.backends.ort_calibration import bounded_calibration
from edgevlm.export.vision import MASK_NEG

EXECUTION_PROVIDERS = ("CPUExecutionProvider", "XnnpackExecutionProvider", "CoreMLExecutionProvider",
                       "QNNExecutionProvider", "NnapiExecutionProvider")


# Reduce activation ranges one calibration batch at a time instead of holding every intermediate
# tensor of every batch: a full-size SigLIP at 1120 patches otherwise needs > 24 GB to calibrate.
# onnxruntime's `CalibStridedMinMax` merges ranges per stride. Its `CalibMaxIntermediateOutputs`
# must not be used: in onnxruntime 1.32 the MinMax calibrator drops the buffered outputs at each
# flush without reducing them first, so the ranges come from the last few batches only (the
# 2.6-tiny int8 encoder fell from 29 to 22 dB with it).
CALIBRATION_OPTIONS = {"CalibStridedMinMax": 1}


class CalibrationReader:
    """onnxruntime.quantization's data-reader protocol over a list of input dicts, with the
    `__len__`/`set_range` that strided calibration asks for."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._batches = batches
        self.set_range(0, len(batches))

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._batches[start_index:end_index])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self.set_range(0, len(self._batches))


def activation_matmuls(path: Path) -> list[str]:
    """MatMuls whose operands are both activations (attention scores and mixing).

    Their 8-bit activation ranges are wide and input-dependent, and they hold no weights to
    compress, so they stay float.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph  # names only: leave a large model's weights on disk
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


class OrtVisionBackend:
    name = "ort"
    emulated = False  # ONNX Runtime's CPU EP is a real runtime here and on device
    mask_value = MASK_NEG
    verify_slices_per_case = None

    def __init__(self):
        self._sessions = {}

    def target_token(self, options: dict) -> str:
        return "ort"

    def export(self, request: VisionExportRequest, out_dir: Path) -> list[WrittenArtifact]:
        ep = request.options.get("execution_provider", "CPUExecutionProvider")
        if ep not in EXECUTION_PROVIDERS:
            raise BackendError(f"unknown ONNX Runtime execution provider {ep!r}",
                               f"use one of {', '.join(EXECUTION_PROVIDERS)}")
        path = Path(out_dir) / f"{request.stem}.onnx"
        fp32_path = path if request.precision == "fp32" else Path(out_dir) / f".{request.stem}.fp32.onnx"
        export_onnx(request.encoder, request.example, fp32_path)
        details = {"execution_provider": ep, "provider_options": request.options.get("provider_options", {}),
                   "opset": 18}
        if request.precision == "fp16":
            self._to_fp16(fp32_path, path)
        elif request.precision == "int8":
            if not request.calibration:
                raise BackendError("int8 quantization needs calibration inputs", "give the recipe a calibration set")
            details["quantization"] = self._to_int8(fp32_path, path, request.calibration,
                                                    request.options.get("quantization"))
        if fp32_path != path:
            remove_onnx(fp32_path)  # with its external data: a full-size encoder's weights live beside it
        return [WrittenArtifact(path, runtime="onnxruntime", details=details)] + [
            WrittenArtifact(extra, runtime="onnxruntime") for extra in external_data_files(path)]

    @staticmethod
    def _to_fp16(src: Path, dst: Path) -> None:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # fp32 inputs/outputs keep the artifact contract identical across precisions.
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))

    @staticmethod
    def _to_int8(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]], layered: dict | None = None) -> dict:
        import onnx

        from edgevlm.calibration.layered import LayeredQuantConfig

        quant = require("onnxruntime.quantization", "onnxruntime", "int8 quantization")
        plan = LayeredQuantConfig.from_options(layered, "int8").plan(onnx.load(str(src), load_external_data=False),
                                                                    ("MatMul", "Gemm"))
        float_nodes = sorted(set(activation_matmuls(src)) | set(plan.nodes_to_exclude))
        config = dict(quant_format="QDQ", activation_type="QUInt8", weight_type="QInt8", per_channel=True,
                      calibrate_method="MinMax", calibration_batches=len(calibration),
                      float_nodes=len(float_nodes), layered=plan.summary())
        with bounded_calibration(dst.parent):
            quant.quantize_static(
                str(src), str(dst), CalibrationReader(calibration), quant_format=quant.QuantFormat.QDQ,
                activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8, per_channel=True,
                calibrate_method=quant.CalibrationMethod.MinMax,
                # Weighted MatMul/Gemm only. The patch-embedding Conv (raw pixels in) and the position
                # Gather stay float: on the 2.6-tiny encoder quantizing the Conv too drops SQNR from
                # 29.2 to 24.6 dB, and int8 dynamic quantization gives 21.9 dB.
                op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=float_nodes,
                extra_options=dict(CALIBRATION_OPTIONS) | (
                    {"TensorQuantOverrides": plan.tensor_overrides()} if plan.weight_overrides else {}),
            )
        return config

    def runtime_available(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def describe_io(self, artifact: Path, details: dict) -> dict:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # like `run`: this session's optimizer notices are not the user's problem
        session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])

        def spec(values):
            return {v.name: (list(v.shape), ort_dtype_name(v.type)) for v in values}

        return {"inputs": spec(session.get_inputs()), "outputs": spec(session.get_outputs())}

    def run(self, artifact: Path, inputs: dict[str, np.ndarray], details: dict) -> np.ndarray:
        # One session per artifact file, reused: creating it costs far more than a run.
        key = (str(artifact), os.path.getmtime(artifact))
        if key not in self._sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._sessions[key] = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
        return self._sessions[key].run(None, inputs)[0]
