"""The typed schema of manifest.json, checked by `read_manifest` before anything reads a field.

Four layers, all before any artifact is opened:
- JSON Schema (the `jsonschema` library): the types and ranges of every field edgevlm's readers
  use (verify, run, bench, aihub, quality). Extra fields are allowed: apps may add their own.
- consistency: the fields that must agree (a vision artifact's declared input shapes with its
  batch and max_patches, the preprocessing block with the model config), so a runtime is never
  fed shapes its artifact was not built for.
- confinement: every file a manifest names (artifacts, extra files, ONNX graphs, references,
  verification images, tokenizer files) is a relative path inside the artifact folder after
  symlinks are resolved (edgevlm/safety.confined), so `../../x` or `/etc/passwd` are refused.
- sizes: every declared I/O tensor with a fixed shape fits MAX_TENSOR_BYTES, since runtimes
  allocate caches from these shapes (a shape of 1e12 is refused, not allocated).
"""

from __future__ import annotations

import math
from pathlib import Path

from edgevlm.limits import MAX_TENSOR_BYTES

_INT = {"type": "integer"}
_COUNT = {"type": "integer", "minimum": 1, "maximum": 2 ** 31 - 1}
_FILE = {"type": "string", "minLength": 1, "maxLength": 4096}
_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_DIM = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2 ** 40}, {"type": "string", "maxLength": 64}]}
_IO = {"type": "array", "maxItems": 10_000, "items": {
    "type": "object", "required": ["name", "shape", "dtype"],
    "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": _DIM, "maxItems": 16},
                   "dtype": {"type": "string", "maxLength": 32}}}}
_FILE_ENTRY = {"type": "object", "required": ["file", "sha256"],
               "properties": {"file": _FILE, "sha256": _SHA, "bytes": {"type": "integer", "minimum": 0}}}
_FILES = {"type": "array", "items": _FILE_ENTRY, "maxItems": 100_000}
# export/gates.Gate(**gate): exactly its fields, and a metric gates.compare computes
_GATE = {"type": "object", "required": ["metric", "bound", "higher_is_better"], "additionalProperties": False,
         "properties": {"metric": {"enum": ["max_abs_error", "relative_max_error", "cosine", "sqnr_db"]},
                        "bound": {"type": "number"}, "higher_is_better": {"type": "boolean"}}}
_ACCURACY_GATE = {"type": "object", "required": ["component", "max_drop_points"], "additionalProperties": False,
                  "properties": {"component": {"type": "string"}, "max_drop_points": {"type": "number"}}}
_KV = {"type": "object", "required": ["max_seq_len"], "properties": {"max_seq_len": _COUNT, "format": {"type": "string"}}}

