"""Op census and a Neural Engine (ANE) compatibility check of a Core ML ML program.

The check is a heuristic. Apple publishes no complete list of what the ANE executes; these rules
come from Apple's published guidance ("Deploying Transformers on the Apple Neural Engine",
machinelearning.apple.com 2022, and its ml-ane-transformers code; the WWDC Core ML sessions; the
coremltools optimization guide: the ANE computes in fp16, and pads a buffer's last axis to 64
bytes) and from limits reported by developers who probed the ANE compiler (fp16-only datapath,
integer tensors and int32 casts rejected, at most 16384 elements along width/height and 65536
along channels, rank above 5 and runtime-indexed gathers placed on CPU/GPU). How a MIL tensor's
axes map onto the ANE's width/height/channel is not published, so axis sizes between 16384 and
65536 are a possible fallback, not a certain one. The authoritative answer is Xcode's Core ML
performance report, or `coremltools.models.compute_plan.MLComputePlan` on a Mac; neither runs on
Linux.

A finding means "likely to run on CPU/GPU, or slowly on the ANE"; no finding does not prove
that the whole program runs on the ANE.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from edgevlm.backends.coreml_interp import DTYPES, main_block

MAX_RANK = 5
MAX_SPATIAL = 16384  # width/height limit; channels allow MAX_CHANNELS
MAX_CHANNELS = 65536
ALIGN_BYTES = 64  # the ANE pads a buffer's last axis to 64 bytes (Apple's ANE transformers article)
SMALL_TENSOR = 1 << 16  # below this many elements, last-axis padding waste is not worth a finding
# Ops whose fp32 or integer results are expected at the program's edges; Core ML does these casts.
BOUNDARY_OPS = {"cast"}
CONST_OPS = ("const", "constexpr_")
GATHERS = {"gather", "gather_along_axis", "gather_nd"}
# Fallback: the op runs off the ANE. Possible fallback: commonly does, depending on sizes/OS.
FALLBACK, POSSIBLE, PERFORMANCE = "fallback", "possible_fallback", "performance"


def _kind(dtype) -> str:
    """numpy kind letter ('f', 'i', 'u', 'b'), or '-' for non-tensor values."""
    return np.dtype(dtype).kind if dtype is not None else "-"


def _is_const(op_type: str) -> bool:
    return op_type.startswith(CONST_OPS)


def op_census(spec) -> dict[str, int]:
    """Op type -> count in the main function (const and constexpr ops included), sorted by name."""
    _, block = main_block(spec)
    return dict(sorted(Counter(op.type for op in block.operations).items()))


def _tensor(named_value_type):
    """(numpy dtype or None, shape) of a declared value."""
    t = named_value_type.type
    if t.WhichOneof("type") != "tensorType":
        return None, ()
    return DTYPES.get(t.tensorType.dataType, (None,))[0], tuple(d.constant.size for d in t.tensorType.dimensions)


def ane_findings(spec) -> list[dict]:
    """[{op, type, reason, severity}] for ops the published guidance says leave (or slow) the ANE."""
    fn, block = main_block(spec)
    declared = {i.name: _tensor(i) for i in fn.inputs}
    constants = set()
    findings = []

    def add(op_name, op_type, severity, reason):
        findings.append({"op": op_name, "type": op_type, "severity": severity, "reason": reason})

    def axis_limit(op_name, op_type, shape):
        widest = max(shape, default=0)
        if widest > MAX_SPATIAL:
            add(op_name, op_type, FALLBACK if widest > MAX_CHANNELS else POSSIBLE,
                f"an axis of {widest} elements exceeds the ANE's {MAX_SPATIAL} for width/height "
                f"({MAX_CHANNELS} for channels)")

    for i in fn.inputs:
        dims = i.type.tensorType.dimensions
        if any(d.WhichOneof("dimension") != "constant" for d in dims):
            add(i.name, "input", FALLBACK, "flexible input shape; the ANE compiles static shapes only")
        axis_limit(i.name, "input", declared[i.name][1])
    for op in block.operations:
        outputs = [(o.name, *_tensor(o)) for o in op.outputs]
        for name, dtype, shape in outputs:
            declared[name] = (dtype, shape)
        if _is_const(op.type):
            constants.update(name for name, _, _ in outputs)
            continue
        name, dtype, shape = outputs[0]
        in_names = [b.name for arg in op.inputs.values() for b in arg.arguments if b.WhichOneof("binding") == "name"]
        in_kinds = {_kind(declared.get(n, (None, ()))[0]) for n in in_names}
        kind = _kind(dtype)
        if op.type in BOUNDARY_OPS:
            if kind in "iu":
                add(name, op.type, POSSIBLE, f"cast to {np.dtype(dtype).name}; integer tensors are handled off the ANE")
        elif kind == "f" and np.dtype(dtype).itemsize > 2:
            add(name, op.type, FALLBACK, f"computes in {np.dtype(dtype).name}; the ANE computes in fp16 only")
        elif kind in "iu":
            add(name, op.type, FALLBACK, f"integer arithmetic ({np.dtype(dtype).name}); the ANE runs float ops")
        elif kind == "b" and in_kinds & {"i", "u"}:
            add(name, op.type, FALLBACK, "comparison of integer tensors; the ANE runs float ops")
        if len(shape) > MAX_RANK:
            add(name, op.type, FALLBACK, f"rank-{len(shape)} result; the ANE handles rank <= {MAX_RANK}")
        axis_limit(name, op.type, shape)
        if op.type in GATHERS:
            indices = [b.name for b in op.inputs["indices"].arguments if b.WhichOneof("binding") == "name"]
            if any(n not in constants for n in indices):
                add(name, op.type, POSSIBLE, "gather with runtime indices; commonly scheduled on CPU/GPU")
        if kind == "f" and np.dtype(dtype).itemsize == 2 and shape:
            padded = -(-shape[-1] * 2 // ALIGN_BYTES) * ALIGN_BYTES // 2
            if math.prod(shape) >= SMALL_TENSOR and padded >= 2 * shape[-1]:
                add(name, op.type, PERFORMANCE,
                    f"last axis of {shape[-1]} fp16 values is padded to {padded} ({ALIGN_BYTES}-byte rows): "
                    f"{padded // shape[-1]}x the memory traffic")
    return findings


def summarize(findings: list[dict]) -> dict[str, int]:
    """severity -> count, for logs."""
    return dict(Counter(f["severity"] for f in findings))
