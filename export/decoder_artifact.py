"""The decoder part of `edgevlm export`: a recipe's decoder target -> .pte (executorch) or .onnx
graphs (ort) + its manifest entry."""

from __future__ import annotations

from pathlib import Path

from edgevlm.export.decoder_pte import DecoderPteSpec, export_pte
from edgevlm.export.kv_cache import KVCacheSpec
from edgevlm.export.manifest import sha256_path, size_bytes
from edgevlm.export.recipes import DecoderTarget, Recipe
from edgevlm.progress import timed


def decoder_spec(target: DecoderTarget) -> DecoderPteSpec:
    cache = KVCacheSpec(target.kv_cache, target.kv_group_size, target.kv_rotate_keys)
    return DecoderPteSpec(max_seq_len=target.max_seq_len, weights=target.weights, group_size=target.group_size,
                          cache=cache)


def kv_cache_block(loaded, spec: DecoderPteSpec) -> dict:
    """What the manifest says about the cache: format, layout, sizes."""
    llm = loaded.config.llm
    cache = spec.cache
    layout = ("codes uint8 [B, Hkv, S, Dh/2] (element 2i low nibble, 2i+1 high), scale+zero fp16 [B, Hkv, S, Dh/group]"
              if cache.format == "int4" else
              "codes uint8 [B, Hkv, S, Dh], scale+zero fp16 [B, Hkv, S, Dh/group]" if cache.format == "int8" else
              f"{cache.format} [B, Hkv, S, Dh]")
    return cache.to_dict() | {
        "layout": layout, "quantization": "asymmetric, per-token groups along the head dimension"
        if cache.quantized else None,
        "max_seq_len": spec.max_seq_len, "layers": llm.num_hidden_layers, "kv_heads": llm.num_key_value_heads,
        "head_dim": llm.resolved_head_dim,
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
    return {
        "name": "text_decoder", "part": "decoder", "target": "executorch", "recipe": recipe.name, "file": name,
        "runtime": "executorch-xnnpack", "precision": target.precision, "sha256": sha256_path(path),
        "bytes": size_bytes(path), "extra_files": [], "methods": methods,
        "inputs": [{"name": "embeddings", "shape": [1, "T", d], "dtype": "float32"},
                   {"name": "input_pos", "shape": [1], "dtype": "int64"}],
        "outputs": [{"name": "logits", "shape": [1, loaded.config.llm.vocab_size], "dtype": "float32"}],
        "weights": {"scheme": target.weights, "group_size": target.group_size, "library": "torchao",
                    "calibration": weight_calibration},
        "kv_cache": kv_cache_block(loaded, spec), "runner_metadata": metadata,
    }