ARTIFACT = {
    "type": "object",
    "required": ["name", "part", "target", "file", "sha256"],
    "properties": {
        "name": {"type": "string"}, "part": {"type": "string", "enum": ["vision", "decoder"]},
        "target": {"type": "string"}, "file": _FILE, "sha256": _SHA, "bytes": {"type": "integer", "minimum": 0},
        "precision": {"type": "string"}, "runtime": {"type": "string"},
        "extra_files": _FILES, "inputs": _IO, "outputs": _IO,
        "max_patches": {"type": "integer", "minimum": 1, "maximum": 65536},
        "batch": {"type": "integer", "minimum": 1, "maximum": 4096},
        "quality_gate": _GATE, "details": {"type": "object"}, "kv_cache": _KV,
        "methods": {"type": "array", "items": {"type": "string"}},
        "graphs": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["file"], "properties": {"file": _FILE, "inputs": _IO, "outputs": _IO}}},
        "parity": {"type": "object", "required": ["reference"], "properties": {"reference": _FILE}},
        # ONNX Runtime GenAI's files (export/genai.py), or why a quantized cache has none
        "genai": {"type": "object", "required": ["written"], "properties": {
            "written": {"type": "boolean"}, "reason": {"type": "string"}, "config": _FILE, "graph": _FILE,
            "files": {"type": "array", "items": _FILE, "maxItems": 64}}},
    },
    "allOf": [
        {"if": {"properties": {"part": {"const": "vision"}}},
         "then": {"required": ["inputs", "outputs", "max_patches", "batch", "quality_gate"]}},
        {"if": {"properties": {"part": {"const": "decoder"}}}, "then": {"required": ["kv_cache"]}},
    ],
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema_version", "model", "artifacts", "preprocessing", "prompt", "special_tokens", "toolchain"],
    "properties": {
        "schema_version": {"type": "integer", "minimum": 1},
        "model": {"type": "object", "required": ["version"],
                  "properties": {"version": {"type": "string"}, "source": {"type": "string"},
                                 "id": {"type": "string"}}},
        "artifacts": {"type": "array", "items": ARTIFACT, "maxItems": 1000},
        "files": _FILES,
        "preprocessing": {
            "type": "object",
            "required": ["slice_config", "slice_mode", "norm_mean", "norm_std", "patch_size", "num_patches_per_side",
                         "resampler_pos"],
            "properties": {
                "slice_config": {"type": "object", "required": ["max_slice_nums", "scale_resolution", "patch_size"],
                                 "properties": {"max_slice_nums": {"type": "integer", "minimum": 1, "maximum": 64},
                                                "scale_resolution": {"type": "integer", "minimum": 1, "maximum": 16384},
                                                "patch_size": {"type": "integer", "minimum": 1, "maximum": 1024}}},
                "slice_mode": {"type": "boolean"},
                "norm_mean": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
                "norm_std": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                             "minItems": 3, "maxItems": 3},
                "patch_size": {"type": "integer", "minimum": 1, "maximum": 1024},
                "num_patches_per_side": {"type": "integer", "minimum": 1, "maximum": 4096},
                "resampler_pos": {"type": "object", "required": ["added_to", "embed_dim"],
                                  "properties": {"added_to": {"enum": ["keys", "values"]},
                                                 "embed_dim": {"type": "integer", "minimum": 1, "maximum": 65536}}},
            },
        },
        "recipe": {"type": "object", "properties": {
            "accuracy_gates": {"type": "object", "additionalProperties": _ACCURACY_GATE}}},
        "prompt": {"type": "object"},
        "special_tokens": {"type": "object"},
        "toolchain": {"type": "object"},
        "config": {"type": "object"},
        "kv_cache": {"anyOf": [{"type": "null"}, _KV]},
        "verification": {
            "type": "object", "required": ["reference", "cases"],
            "properties": {"reference": _FILE, "cases": {"type": "array", "maxItems": 1000, "items": {
                "type": "object", "required": ["name", "image", "tgt_sizes"],
                "properties": {"name": {"type": "string"}, "image": _FILE,
                               "tgt_sizes": {"type": "array", "items": {
                                   "type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 4096},
                                   "minItems": 2, "maxItems": 2}}}}}},
        },
    },
}

DTYPE_BYTES = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2, "int16": 2,
               "uint8": 1, "int8": 1, "bool": 1}


