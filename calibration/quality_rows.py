"""The rows of one exported recipe in `edgevlm quality`: each vision artifact beside the eager LLM,
each decoder artifact beside the eager vision, and the artifacts alone (end to end).

Every row scores every held-out sample, except on a slow emulator with a simulated twin: a QNN
artifact runs on the x86 HTP emulator (~6 s a sample at w4a16) for the first
`--emulated-samples`, and its own QDQ model runs on the ORT CPU EP for every sample. The twin's
rows take the accuracy gates; the emulator's rows are judged by how many answers they share with
the twin on their subset (export/gates.AgreementGate), since 60 samples cannot resolve a 1-3 point
bound (2 answers lost of 60 is 3.3 points, McNemar p = 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from edgevlm.calibration.quality import (CachedVision, References, judged, judged_against_twin, pipeline,
                                         score)
from edgevlm.calibration.oracle_eval import heldout

LAYER_SQNR_SLICES = 8


@dataclass
class VisionUnderTest:
    art: dict
    base: dict  # the row fields naming the artifact
    runtime_fn: CachedVision  # the artifact on its runtime (emulated off device)
    samples: int  # how many held-out samples the runtime scores
    twin_fn: CachedVision | None = None  # the artifact's QDQ model on the ORT CPU EP (QNN), every sample
    twin_runtime: str = ""


def vision_fields(recipe: str, art: dict) -> dict:
    """The fields naming a vision artifact in its rows."""
    return {"recipe": recipe, "component": "vision", "artifact": art["file"], "sha256": art["sha256"],
            "precision": art["precision"], "target": art["target"]}


def vision_under_test(loaded, root: Path, manifest: dict, art: dict, backend, samples: int,
                      options) -> VisionUnderTest:
    from edgevlm.calibration.layer_sqnr import onnx_view
    from edgevlm.export.run import artifact_vision_embeds

    base = vision_fields(manifest["recipe"]["name"], art) \
        | {"runtime": art.get("runtime", art["target"]) + (" (emulated)" if backend.emulated else "")}
    runtime_fn = CachedVision(partial(artifact_vision_embeds, root, manifest, art, backend, config=loaded.config))
    qdq = onnx_view(root, art) if art["target"] == "qnn" else None
    if qdq is None:
        return VisionUnderTest(art, base, runtime_fn, samples)
    from edgevlm.backends.ort import OrtVisionBackend

    twin_fn = CachedVision(partial(artifact_vision_embeds, root, manifest, art | {"file": qdq.name},
                                   OrtVisionBackend(), config=loaded.config))
    capped = min(samples, options.emulated_samples or samples) if backend.emulated else samples
    return VisionUnderTest(art, base, runtime_fn, capped, twin_fn,
                           f"{qdq.name} (QDQ) on the ORT CPU EP: simulated HTP numerics")


def scored_pair(unit: VisionUnderTest, samples, references: References, gate, agreement, run, label: str,
                base: dict, twin_runtime: str = "") -> list[dict]:
    """`run(vision_fn)` -> a pipeline; the rows it gives with the artifact's runtime and, where
    there is one, its twin (scored first: the runtime's row is judged against its answers)."""
    if unit.twin_fn is None:
        return [judged(base | score(samples, run(unit.runtime_fn), label), references(), gate)]
    twin = base | {"runtime": twin_runtime} | score(samples, run(unit.twin_fn), f"{label} (QDQ on CPU)")
    emulated = base | score(samples[:unit.samples], run(unit.runtime_fn), f"{label} (emulated)")
    emulated = judged_against_twin(emulated, twin["answers"], references(unit.samples), agreement)
    return [emulated, judged(twin, references(), gate)]


def recipe_rows(loaded, root: Path, samples, references: References, options) -> tuple[list, list]:
    """Rows (vision / decoder / end_to_end) and per-layer SQNR tables for one exported recipe."""
    from edgevlm.backends.base import get_vision_backend
    from edgevlm.export.decoder.session import open_decoder
    from edgevlm.export.gates import AgreementGate, manifest_accuracy_gates
    from edgevlm.export.manifest import read_manifest
    from edgevlm.export.run import ArtifactRunner

    manifest = read_manifest(root)
    recipe = manifest["recipe"]["name"]
    gates = manifest_accuracy_gates(manifest)
    rows, layers, units = [], [], []
    for art in (a for a in manifest["artifacts"] if a["part"] == "vision"):
        backend = get_vision_backend(art["target"])
        reason = backend.runtime_available()
        if reason is not None:
            rows.append(vision_fields(recipe, art) | {"status": "not run", "reason": reason})
            continue
        unit = vision_under_test(loaded, root, manifest, art, backend, len(samples), options)
        units.append(unit)
        rows += scored_pair(unit, samples, references, gates["vision"], AgreementGate("vision"),
                            lambda fn, name=art["file"]: pipeline(loaded, vision_fn=fn, vision_name=name),
                            f"{recipe} vision {art['precision']}", unit.base, unit.twin_runtime)
        if options.layer_sqnr:
            layers.append({"recipe": recipe, "artifact": art["file"]}
                          | vision_layer_sqnr(loaded, root, manifest["preprocessing"], art, backend))
    decoders = [a for a in manifest["artifacts"] if a["part"] == "decoder"]
    for art in decoders:
        base = {"recipe": recipe, "component": "decoder", "artifact": art["file"], "sha256": art["sha256"],
                "precision": art["precision"], "target": art["target"], "runtime": art["runtime"],
                "weight_calibration": art["weights"].get("calibration", {}).get("method", "rtn"),
                "kv_cache": art["kv_cache"]["format"]}
        pipe = pipeline(loaded, open_decoder(root, art), max_seq_len=art["kv_cache"]["max_seq_len"])
        rows.append(judged(base | score(samples, pipe, f"{recipe} decoder {art['precision']}"),
                           references(), gates["decoder"]))
    if decoders and units:  # the artifacts alone, once per runnable vision artifact
        runner = ArtifactRunner(root)
        for unit in units:
            art = unit.art

            def run(fn, name=art["file"]):
                runner.vision_fn, runner.vision_name = fn, name
                return runner

            base = {"recipe": recipe, "component": "end_to_end", "artifact": f"{art['file']} + {runner.decoder['file']}",
                    "sha256": f"{art['sha256']}+{runner.decoder['sha256']}", "precision": "as exported",
                    "runtime": f"{unit.base['runtime']} + {runner.decoder['runtime']}"}
            rows += scored_pair(unit, samples, references, gates["end_to_end"], AgreementGate("end_to_end"), run,
                                f"{recipe} end to end ({art['precision']} vision)", base,
                                f"{unit.twin_runtime} + {runner.decoder['runtime']}")
    return rows, layers


def vision_layer_sqnr(loaded, root: Path, pre: dict, art: dict, backend) -> dict:
    from edgevlm.calibration.layer_sqnr import layer_sqnr, onnx_view
    from edgevlm.export.host import manifest_slices
    from edgevlm.export.vision import ResamplerSpec, vision_inputs

    path = onnx_view(root, art)
    if path is None:
        return {"status": "not run", "reason": f"{art['target']} artifacts carry no per-layer tensor names "
                                               "(a Core ML program or compiled context binary runs whole)"}
    spec = ResamplerSpec.from_preprocessing(pre)
    batches = []
    for sample in heldout(LAYER_SQNR_SLICES):  # held-out images: never seen by calibration
        slices, sizes = manifest_slices(sample.image(), pre)
        batches.append(vision_inputs(slices[:1], sizes[:1], art["max_patches"], spec, pre["num_patches_per_side"],
                                     batch=art["batch"]))
    result = layer_sqnr(loaded, path, art, batches, backend.mask_value)
    return result | {"onnx": path.name}
