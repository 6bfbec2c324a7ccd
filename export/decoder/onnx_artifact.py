"""The `ort` decoder target of `edgevlm export`: text_decoder + token_embedding .onnx and the manifest entry.

The graphs are written from an LLM built a layer at a time in MatMulNBits form
(export/llm_build.py); `verify` compares the artifact's prefill of the stored parity prompt with
the float model's logits (export/decoder/artifact.py, export/decoder/verify.py).
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.export.decoder import pte_names as names
from edgevlm.export.decoder.artifact import decoder_gate, kv_cache_block, weight_calibration_record
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.decoder.onnx_graph import DecoderOnnxSpec, export_decoder_onnx, export_embedding_onnx
from edgevlm.export.decoder.static_attention import NAME as STATIC
from edgevlm.export.decoder.stateless import io_specs
from edgevlm.export.manifest_builders import onnx_decoder_entry
from edgevlm.export.recipes import DecoderTarget, Recipe, check_decoder_options

# Measured with device_tests/decoder_onnx_bench.py (see export/decoder/onnx_graph.py).
FORMAT_REASONS = {
    "matmulnbits": "fastest on ORT's CPU EP: one decode step 144 ms with accuracy_level 4 vs 176 ms for the "
                   "opset-21 DequantizeLinear(int4)+MatMul form (which ORT fuses back into MatMulNBits) and "
                   "272 ms for fp32 weights (Qwen2.5-0.5B shape, 4 layers, 2 threads)",
    "qdq": "standard opset-21 ONNX, readable by runtimes and EPs without ORT's contrib ops; ORT's CPU EP fuses "
           "it into MatMulNBits at load (about 1.2x slower than writing MatMulNBits directly)",
}


def onnx_spec(target: DecoderTarget) -> DecoderOnnxSpec:
    """The graph spec of a target: its options over the backend's declared defaults."""
    from edgevlm.backends.base import get_decoder_backend

    support = get_decoder_backend(target.backend).support
    check_decoder_options(support, target, f"{target.backend} decoder")
    cache = KVCacheSpec(target.kv_cache, target.kv_group_size, target.kv_rotate_keys)
    return DecoderOnnxSpec(max_seq_len=target.max_seq_len, weights=target.weights, group_size=target.group_size,
                           cache=cache, embedding=target.embedding, **(support.options | target.options))


def graph_io(config, spec: DecoderOnnxSpec) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of the text_decoder graph: embeddings, input_pos and the cache as past/present."""
    llm = config.llm
    return io_specs(spec.cache, llm.num_hidden_layers, llm.num_key_value_heads, spec.max_seq_len,
                    llm.resolved_head_dim, llm.hidden_size, llm.vocab_size)


def export_onnx_decoder_target(loaded, recipe: Recipe, target: DecoderTarget, out: Path, built, parity: dict) -> dict:
    """Write the graphs of a built LLM (export/llm_build.py, MatMulNBits form); returns the manifest entry."""
    spec = onnx_spec(target)
    cfg = loaded.config
    out = Path(out)
    stem = f"minicpmv-{cfg.version}"
    decoder_path = out / f"{stem}.decoder.ort-cpu.{target.precision}.onnx"
    embed_path = out / f"{stem}.embed.ort-cpu.{target.embedding}.onnx"
    decoder_files = export_decoder_onnx(built.llm, spec, decoder_path)
    embed_files = export_embedding_onnx(built.llm, embed_path, spec.max_seq_len)
    genai = genai_block(loaded, spec, out, decoder_path, embed_path)
    genai_files = [out / name for name in genai.get("files", [])]
    d = cfg.llm.hidden_size
    inputs, outputs = graph_io(cfg, spec)
    embed_io = {"inputs": [{"name": "tokens", "shape": [1, "T"], "dtype": "int64"}],
                "outputs": [{"name": "embeddings", "shape": [1, "T", d], "dtype": "float32"}]}
    weight_format = {"matmulnbits": "com.microsoft MatMulNBits (ORT contrib op)",
                     "qdq": "opset-21 DequantizeLinear(int4/uint4) + MatMul"}[spec.weight_format]
    tok = loaded.tokenizer
    return onnx_decoder_entry(
        root=out, path=decoder_path, recipe=recipe.name, precision=target.precision,
        extra_files=decoder_files[1:] + embed_files + genai_files,
        graphs={names.TOKEN_EMBEDDING: {"file": embed_path.name} | embed_io,
                names.TEXT_DECODER: {"file": decoder_path.name, "inputs": inputs, "outputs": outputs,
                                     "cache_feedback": "feed present.<i>.<buffer> back as past.<i>.<buffer>; "
                                                       "zeros for a new conversation"}},
        inputs=inputs, outputs=outputs, opset=21,
        weights={"scheme": target.weights, "group_size": target.group_size if target.weights == "int4" else None,
                 "library": "onnxruntime.quantization block quantizer (MatMulNBits layout)"
                 if target.weights == "int4" else None,
                 "format": weight_format if target.weights == "int4" else "float32",
                 "symmetric": spec.symmetric, "accuracy_level": spec.accuracy_level,
                 "format_reason": FORMAT_REASONS[spec.weight_format] if target.weights == "int4" else None,
                 "embedding": target.embedding, "calibration": weight_calibration_record(built, target)},
        kv_cache=kv_cache_block(loaded, spec, STATIC),
        runner_metadata={names.MAX_SEQ_LEN: spec.max_seq_len, names.VOCAB_SIZE: cfg.llm.vocab_size,
                         names.N_LAYERS: cfg.llm.num_hidden_layers,
                         names.BOS_ID: tok.maybe_token_id(tok.bos_token) if tok.bos_token else -1,
                         names.EOS_IDS: sorted(tok.stop_token_ids()), names.USE_KV_CACHE: True},
        quality_gate=decoder_gate(target, parity).to_dict(), parity=parity, genai=genai)


def genai_block(loaded, spec: DecoderOnnxSpec, out: Path, decoder_path: Path, embed_path: Path) -> dict:
    """ONNX Runtime GenAI's files for a float cache (export/genai.py); for a quantized cache, the reason
    there are none (also logged)."""
    from edgevlm.export.genai import CONFIG_FILE, unsupported_reason, write_genai_files
    from edgevlm.progress import log

    reason = unsupported_reason(spec.cache)
    if reason:
        log.info("no genai_config.json for a %s KV cache: %s", spec.cache.format, reason)
        return {"written": False, "reason": reason}
    if (out / CONFIG_FILE).exists():  # GenAI reads one config per folder: the first float-cache target's
        return {"written": False, "reason": f"{CONFIG_FILE} in this folder describes an earlier decoder target"}
    return write_genai_files(loaded, spec, out, decoder_path, embed_path, loaded.path)
