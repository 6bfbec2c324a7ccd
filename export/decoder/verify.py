"""`verify` for decoder artifacts: checksums of every file, the ONNX graphs' I/O against the
manifest, and a prefill parity check (the stored prompt's last-position logits from the artifact
vs the eager fp32 LLM's, judged by the entry's gate) for .onnx and .pte decoders alike.

Exports made before the .pte carried a parity reference report its numerics as not run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevlm.backends.onnx_dtypes import ort_dtype_name
from edgevlm.export.gates import Gate, compare
from edgevlm.export.verify import FAIL, NOT_RUN, PASS, CheckResult, checksum


def verify_decoder(root: Path, artifact: dict) -> list[CheckResult]:
    root = Path(root)
    name = artifact["file"]
    checks = [checksum(name, root / name, artifact["sha256"])]
    checks += [checksum(e["file"], root / e["file"], e["sha256"]) for e in artifact.get("extra_files", [])]
    if any(c.status == FAIL for c in checks):
        return checks  # never run a file that is not the one exported
    from edgevlm.backends.base import get_decoder_backend

    checks += get_decoder_backend(artifact["target"]).verify(root, artifact)  # e.g. the ONNX graphs' I/O
    if any(c.status == FAIL for c in checks):
        return checks
    if "parity" not in artifact:
        checks.append(CheckResult(name, "numerics", NOT_RUN, "this export stored no decoder reference (made "
                                  "before .pte parity references existed); re-export, or `edgevlm run --reference`"))
        return checks
    checks.append(_parity(root, artifact))
    return checks


def _dims(shape) -> list:
    return [d if isinstance(d, int) else "T" for d in shape]


def io_contract(graph: dict, sess) -> CheckResult:
    """An ONNX graph's declared inputs/outputs (an ORT session's) against the manifest's."""
    declared = {"inputs": {i.name: (_dims(i.shape), ort_dtype_name(i.type)) for i in sess.get_inputs()},
                "outputs": {o.name: (_dims(o.shape), ort_dtype_name(o.type)) for o in sess.get_outputs()}}
    problems = [f"{kind} {e['name']}: graph {declared[kind].get(e['name'])} vs manifest {(e['shape'], e['dtype'])}"
                for kind in ("inputs", "outputs") for e in graph[kind]
                if declared[kind].get(e["name"]) != (e["shape"], e["dtype"])]
    extra = {k: sorted(set(declared[k]) - {e["name"] for e in graph[k]}) for k in ("inputs", "outputs")}
    problems += [f"{k} {names} not in the manifest" for k, names in extra.items() if names]
    return CheckResult(graph["file"], "io contract", FAIL if problems else PASS,
                       "; ".join(problems) or f"{len(graph['inputs'])} inputs, {len(graph['outputs'])} outputs")


def _parity(root: Path, artifact: dict) -> CheckResult:
    from edgevlm.export.decoder.session import open_decoder

    reference = np.load(root / artifact["parity"]["reference"])
    decoder = open_decoder(root, artifact)
    with decoder.running():
        logits = decoder.step(decoder.embed(reference["ids"]), 0).numpy()
    gate = Gate(**artifact["quality_gate"])
    # the artifact's own model run eagerly (exports before it was stored: the float model)
    expected = reference["eager_logits"] if "eager_logits" in reference.files else reference["logits"]
    metrics = compare(expected, logits)
    value = metrics[gate.metric]
    same_top = int(np.argmax(logits)) == int(np.argmax(expected))
    float_db = compare(reference["logits"], logits)["sqnr_db"]
    metrics["float_sqnr_db"] = float_db
    return CheckResult(artifact["file"], "numerics", PASS if gate.passes(value) else FAIL,
                       f"prefill of {len(reference['ids'])} tokens vs the eager model: {gate.metric}={value:.6g} "
                       f"(gate {gate.describe()}), top-1 {'matches' if same_top else 'differs'}; "
                       f"vs the float model {float_db:.1f} dB", metrics)
