"""The typed schema of manifest.json, checked when `write_manifest` writes one and when
`read_manifest` reads one, before anything reads a field.

Four layers, all before any artifact is opened:
- JSON Schema (the `jsonschema` library): export/schemas/manifest.schema.json, shipped with the
  package, is the single source of the contract (types, ranges, the fields each artifact kind
  carries, with a description per field). Extra fields are allowed: apps may add their own.
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

import functools
import json
import math
from importlib import resources
from pathlib import Path

from edgevlm.limits import MAX_TENSOR_BYTES

SCHEMA_FILE = "schemas/manifest.schema.json"  # inside the edgevlm.export package (pyproject package-data)


@functools.cache
def schema() -> dict:
    """The JSON Schema of the current manifest version, read once from the package."""
    return json.loads(resources.files("edgevlm.export").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


@functools.cache
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


DTYPE_BYTES = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2, "int16": 2,
               "uint8": 1, "int8": 1, "bool": 1}


def schema_problems(manifest: dict) -> list[str]:
    """JSON Schema violations, the most relevant first, as 'path: message'."""
    from jsonschema.exceptions import relevance

    errors = sorted(_validator().iter_errors(manifest), key=relevance)
    return [f"{e.json_path}: {_message(e)[:200]}" for e in errors[:8]]


def _message(error) -> str:
    # a field the schema forbids (`not: {}`, e.g. v1's top-level kv_cache): its description says why
    if error.validator == "not" and isinstance(error.schema, dict) and "description" in error.schema:
        return error.schema["description"]
    return error.message


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
