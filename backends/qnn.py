"""Qualcomm QNN HTP vision encoder (Snapdragon 8 Gen 3: SM8650, Hexagon HTP v75) via ONNX Runtime.

fp32 ONNX -> QDQ ONNX (onnxruntime.quantization's QNN config: 16-bit activations, 8- or 4-bit
per-channel weights, calibrated on real slices) -> offline compile with the `onnxruntime-qnn`
execution provider into an EPContext model plus a QNN context binary for the target SoC. The
app loads the EPContext model with the QNN EP and the HTP runs the prebuilt graph; no on-device
compilation. On x86_64 the same EP runs the HTP backend in emulation, which is how this machine
checks numerics; CPU fallback is disabled there, so a passing run proves every node is HTP-resident.

Artifacts (naming grammar of DESIGN.md):
  <stem>.onnx      EPContext model (what the app opens)
  <stem>.bin       QNN context binary it references
  <stem>.qdq.onnx  the quantized QDQ model it was compiled from (input for Qualcomm AI Hub, or for
                   the QNN EP compiling on device)

Byte stability: the QDQ model and the EPContext model are deterministic. The EPContext node's name
and `partition_name` come from ONNX Runtime's MurmurHash of the path the model was compiled from
(the export's random temporary folder) unless the model is passed as bytes, when they hash the
graph's input and node-output names; `compile_context` passes bytes, so the name is fixed by the
graph. The context binary embeds that name too (3 copies) and is otherwise byte-identical for the
first compile in a process; each later compile in the same process gets other QNN tensor ids,
which QNN assigns from a process-wide counter (tiny 2.6 w8a16 encoder: first ids 5, 255, 505 for
three compiles in one process; 7,692 of 1,540,096 bytes differ). So a `.bin` depends on how many
graphs its process compiled before; the manifest records the QDQ model's sha256
(`details.source_sha256`) as the binary's reproducible identity.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from edgevlm.backends.base import BackendError, VisionExportRequest, WrittenArtifact, require
from edgevlm.backends.onnx_dtypes import onnx_dtype_name
from edgevlm.backends.onnx_export import export_onnx
from edgevlm.export.vision import QUANTIZED_MASK_NEG

EP_NAME = "QNNExecutionProvider"
DEFAULT_OPTIONS = {"htp_arch": 75, "soc_model": 57}  # SM8650 = Snapdragon 8 Gen 3
# QNN's soc_model ids (the HTP backend's SoC table) -> the chip's part number and marketing name.
SOC_MODELS = {36: ("sm8450", "Snapdragon 8 Gen 1"), 43: ("sm8550", "Snapdragon 8 Gen 2"),
              57: ("sm8650", "Snapdragon 8 Gen 3"), 69: ("sm8750", "Snapdragon 8 Elite")}


def soc_part(soc_model: int) -> str:
    """`sm8650` for a known soc_model id, `soc<id>` for one edgevlm has no name for."""
    return SOC_MODELS[soc_model][0] if soc_model in SOC_MODELS else f"soc{soc_model}"

# precision -> weight quant type name; activations are always 16-bit
PRECISIONS = {"w8a16": "QUInt8", "w4a16": "QInt4"}
KNOWN_OPTIONS = {"htp_arch", "soc_model", "htp_performance_mode", "vtcm_mb", "calibrate_method", "quantization"}


def _ort_qnn():
    """onnxruntime with the QNN EP plugin registered (once per process)."""
    ort = require("onnxruntime", "onnxruntime", "the QNN backend")
    plugin = require("onnxruntime_qnn", "onnxruntime-qnn==2.7.0", "the QNN HTP backend")
    if not any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):
        ort.register_execution_provider_library(EP_NAME, plugin.get_library_path())
    return ort


def producer_qnn_version() -> str | None:
    """The QNN release bundled in onnxruntime-qnn (its libQnnHtp.so compiles the context binary).
    A phone-side QNN SDK must be this release or newer to load the binary (qnn-net-run)."""
    require("onnxruntime_qnn", "onnxruntime-qnn==2.7.0", "the QNN HTP backend")
    from onnxruntime_qnn import build_and_package_info

    return getattr(build_and_package_info, "qnn_version", None)


def _qnn_session_options(ort, options: dict, extra: dict | None = None, allow_cpu: bool = False):
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    session = ort.SessionOptions()
    session.log_severity_level = 3
    if not allow_cpu:
        session.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    for key, value in (extra or {}).items():
        session.add_session_config_entry(key, value)
    provider = {"backend_type": "htp", "htp_arch": str(options["htp_arch"]), "soc_model": str(options["soc_model"])}
    for key in ("htp_performance_mode", "vtcm_mb"):
        if key in options:
            provider[key] = str(options[key])
    session.add_provider_for_devices(devices, provider)
    return session


class QnnVisionBackend:
    name = "qnn"
    mask_value = QUANTIZED_MASK_NEG  # the padding bias shares a 16-bit range with the scores
    # The x86 HTP emulator needs seconds per slice, so verify checks one slice per image unless
    # asked for all of them.
    verify_slices_per_case = 1
    emulated = True  # the x86 HTP emulator

    def __init__(self):
        self._sessions = {}

    # ---- export -------------------------------------------------------------------------------
    def target_token(self, options: dict) -> str:
        options = DEFAULT_OPTIONS | options
        return f"htp-{soc_part(options['soc_model'])}-v{options['htp_arch']}"

    def export(self, request: VisionExportRequest, out_dir: Path) -> list[WrittenArtifact]:
        options = self._options(request)
        if not request.calibration:
            raise BackendError(f"{request.precision} quantization needs calibration inputs",
                               "give the recipe a calibration set (calibration: {source: builtin, images: 16})")
        out_dir = Path(out_dir)
        work = out_dir / f".{request.stem}.qnn-work"
        work.mkdir()
        try:
            fp32 = export_onnx(request.encoder, request.example, work / "fp32.onnx")
            qdq = out_dir / f"{request.stem}.qdq.onnx"
            quantization = quantize_qdq(fp32, qdq, request.calibration, request.precision, work, options)
            context, binary = compile_context(qdq, out_dir / f"{request.stem}.onnx", options, request.precision)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        from edgevlm.export.manifest import sha256_path

        details = {"execution_provider": EP_NAME, "backend_type": "htp",
                   "provider_options": {k: options[k] for k in sorted(options)
                                        if k not in ("calibrate_method", "quantization")},
                   "soc": (f"{SOC_MODELS[options['soc_model']][0].upper()} ({SOC_MODELS[options['soc_model']][1]})"
                           if options["soc_model"] in SOC_MODELS else None),
                   "quantization": quantization, "source_sha256": sha256_path(qdq),
                   "context_binary": binary.name, "byte_stable": False, "qnn_version": producer_qnn_version(),
                   "executorch_qnn_pte": executorch_qnn_status()}
        return [WrittenArtifact(context, runtime="onnxruntime-qnn", details=details),
                WrittenArtifact(binary, runtime="onnxruntime-qnn"), WrittenArtifact(qdq, runtime="onnxruntime-qnn")]

    @staticmethod
    def _options(request: VisionExportRequest) -> dict:
        if request.precision not in PRECISIONS:
            raise BackendError(f"the QNN HTP backend has no precision {request.precision!r}",
                               f"use one of {', '.join(PRECISIONS)} (16-bit activations, 8- or 4-bit weights)")
        unknown = set(request.options) - KNOWN_OPTIONS
        if unknown:
            raise BackendError(f"unknown QNN option(s) {sorted(unknown)}", f"known options: {sorted(KNOWN_OPTIONS)}")
        return DEFAULT_OPTIONS | dict(request.options)

    # ---- run on this machine (HTP emulation on x86_64) ------------------------------------------
    def runtime_available(self) -> str | None:
        try:
            _ort_qnn()
        except BackendError as e:
            return e.problem
        return None

    def run(self, artifact: Path, inputs: dict[str, np.ndarray], details: dict) -> np.ndarray:
        key = (str(artifact), os.path.getmtime(artifact))
        if key not in self._sessions:
            ort = _ort_qnn()
            options = DEFAULT_OPTIONS | details.get("provider_options", {})
            self._sessions[key] = ort.InferenceSession(str(artifact), _qnn_session_options(ort, options))
        return self._sessions[key].run(None, inputs)[0]

    def describe_io(self, artifact: Path, details: dict) -> dict:
        import onnx

        graph = onnx.load(str(artifact), load_external_data=False).graph

        def spec(values):
            return {v.name: ([d.dim_value for d in v.type.tensor_type.shape.dim],
                             onnx_dtype_name(v.type.tensor_type.elem_type))
                    for v in values}

        return {"inputs": spec(graph.input), "outputs": spec(graph.output)}


def quantize_qdq(fp32: Path, dst: Path, calibration: list[dict[str, np.ndarray]], precision: str, work: Path,
                 options: dict) -> dict:
    """fp32 ONNX -> QDQ ONNX the QNN EP can place entirely on the HTP."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    from edgevlm.backends.ort import CALIBRATION_OPTIONS, CalibrationReader
    from edgevlm.backends.ort_calibration import bounded_calibration

    prepared = work / "prepared.onnx"
    if not qnn_preprocess_model(str(fp32), str(prepared), fuse_layernorm=True):  # False: nothing to rewrite
        prepared = fp32
    weight_type = getattr(QuantType, PRECISIONS[precision])
    overrides = None
    kept_8bit = []
    if precision == "w4a16":
        # HTP takes 4-bit weights on MatMul/Gemm only; LayerNorm scales, biases, the learned queries
        # and the patch-embedding Conv (raw pixels in, the most sensitive layer) stay 8-bit.
        model = onnx.load(str(prepared))
        initializers = {i.name for i in model.graph.initializer}
        matmul_weights = {n.input[1] for n in model.graph.node
                          if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in initializers}
        kept_8bit = sorted({i for n in model.graph.node for i in n.input if i in initializers} - matmul_weights)
        overrides = {name: [{"quant_type": QuantType.QUInt8}] for name in kept_8bit}
    # The layered config (calibration/layered.py) refines the global weight type node by node.
    from edgevlm.calibration.layered import LayeredQuantConfig

    global_weights = "int4" if precision == "w4a16" else "uint8"
    plan = LayeredQuantConfig.from_options(options.get("quantization"), global_weights).plan(onnx.load(str(prepared)))
    if plan.weight_overrides:
        overrides = (overrides or {}) | plan.tensor_overrides(symmetric=True if precision == "w4a16" else None)
    method = options.get("calibrate_method", "MinMax")
    if not hasattr(CalibrationMethod, method):
        raise BackendError(f"unknown calibration method {method!r}", "use MinMax, Entropy or Percentile")
    config = get_qnn_qdq_config(str(prepared), CalibrationReader(calibration), getattr(CalibrationMethod, method),
                                activation_type=QuantType.QUInt16, weight_type=weight_type, per_channel=True,
                                weight_symmetric=precision == "w4a16" or None, init_overrides=overrides,
                                nodes_to_exclude=plan.nodes_to_exclude or None)
    config.extra_options.update(CALIBRATION_OPTIONS)
    with bounded_calibration(work):
        quantize(str(prepared), str(dst), config)
    return {"format": "QDQ", "activations": "uint16", "weights": PRECISIONS[precision].lower(),
            "weight_granularity": "per-channel" + (", symmetric" if precision == "w4a16" else ""),
            "calibrate_method": method,
            "calibration_batches": len(calibration), "layernorm_fused": prepared != fp32,
            "weights_kept_8bit": len(kept_8bit), "layered": plan.summary()}