def schema_problems(manifest: dict) -> list[str]:
    """JSON Schema violations, the most relevant first, as 'path: message'."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import relevance

    errors = sorted(Draft202012Validator(SCHEMA).iter_errors(manifest), key=relevance)
    return [f"{e.json_path}: {e.message[:200]}" for e in errors[:8]]


def named_files(manifest: dict):
    """(json path, relative file name) of every file the manifest names."""
    for i, artifact in enumerate(manifest["artifacts"]):
        yield f"artifacts[{i}].file", artifact["file"]
        for j, extra in enumerate(artifact.get("extra_files", [])):
            yield f"artifacts[{i}].extra_files[{j}].file", extra["file"]
        for name, graph in artifact.get("graphs", {}).items():
            yield f"artifacts[{i}].graphs.{name}.file", graph["file"]
        if "parity" in artifact:
            yield f"artifacts[{i}].parity.reference", artifact["parity"]["reference"]
        for j, name in enumerate(artifact.get("genai", {}).get("files", [])):
            yield f"artifacts[{i}].genai.files[{j}]", name
    for j, entry in enumerate(manifest.get("files", [])):
        yield f"files[{j}].file", entry["file"]
    verification = manifest.get("verification")
    if verification:
        yield "verification.reference", verification["reference"]
        for k, case in enumerate(verification["cases"]):
            yield f"verification.cases[{k}].image", case["image"]


def oversized_tensors(manifest: dict) -> list[str]:
    """Declared I/O tensors whose fixed shape would take more than MAX_TENSOR_BYTES."""
    found = []
    for i, artifact in enumerate(manifest["artifacts"]):
        specs = [("", s) for key in ("inputs", "outputs") for s in artifact.get(key, [])]
        specs += [(f"graphs.{g}.", s) for g, graph in artifact.get("graphs", {}).items()
                  for key in ("inputs", "outputs") for s in graph.get(key, [])]
        for where, spec in specs:
            dims = [d for d in spec["shape"] if isinstance(d, int)]
            size = math.prod(dims) * DTYPE_BYTES.get(spec["dtype"], 8)
            if size > MAX_TENSOR_BYTES:
                found.append(f"artifacts[{i}].{where}{spec['name']} shape {spec['shape']} ({spec['dtype']}): "
                             f"{size / 2 ** 30:.3g} GiB")
    return found


def consistency_problems(manifest: dict) -> list[str]:
    """Fields that must agree with each other for the host code and the artifacts to fit: the
    static shapes a vision artifact declares and its batch / max_patches, the preprocessing block
    and the model config the runner rebuilds prompts from."""
    pre = manifest["preprocessing"]
    patch, dim = pre["patch_size"], pre["resampler_pos"]["embed_dim"]
    problems = []
    if pre["slice_config"]["patch_size"] != patch:
        problems.append(f"preprocessing.slice_config.patch_size {pre['slice_config']['patch_size']} != "
                        f"preprocessing.patch_size {patch}")
    if dim % 4:
        problems.append(f"preprocessing.resampler_pos.embed_dim {dim} is not a multiple of 4 (2D sincos)")
    llm = manifest.get("llm")
    if isinstance(llm, dict) and llm.get("hidden_size") not in (None, dim):
        problems.append(f"preprocessing.resampler_pos.embed_dim {dim} != llm.hidden_size {llm['hidden_size']}")
    config = manifest.get("config")
    if isinstance(config, dict):
        vision, slicing = (v if isinstance(v, dict) else {} for v in (config.get("vision_config"),
                                                                      config.get("slice_config")))
        expected = {"num_patches_per_side": _ratio(vision.get("image_size"), vision.get("patch_size")),
                    "patch_size": vision.get("patch_size"), "resampler_pos.embed_dim": config.get("hidden_size"),
                    **{f"slice_config.{k}": slicing.get(k) for k in ("max_slice_nums", "scale_resolution",
                                                                     "patch_size")}}
        for key, want in expected.items():
            section, _, name = key.rpartition(".")
            have = (pre[section] if section else pre)[name]
            if want is not None and have != want:
                problems.append(f"preprocessing.{key} {have} != {want} from the manifest's model config")
    for i, artifact in enumerate(manifest["artifacts"]):
        if artifact["part"] != "vision":
            continue
        b, p = artifact["batch"], artifact["max_patches"]
        shapes = {"pixel_values": [b, 3, patch, p * patch], "patch_mask": [b, p], "position_ids": [b, p],
                  "resampler_pos": [b, p, dim]}
        for spec in artifact["inputs"]:
            want = shapes.get(spec["name"])
            if want is not None and spec["shape"] != want:
                problems.append(f"artifacts[{i}].inputs {spec['name']} shape {spec['shape']} does not fit batch {b}, "
                                f"max_patches {p} and the preprocessing block (expected {want})")
    return problems


def _ratio(a, b):
    return a // b if isinstance(a, int) and isinstance(b, int) and b > 0 else None


def check_manifest(manifest: dict, root: Path, source: str) -> None:
    """Raise ManifestError / UnsafePath / LimitExceeded for a manifest edgevlm must not act on."""
    from edgevlm.errors import LimitExceeded
    from edgevlm.export.manifest import ManifestError
    from edgevlm.safety import confined

    problems = schema_problems(manifest)
    if problems:
        raise ManifestError(f"{source} does not match the manifest schema:\n  " + "\n  ".join(problems),
                            "re-run `edgevlm export` (the manifest was edited, truncated or written by another tool)")
    big = oversized_tensors(manifest)
    if big:
        raise LimitExceeded(f"{source} declares tensors above the {MAX_TENSOR_BYTES / 2 ** 30:.0f} GiB limit: "
                            + "; ".join(big[:4]), "re-run `edgevlm export`; a manifest never needs such shapes")
    problems = consistency_problems(manifest)
    if problems:
        raise ManifestError(f"{source} contradicts itself:\n  " + "\n  ".join(problems[:8]),
                            "re-run `edgevlm export` (the manifest was edited or written by another tool)")
    for where, name in named_files(manifest):
        confined(root, name, f"{source} {where}")
