"""ONNX decoder variants on ORT's CPU EP, side by side: artifact size, KV bytes/token, prefill and
one-step decode latency for fp32 vs INT4 (MatMulNBits, and opset-21 DequantizeLinear int4 + MatMul)
weights and fp32 vs INT4 KV caches, on one random-weight LLM shape.

    edgevlm bench-decoder-onnx --preset minicpmv-2.6-llm0.5b --layers 4 --json out.json

Prints a table and writes JSON (`schema: edgevlm.decoder-onnx-bench/1`). Numbers, not a test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from edgevlm.stats import median

SCHEMA = "edgevlm.decoder-onnx-bench/1"
# (label, weights, weight_format, accuracy_level, kv format)
VARIANTS = [("fp32 / kv fp32", "fp32", None, None, "fp32"), ("fp32 / kv int4", "fp32", None, None, "int4"),
            ("int4 MatMulNBits / kv fp32", "int4", "matmulnbits", None, "fp32"),
            ("int4 MatMulNBits / kv int4", "int4", "matmulnbits", None, "int4"),
            ("int4 MatMulNBits acc4 / kv int4", "int4", "matmulnbits", 4, "int4"),
            ("int4 opset-21 QDQ / kv int4", "int4", "qdq", None, "int4")]



def build_llm(preset: str, layers: int | None):
    import dataclasses

    from edgevlm.model.llm import build_llm as build
    from edgevlm.presets import get_preset

    cfg = get_preset(preset).build_config().llm
    if layers:
        cfg = dataclasses.replace(cfg, num_hidden_layers=layers)
    torch.manual_seed(0)
    llm = build(cfg).float().eval()
    for p in llm.parameters():  # random weights at a realistic scale (the init may leave zeros)
        torch.nn.init.normal_(p, std=0.02)
    return llm, cfg


def open_variant(files: dict, cache_specs: list, threads: int):
    from edgevlm.export.decoder.pte_names import TEXT_DECODER, TOKEN_EMBEDDING
    from edgevlm.export.decoder.session import OrtDecoderSession

    entry = {"graphs": {TOKEN_EMBEDDING: {"file": files["embed"]},
                        TEXT_DECODER: {"file": files["decoder"], "inputs": cache_specs}}}
    return OrtDecoderSession(Path("/"), entry, threads)


def time_variants(sessions: list, hidden: int, context: int, steps: int) -> list[dict]:
    """Prefill each, then decode round-robin (step i of every variant before step i+1 of any), so
    load from other processes on the host falls on all variants alike; min is the robust figure."""
    prompt = torch.randn(context, hidden) * 0.02
    prefill, decode = [], [[] for _ in sessions]
    for session in sessions:
        start = time.perf_counter()
        session.step(prompt, 0)
        prefill.append(time.perf_counter() - start)
    for i in range(steps):
        for times, session in zip(decode, sessions):
            start = time.perf_counter()
            session.step(prompt[i:i + 1], context + i)
            times.append(time.perf_counter() - start)
    return [{"prefill_ms": p * 1e3, "decode_ms_median": median(t[1:]) * 1e3, "decode_ms_min": min(t) * 1e3}
            for p, t in zip(prefill, decode)]


def optimized_census(path: Path, tmp: Path) -> dict[str, int]:
    """Ops after ORT's CPU graph optimizations (shows whether DequantizeLinear+MatMul was fused)."""
    import onnxruntime as ort

    from edgevlm.export.decoder.onnx_graph import op_census

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp / f"{path.stem}.optimized.onnx")
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                     f"{path.stem}.optimized.onnx.data")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return op_census(Path(options.optimized_model_filepath))


def main(argv=None) -> dict:
    """`python -m edgevlm.device_tests.decoder_onnx_bench`: the same options as `edgevlm bench-decoder-onnx`."""
    from edgevlm.cli.tool_commands import decoder_onnx_bench_args

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    decoder_onnx_bench_args(ap)
    return run(ap.parse_args(argv))