def compile_context(qdq: Path, context: Path, options: dict, precision: str = "w8a16") -> tuple[Path, Path]:
    """QDQ model -> EPContext model + context binary, compiled offline for the target SoC.

    The binary gets the project's name `<stem>.bin` (ONNX Runtime writes `<stem>_qnn.bin`); the
    EPContext node's `ep_cache_context` attribute is rewritten to match.
    """
    import onnx

    ort = _ort_qnn()
    extra = {"ep.context_enable": "1", "ep.context_file_path": str(context), "ep.context_embed_mode": "0"}
    try:
        # From bytes, not the path: ORT names the partition after a hash of the model path (a random
        # temporary folder), or of the graph when there is no path (see the module docstring).
        ort.InferenceSession(qdq.read_bytes(), _qnn_session_options(ort, options, extra))
    except Exception as e:  # onnxruntime raises its own exception types; re-raise with the cause named
        if "fallback to CPU EP has been explicitly disabled" in str(e):
            raise BackendError(f"the QNN HTP backend cannot take these nodes: {cpu_nodes(qdq, options)}",
                               "use the ort recipe for this model" if precision == "w8a16"
                               else "try precision w8a16 (8-bit weights)") from None
        raise BackendError(f"QNN compilation failed: {str(e).strip()[:600]}",
                           "check the op named above against the QNN HTP op support table; "
                           "the ort recipe runs the same graph on the CPU") from None
    written = context.with_name(context.stem + "_qnn.bin")
    binary = context.with_suffix(".bin")
    written.rename(binary)
    model = onnx.load(str(context))
    nodes = [n for n in model.graph.node if n.op_type == "EPContext"]
    if len(nodes) != 1 or len(model.graph.node) != 1:
        raise BackendError(f"the compiled model has {len(model.graph.node)} nodes, {len(nodes)} of them EPContext",
                           "expected one HTP graph; report the graph that split")
    for attribute in nodes[0].attribute:
        if attribute.name == "ep_cache_context":
            attribute.s = binary.name.encode()
    onnx.save(model, str(context))
    return context, binary


