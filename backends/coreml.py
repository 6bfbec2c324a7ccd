"""Core ML vision encoder: an fp16 ML program (.mlpackage) for the Apple Neural Engine.

torch.export -> coremltools.convert (mlprogram, fp16 compute, static shapes, float32 inputs and
output so the I/O contract is the one every backend shares; the program casts to fp16 inside)
-> optional weight compression (coremltools.optimize.coreml: int8 per-channel linear, or 4/6-bit
k-means palettization) -> description, I/O descriptions and user_defined_metadata (coreml_metadata.py)
-> a package normalised to be byte-identical run to run.

Byte stability. What differs between two conversions of the same model, and what is done:
  - Manifest.json item identifiers are random UUIDs: replaced by uuid5 of the item's author/path.
  - model.mlmodel metadata `com.github.apple.coremltools.conversion_date`: removed (the version
    and source keys stay; they are fixed for a toolchain).
  - model.mlmodel protobuf maps (op inputs/attributes, metadata) serialise in hash order:
    rewritten with deterministic (sorted) serialisation.
  - executorch_debug_handle_mapping.json, which coremltools writes at the package root for
    torch.export sources: an ExecuTorch debugging aid the Manifest does not list; removed.
  - weights/weight.bin is deterministic; k-means palettization uses scikit-learn with
    random_state=0, deterministic for a given scikit-learn build.
What cannot be made stable: bytes change with the coremltools/torch/scikit-learn versions (op
names, graph passes, k-means); the manifest's toolchain block records them. File mtimes and
permissions differ, but artifacts are identified by content (export/manifest.py:sha256_path).

Running: on macOS, Core ML predicts with the recipe's compute units. Elsewhere Core ML cannot
run, so `run` executes the saved program with the numpy fp16 interpreter (coreml_interp.py);
`last_runtime` says which ran.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import platform
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from edgevlm.backends.base import BackendError, VisionExportRequest, WrittenArtifact, require
from edgevlm.backends.coreml_ane import ane_findings, op_census, summarize
from edgevlm.backends.coreml_interp import MLProgramInterpreter, load_spec, main_block, package_files
from edgevlm.backends.coreml_metadata import describe_model
from edgevlm.export.vision import INPUT_NAMES, MASK_NEG, OUTPUT_NAMES

PRECISIONS = ("fp16",)
COMPUTE_UNITS = ("CPU_AND_NE", "ALL", "CPU_AND_GPU", "CPU_ONLY")
DEPLOYMENT_TARGETS = ("iOS18", "iOS17")
COMPRESSIONS = ("none", "int8", "palettize4", "palettize6")
DEFAULT_OPTIONS = {"compute_units": "CPU_AND_NE", "minimum_deployment_target": "iOS18", "compression": "none"}
VOLATILE_METADATA = ("com.github.apple.coremltools.conversion_date",)
EXTRA_ROOT_FILES = ("executorch_debug_handle_mapping.json",)
MANIFEST_NAMESPACE = uuid.UUID("6f1d7a52-3c1e-5d0b-9a57-6564676576c6")  # fixed: item ids derive from it
INTERPRETER = "mil-interpreter-fp16"


class _NoRuntimeProxyWarnings(logging.Filter):
    """Off macOS coremltools' native runtime is absent by design, yet its import logs one
    "Failed to load _ML...Proxy" warning per proxy; they say nothing the backend does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to load _ML")


def _array_dtype_name(code: int) -> str:
    """Core ML ArrayFeatureType data type (65568) -> numpy dtype name ("float32"), via coremltools' enum."""
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    try:  # enum names are FLOAT32, FLOAT16, DOUBLE, INT32, INT8: numpy spells each the same, lower-cased
        return np.dtype(ArrayFeatureType.ArrayDataType.Name(code).lower()).name
    except (ValueError, TypeError):
        return str(code)