def run(args) -> dict:
    import onnx

    from edgevlm.export.decoder.kv_cache import KVCacheSpec
    from edgevlm.export.decoder.onnx_graph import (DecoderOnnxSpec, export_decoder_onnx, export_embedding_onnx,
                                                   op_census, quantize_weights)
    from edgevlm.export.decoder.stateless import cache_tensor_specs
    from edgevlm.export.manifest import size_bytes

    llm, cfg = build_llm(args.preset, args.layers)
    head_dim = cfg.resolved_head_dim
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        embed = export_embedding_onnx(llm, tmp / "embed.onnx", args.max_seq_len)[0]
        fp32_graphs, sessions = {}, []
        for kv in ("fp32", "int4"):
            spec = DecoderOnnxSpec(max_seq_len=args.max_seq_len, weights="fp32", cache=KVCacheSpec(kv, 32, True))
            fp32_graphs[kv] = export_decoder_onnx(llm, spec, tmp / f"fp32-kv{kv}.onnx")[0]
        for label, weights, fmt, level, kv in VARIANTS:
            cache = KVCacheSpec(kv, 32, True)
            path = fp32_graphs[kv]
            if weights == "int4":
                spec = DecoderOnnxSpec(max_seq_len=args.max_seq_len, weights="int4", group_size=args.group_size,
                                       accuracy_level=level, weight_format=fmt, cache=cache)
                path = tmp / f"int4-{fmt}-{level}-kv{kv}.onnx"
                onnx.save(quantize_weights(fp32_graphs[kv], spec), str(path),
                          save_as_external_data=size_bytes(fp32_graphs[kv]) > (1 << 30))
            specs = cache_tensor_specs(cache, cfg.num_hidden_layers, cfg.num_key_value_heads, args.max_seq_len,
                                       head_dim)
            sessions.append(open_variant({"embed": embed, "decoder": path}, specs, args.threads))
            census = op_census(path)
            fused = optimized_census(path, tmp) if fmt == "qdq" else census
            rows.append({"variant": label, "weights": weights, "weight_format": fmt, "accuracy_level": level,
                         "kv_cache": kv, "decoder_bytes": sum(size_bytes(p) for p in tmp.glob(path.name + "*")),
                         "kv_bytes_per_token": cache.bytes_per_token(cfg.num_hidden_layers, cfg.num_key_value_heads,
                                                                     head_dim),
                         "matmulnbits_nodes": census.get("MatMulNBits", 0),
                         "dequantize_nodes": census.get("DequantizeLinear", 0),
                         "matmulnbits_nodes_after_ort_optimization": fused.get("MatMulNBits", 0)})
        for row, timing in zip(rows, time_variants(sessions, cfg.hidden_size, args.context, args.steps)):
            row.update(timing)
        embed_bytes = size_bytes(embed)
    import onnxruntime

    result = {"schema": SCHEMA, "preset": args.preset, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
              "vocab": cfg.vocab_size, "max_seq_len": args.max_seq_len, "context": args.context,
              "threads": args.threads, "group_size": args.group_size, "onnxruntime": onnxruntime.__version__,
              "embed_bytes": embed_bytes, "rows": rows}
    print(f"{args.preset}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, "
          f"S={args.max_seq_len}, decode at {args.context}, {args.threads} threads, ORT {onnxruntime.__version__}; "
          f"embed graph {embed_bytes / 1e6:.1f} MB")
    print(f"{'variant':34} {'decoder MB':>10} {'KV B/tok':>9} {'prefill ms':>10} {'decode ms med':>13} "
          f"{'min':>7} {'NBits after opt':>15}")
    for r in rows:
        print(f"{r['variant']:34} {r['decoder_bytes'] / 1e6:10.1f} {r['kv_bytes_per_token']:9.0f} "
              f"{r['prefill_ms']:10.1f} {r['decode_ms_median']:13.2f} {r['decode_ms_min']:7.2f} "
              f"{r['matmulnbits_nodes_after_ort_optimization']:15d}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