def cpu_nodes(qdq: Path, options: dict) -> str:
    """Compile with CPU fallback allowed and name the nodes the HTP left behind (with their consumers)."""
    import tempfile

    import onnx

    ort = _ort_qnn()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        extra = {"ep.context_enable": "1", "ep.context_file_path": str(probe), "ep.context_embed_mode": "0"}
        ort.InferenceSession(str(qdq), _qnn_session_options(ort, options, extra, allow_cpu=True))
        left = [n for n in onnx.load(str(probe)).graph.node if n.op_type != "EPContext"]
    consumers = {}
    for node in onnx.load(str(qdq)).graph.node:
        for name in node.input:
            consumers.setdefault(name, node)
    described = []
    for node in left[:8]:
        user = consumers.get(node.output[0])
        via = f" feeding {user.op_type} {user.name!r}" if node.op_type in ("DequantizeLinear", "QuantizeLinear") and user else ""
        described.append(f"{node.op_type} {node.name!r}{via}")
    counts = Counter(n.op_type for n in left)
    return "; ".join(described) + (f" ... ({dict(counts)} in all)" if len(left) > 8 else "")


def executorch_qnn_status() -> dict:
    """The ExecuTorch QNN-delegated .pte needs Qualcomm's QNN SDK (QNN_SDK_ROOT) and ExecuTorch's
    Qualcomm backend built against it; neither ships on PyPI."""
    root = os.environ.get("QNN_SDK_ROOT")
    if not root or not Path(root).is_dir():
        return {"status": "skipped", "reason": "QNN_SDK_ROOT is not set to a QNN SDK; the ExecuTorch QNN delegate "
                "needs the SDK (from Qualcomm, not on PyPI) and executorch built with its Qualcomm backend"}
    try:
        import executorch.backends.qualcomm.qnn_preprocess  # noqa: F401
    except ImportError as e:
        return {"status": "skipped", "reason": f"executorch was built without its Qualcomm backend ({e})"}
    return {"status": "available", "reason": "QNN SDK and ExecuTorch Qualcomm backend found; not built by this recipe"}
