"""The typed builders of manifest.json, one per artifact kind, each written once: the export driver
(vision entries, the manifest itself) and the decoder artifact modules (.pte, ONNX) call these
instead of assembling dicts inline, so every writer produces the shape that
export/schemas/manifest.schema.json describes. `write_manifest` then checks the result against
that schema before it is written.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.export.decoder import pte_names as names
from edgevlm.export.decoder.custom_ops_attention import NAME as CUSTOM
from edgevlm.export.decoder.kv_cache import KVCacheSpec, rotation_block
from edgevlm.export.manifest import SCHEMA_VERSION, sha256_path, size_bytes


def file_entry(path: Path, root: Path) -> dict:
    """A file the manifest names: its path relative to the artifact folder, sha256 and size."""
    path = Path(path)
    return {"file": path.relative_to(root).as_posix(), "sha256": sha256_path(path), "bytes": size_bytes(path)}


def manifest(*, model: dict, recipe: dict, preprocessing: dict, prompt: dict, special_tokens: dict, query_num: int,
             llm: dict, config: dict, toolchain: dict) -> dict:
    """The top level of a manifest with no artifacts yet; the driver appends artifacts and adds
    `verification`, `files` and `export` as it writes them."""
    return {"schema_version": SCHEMA_VERSION, "model": model, "recipe": recipe, "artifacts": [],
            "preprocessing": preprocessing, "prompt": prompt, "special_tokens": special_tokens,
            "query_num": query_num, "llm": llm, "config": config, "toolchain": toolchain}


def vision_entry(*, root: Path, files: list[Path], recipe: str, target: str, runtime: str, precision: str,
                 inputs: list[dict], outputs: list[dict], max_patches: int, batch: int, quality_gate: dict,
                 details: dict) -> dict:
    """A vision encoder artifact; files[0] is the one a runtime loads, the rest ship beside it."""
    main = file_entry(files[0], root)
    return {"name": names.VISION_ENCODER, "part": "vision", "target": target, "recipe": recipe, **main,
            "runtime": runtime, "precision": precision, "extra_files": [file_entry(f, root) for f in files[1:]],
            "inputs": inputs, "outputs": outputs, "max_patches": max_patches, "batch": batch,
            "quality_gate": quality_gate, "details": details}


def kv_cache_entry(cache: KVCacheSpec, *, max_seq_len: int, attention: str, layers: int, kv_heads: int,
                   head_dim: int) -> dict:
    """A decoder artifact's own `kv_cache` block: format, layout and sizes. attention: static | custom
    (custom: ExecuTorch's sequence-major cache; the ONNX decoder is always static)."""
    dims = "B, S, Hkv" if attention == CUSTOM else "B, Hkv, S"
    layout = (f"codes uint8 [{dims}, Dh/2] (element 2i low nibble, 2i+1 high), scale+zero fp16 [{dims}, Dh/group]"
              if cache.format == "int4" else
              f"codes uint8 [{dims}, Dh], scale+zero fp16 [{dims}, Dh/group]" if cache.format == "int8" else
              f"{cache.format} [{dims}, Dh]")
    rotated = cache.quantized and cache.rotate_keys
    return cache.to_dict() | {
        "layout": layout,
        "quantization": "asymmetric, per-token groups along the head dimension" if cache.quantized else None,
        "rotation_block": rotation_block(head_dim) if rotated else None,
        "max_seq_len": max_seq_len, "attention": attention, "layers": layers, "kv_heads": kv_heads,
        "head_dim": head_dim, "bytes_per_token": cache.bytes_per_token(layers, kv_heads, head_dim),
    }


def _decoder_entry(root: Path, path: Path, *, target: str, runtime: str, recipe: str, precision: str,
                   extra_files: list[Path], methods: list[str], inputs: list[dict], outputs: list[dict],
                   weights: dict, kv_cache: dict, runner_metadata: dict, quality_gate: dict, parity: dict) -> dict:
    """The fields every decoder artifact has (the schema's decoder_fields)."""
    return {"name": names.TEXT_DECODER, "part": "decoder", "target": target, "recipe": recipe,
            **file_entry(path, root), "runtime": runtime, "precision": precision,
            "extra_files": [file_entry(f, root) for f in extra_files], "methods": methods,
            "inputs": inputs, "outputs": outputs, "weights": weights, "kv_cache": kv_cache,
            "runner_metadata": runner_metadata, "quality_gate": quality_gate, "parity": parity}


def pte_decoder_entry(*, root: Path, path: Path, recipe: str, precision: str, kernel_sources: list[Path],
                      custom_ops: list[str], methods: list[str], inputs: list[dict], outputs: list[dict],
                      weights: dict, kv_cache: dict, runner_metadata: dict, quality_gate: dict,
                      parity: dict) -> dict:
    """An ExecuTorch .pte decoder (XNNPACK), with the C++ sources of the custom kernels it calls."""
    return _decoder_entry(root, path, target="executorch", runtime="executorch-xnnpack", recipe=recipe,
                          precision=precision, extra_files=kernel_sources, methods=methods, inputs=inputs,
                          outputs=outputs, weights=weights, kv_cache=kv_cache, runner_metadata=runner_metadata,
                          quality_gate=quality_gate, parity=parity) | {"custom_ops": custom_ops}


def onnx_decoder_entry(*, root: Path, path: Path, recipe: str, precision: str, extra_files: list[Path],
                       graphs: dict, inputs: list[dict], outputs: list[dict], opset: int, weights: dict,
                       kv_cache: dict, runner_metadata: dict, quality_gate: dict, parity: dict,
                       genai: dict) -> dict:
    """An ONNX Runtime decoder: the text_decoder graph (path) with its token_embedding graph, cache
    tensors as graph inputs/outputs, and ONNX Runtime GenAI's files when it has them."""
    return _decoder_entry(root, path, target="ort", runtime="onnxruntime-cpu", recipe=recipe, precision=precision,
                          extra_files=extra_files, methods=list(graphs), inputs=inputs, outputs=outputs,
                          weights=weights, kv_cache=kv_cache, runner_metadata=runner_metadata,
                          quality_gate=quality_gate, parity=parity) | {"graphs": graphs, "opset": opset,
                                                                       "genai": genai}