def _coremltools():
    if platform.system() != "Darwin":
        logger = logging.getLogger("coremltools")  # the one logger its modules share (coremltools._logger)
        if not any(isinstance(f, _NoRuntimeProxyWarnings) for f in logger.filters):
            logger.addFilter(_NoRuntimeProxyWarnings())
    return require("coremltools", "coremltools==9.0", "the Core ML backend")


def check_options(request: VisionExportRequest) -> dict:
    if request.precision not in PRECISIONS:
        raise BackendError(f"the Core ML backend has no precision {request.precision!r}",
                           f"use one of {', '.join(PRECISIONS)} (weight compression is the `compression` option: "
                           f"{', '.join(COMPRESSIONS)})")
    unknown = set(request.options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise BackendError(f"unknown Core ML option(s) {sorted(unknown)}", f"known options: {sorted(DEFAULT_OPTIONS)}")
    options = DEFAULT_OPTIONS | dict(request.options)
    for key, valid in (("compute_units", COMPUTE_UNITS), ("minimum_deployment_target", DEPLOYMENT_TARGETS),
                       ("compression", COMPRESSIONS)):
        if options[key] not in valid:
            raise BackendError(f"unknown Core ML {key} {options[key]!r}", f"use one of {', '.join(valid)}")
    return options


def conversion_error(error: Exception, stage: str) -> BackendError:
    """A BackendError naming the op coremltools (or torch.export) failed on."""
    op = None
    tb = error.__traceback__
    while tb is not None:  # the torch frontend's frames hold the node (and its op kind) they were on
        node, kind = tb.tb_frame.f_locals.get("node"), tb.tb_frame.f_locals.get("kind")
        if node is not None and isinstance(getattr(node, "kind", None), str):  # coremltools' internal node
            op = f"{node.kind} ({getattr(node, 'name', '?')})"
        elif node is not None and isinstance(kind, str):  # a torch.fx node being translated
            op = f"{kind} ({node})"
        tb = tb.tb_next
    if op is None:
        found = re.search(r"op '([^']+)'|kind (\w+)|operator ([\w.:]+)", str(error))
        op = next((g for g in found.groups() if g), None) if found else "unknown op"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    fix = ("torch.export could not capture this op statically; rewrite it in the export path (export/vision.py)"
           if stage == "torch.export" else
           "coremltools 9.0 cannot convert this op; rewrite it in the export path (export/vision.py), "
           "or use the `ort` recipe")
    return BackendError(f"coreml backend: {stage} failed at op {op}: {type(error).__name__}: {first}", fix)


def convert(request: VisionExportRequest, options: dict):
    """The encoder as an in-memory coremltools MLModel (fp16 ML program, not compiled here)."""
    import torch

    ct = _coremltools()
    example = tuple(torch.from_numpy(request.example[n]) for n in INPUT_NAMES)
    try:
        program = torch.export.export(request.encoder.eval(), example).run_decompositions({})
    except Exception as e:
        raise conversion_error(e, "torch.export") from e
    example_arrays = [request.example[n] for n in INPUT_NAMES]
    inputs = [ct.TensorType(name=n, shape=a.shape, dtype=a.dtype) for n, a in zip(INPUT_NAMES, example_arrays)]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # coremltools' per-pass progress bars
            return ct.convert(program, convert_to="mlprogram", inputs=inputs,
                              outputs=[ct.TensorType(name=OUTPUT_NAMES[0], dtype=np.float32)],
                              compute_precision=ct.precision.FLOAT16,
                              compute_units=ct.ComputeUnit[options["compute_units"]],
                              minimum_deployment_target=getattr(ct.target, options["minimum_deployment_target"]),
                              skip_model_load=True)
    except Exception as e:
        raise conversion_error(e, "coremltools.convert") from e


PALETTE_GROUP = 16  # output channels sharing one LUT (iOS18 per-grouped-channel palettization)


def compress(model, compression: str, deployment_target: str = "iOS18"):
    """(compressed model, config recorded in the manifest); weights under 2048 elements stay fp16.

    Palettization on iOS18: one k-means LUT per 16 output channels. A per-tensor LUT (the only
    form iOS17 takes) cost edgevlm-tiny 2.8 points of held-out accuracy at 4 bits (8 answers lost,
    1 gained of 250; p = 0.04), grouped LUTs 0.4 (5 lost, 4 gained); keeping the position table or
    the patch embedding at int8 beside per-tensor LUTs did not help. Weights whose output channels
    do not divide into groups (e.g. SigLIP's 4900-row position table) are left by coremltools'
    palettizer; they get int8 per-channel weights instead of staying fp16."""
    if compression == "none":
        return model, None
    cto = require("coremltools.optimize.coreml", "coremltools==9.0", "Core ML weight compression")
    int8 = {"mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel", "weight_threshold": 2048}
    if compression == "int8":
        with contextlib.redirect_stderr(io.StringIO()):
            model = cto.linear_quantize_weights(model, cto.OptimizationConfig(cto.OpLinearQuantizerConfig(**int8)))
        return model, {"method": "linear_quantize_weights"} | int8
    require("sklearn", "scikit-learn", "k-means palettization")
    palette = {"mode": "kmeans", "nbits": int(compression.removeprefix("palettize")), "weight_threshold": 2048}
    palette |= ({"granularity": "per_grouped_channel", "group_size": PALETTE_GROUP} if deployment_target != "iOS17"
                else {"granularity": "per_tensor"})
    with contextlib.redirect_stderr(io.StringIO()):
        model = cto.palettize_weights(model, cto.OptimizationConfig(cto.OpPalettizerConfig(**palette)))
        left = _float_weights(model)
        if left:  # the second pass sees only the weights the palettizer left float
            model = cto.linear_quantize_weights(model, cto.OptimizationConfig(
                op_name_configs={name: cto.OpLinearQuantizerConfig(**int8) for name in left}))
    config = {"method": "palettize_weights"} | palette
    return model, config | ({"int8_weights": {"names": left} | int8} if left else {})


def _float_weights(model) -> list[str]:
    """Names of the program's float weight constants at or above the compression threshold."""
    return sorted(op.name for op in model._mil_program.functions["main"].operations
                  if op.op_type == "const" and getattr(op.outputs[0].val, "size", 0) >= 2048
                  and np.issubdtype(op.outputs[0].val.dtype, np.floating))


def normalise_package(package: Path) -> None:
    """Rewrite what changes between conversions (see the module docstring) in place."""
    package = Path(package)
    proto = require("coremltools.proto.Model_pb2", "coremltools==9.0", "writing a Core ML package")
    for name in EXTRA_ROOT_FILES:
        (package / name).unlink(missing_ok=True)
    model_file, _ = package_files(package)
    spec = proto.Model()
    spec.ParseFromString(model_file.read_bytes())
    for key in VOLATILE_METADATA:
        if key in spec.description.metadata.userDefined:
            del spec.description.metadata.userDefined[key]
    model_file.write_bytes(spec.SerializeToString(deterministic=True))
    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    ids = {old: str(uuid.uuid5(MANIFEST_NAMESPACE, f"{item['author']}/{item['path']}"))
           for old, item in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {ids[old]: item for old, item in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = ids[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")


def save_package(model, dst: Path) -> Path:
    """Save, normalise in a staging directory beside `dst`, then move into place."""
    dst = Path(dst)
    staging = dst.parent / f".{dst.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        package = staging / dst.name
        model.save(str(package))
        normalise_package(package)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(package, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dst


class CoreMLVisionBackend:
    name = "coreml"
    mask_value = MASK_NEG

    def __init__(self, use_coreml: bool | None = None):
        # None: Core ML where it can run (macOS), the interpreter elsewhere. False forces the interpreter.
        self.use_coreml = platform.system() == "Darwin" if use_coreml is None else use_coreml
        self.last_runtime: str | None = None
        self.last_nonfinite_ops: list[str] = []  # interpreter ops that turned finite inputs into inf/nan
        self._loaded = {}

    # ---- export -------------------------------------------------------------------------------
    def target_token(self, options: dict) -> str:
        return "ane"

    def export(self, request: VisionExportRequest, out_dir: Path) -> list[WrittenArtifact]:
        from edgevlm.progress import log

        options = check_options(request)
        model = convert(request, options)
        model, compression_config = compress(model, options["compression"], options["minimum_deployment_target"])
        package_metadata = describe_model(model, request, options)
        path = save_package(model, Path(out_dir) / f"{request.stem}.mlpackage")
        spec = load_spec(path)
        fn, _ = main_block(spec)
        findings = ane_findings(spec)
        if findings:
            log.info("Core ML ANE check (heuristic)", extra={"findings": summarize(findings), "artifact": path.name})
        details = {"compute_units": options["compute_units"],
                   "minimum_deployment_target": options["minimum_deployment_target"],
                   "compression": options["compression"], "compression_config": compression_config,
                   "compute_precision": "float16", "io_dtype": "float32 (cast to fp16 inside the program)",
                   "spec_version": spec.specificationVersion, "opset": fn.opset,
                   "op_census": op_census(spec), "ane_findings": findings, "ane_check": "heuristic",
                   "byte_stable": True, "package_metadata": package_metadata}
        return [WrittenArtifact(path, runtime="coreml", details=details)]

    @property
    def emulated(self) -> bool:
        """True when `run` interprets the program (no Core ML here): its timings are not device latency."""
        return not self.use_coreml

    @property
    def verify_slices_per_case(self) -> int | None:
        # The interpreter needs ~1 s per slice for a tiny encoder and far more at full size, so
        # verify checks one slice per image there unless asked for all (--all-slices).
        return None if self.use_coreml else 1

    # ---- run on this machine ------------------------------------------------------------------
    def runtime_available(self) -> str | None:
        # The interpreter runs wherever numpy and coremltools' protobuf classes import.
        try:
            _coremltools()
        except BackendError as e:
            return e.problem
        return None

    def describe_io(self, artifact: Path, details: dict) -> dict:
        description = load_spec(artifact).description

        def spec(features):
            return {f.name: ([int(d) for d in f.type.multiArrayType.shape],
                             _array_dtype_name(f.type.multiArrayType.dataType))
                    for f in features}

        return {"inputs": spec(description.input), "outputs": spec(description.output)}

    def run(self, artifact: Path, inputs: dict[str, np.ndarray], details: dict) -> np.ndarray:
        artifact = Path(artifact)
        # One loaded model per package version: loading costs far more than a run.
        key = (str(artifact), tuple(p.stat().st_mtime_ns for p in sorted(artifact.rglob("*")) if p.is_file()),
               self.use_coreml)
        if key not in self._loaded:
            self._loaded = {key: self._load(artifact, details)}
        model = self._loaded[key]
        if isinstance(model, MLProgramInterpreter):
            out = model.run(inputs)[OUTPUT_NAMES[0]]
            self.last_runtime, self.last_nonfinite_ops = INTERPRETER, list(model.nonfinite_ops)
        else:
            out = model.predict(inputs)[OUTPUT_NAMES[0]]
            self.last_runtime, self.last_nonfinite_ops = f"coreml:{details.get('compute_units', 'CPU_AND_NE')}", []
        return np.asarray(out, np.float32)

    def _load(self, artifact: Path, details: dict):
        if self.use_coreml:
            ct = _coremltools()
            units = ct.ComputeUnit[details.get("compute_units", DEFAULT_OPTIONS["compute_units"])]
            return ct.models.MLModel(str(artifact), compute_units=units)
        return MLProgramInterpreter(artifact)
