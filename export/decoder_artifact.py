"""The decoder part of `edgevlm export`: a recipe's decoder target -> .pte (executorch) or .onnx
graphs (ort) + its manifest entry."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgevlm.export.decoder_pte import DecoderPteSpec, export_pte
from edgevlm.export.kv_cache import KVCacheSpec
from edgevlm.export.manifest import sha256_path, size_bytes
from edgevlm.export.recipes import DecoderTarget, Recipe
from edgevlm.progress import timed


def decoder_spec(target: DecoderTarget) -> DecoderPteSpec:
    cache = KVCacheSpec(target.kv_cache, target.kv_group_size, target.kv_rotate_keys)
    return DecoderPteSpec(max_seq_len=target.max_seq_len, weights=target.weights, group_size=target.group_size,
                          cache=cache, attention=target.attention or "custom")


def kv_cache_block(loaded, spec, attention: str) -> dict:
    """What the manifest says about the cache: format, layout, sizes. `spec`: a .pte or ONNX decoder
    spec (max_seq_len, cache); `attention`: static | custom (the ONNX decoder is always static)."""
    llm = loaded.config.llm
    cache = spec.cache
    dims = "B, S, Hkv" if attention == "custom" else "B, Hkv, S"  # custom: ExecuTorch's sequence-major
    layout = (f"codes uint8 [{dims}, Dh/2] (element 2i low nibble, 2i+1 high), scale+zero fp16 [{dims}, Dh/group]"
              if cache.format == "int4" else
              f"codes uint8 [{dims}, Dh], scale+zero fp16 [{dims}, Dh/group]" if cache.format == "int8" else
              f"{cache.format} [{dims}, Dh]")
    return cache.to_dict() | {
        "layout": layout, "quantization": "asymmetric, per-token groups along the head dimension"
        if cache.quantized else None,
        "max_seq_len": spec.max_seq_len, "attention": attention, "layers": llm.num_hidden_layers,
        "kv_heads": llm.num_key_value_heads, "head_dim": llm.resolved_head_dim,
        "bytes_per_token": cache.bytes_per_token(llm.num_hidden_layers, llm.num_key_value_heads, llm.resolved_head_dim),
    }


def decoder_llm(loaded, recipe: Recipe, target: DecoderTarget):
    """The float LLM the quantizer gets: the reference itself (rtn), or a copy with AWQ scales folded
    in from the recipe's calibration set (calibration/awq.py). Returns (llm, weight-calibration record)."""
    if target.weight_calibration == "rtn" or target.weights == "fp32":
        return loaded.model.llm, {"method": "rtn"}
    from edgevlm.calibration.awq import awq_scaled, calibration_embeddings

    spec = recipe.calibration
    with timed("awq scale search", groups="per layer", calibration=spec.source):
        embeddings = calibration_embeddings(loaded, spec.source, spec.images, spec.seed)
        # torchao's int4 is symmetric; MatMulNBits follows the target's `symmetric` option
        symmetric = target.backend != "ort" or bool(target.options.get("symmetric", False))
        llm, summary = awq_scaled(loaded.model.llm, embeddings, target.group_size, symmetric=symmetric)
    return llm, {k: v for k, v in summary.items() if k != "groups"} | {
        "alpha": {name: g["alpha"] for name, g in summary["groups"].items()}}


def custom_ops(spec: DecoderPteSpec, out: Path) -> tuple[list[str], list[Path]]:
    """The non-ATen kernels the program calls, and (for ours) their C++ sources copied beside it for
    the app to compile in (ExecuTorch's own llama ops come with its LLM runner build)."""
    if spec.attention != "custom":
        return [], []
    if spec.cache.format != "int4":
        return ["llama::update_cache.out", "llama::custom_sdpa.out"], []
    from edgevlm.export.int4_attention import KERNEL_FILES, KERNEL_NAMES

    folder = out / "kernels"  # an INT4-cache program calls only these (no llama:: ops)
    folder.mkdir(exist_ok=True)
    for source in KERNEL_FILES:
        shutil.copyfile(source, folder / source.name)
    return list(KERNEL_NAMES), [folder / s.name for s in KERNEL_FILES]


def export_decoder_target(loaded, recipe: Recipe, target: DecoderTarget, out: Path, vision=None) -> dict:
    llm, weight_calibration = decoder_llm(loaded, recipe, target)
    if target.backend == "ort":
        from edgevlm.export.decoder_onnx_artifact import export_onnx_decoder_target

        entry = export_onnx_decoder_target(loaded, recipe, target, out, llm)
        entry["weights"]["calibration"] = weight_calibration
        return entry
    spec = decoder_spec(target)
    spec.cache.validate(loaded.config.llm.resolved_head_dim)
    name = f"minicpmv-{loaded.config.version}.decoder.xnnpack.{target.precision}.pte"
    path = Path(out) / name
    with timed("export decoder", weights=target.weights, kv_cache=target.kv_cache):
        metadata = export_pte(loaded, spec, path, runner="multimodal", vision=vision if target.vision_in_pte else None,
                              llm=llm)
    d = loaded.config.llm.hidden_size
    methods = ["token_embedding", "text_decoder"] + (["vision_encoder"] if target.vision_in_pte else [])
    ops, sources = custom_ops(spec, Path(out))
    return {
        "name": "text_decoder", "part": "decoder", "target": "executorch", "recipe": recipe.name, "file": name,
        "runtime": "executorch-xnnpack", "precision": target.precision, "sha256": sha256_path(path),
        "bytes": size_bytes(path), "methods": methods, "custom_ops": ops,
        "extra_files": [{"file": str(f.relative_to(out)), "sha256": sha256_path(f), "bytes": size_bytes(f)}
                        for f in sources],
        "inputs": [{"name": "embeddings", "shape": [1, "T", d], "dtype": "float32"},
                   {"name": "input_pos", "shape": [1], "dtype": "int64"}],
        "outputs": [{"name": "logits", "shape": [1, loaded.config.llm.vocab_size], "dtype": "float32"}],
        "weights": {"scheme": target.weights, "group_size": target.group_size, "library": "torchao",
                    "calibration": weight_calibration},
        "kv_cache": kv_cache_block(loaded, spec, spec.attention), "runner_metadata": metadata,
    }
