"""ONNX decoder for ONNX Runtime (CPU EP): the ExportDecoder math with the KV cache as graph I/O.

ONNX graphs hold no state, so the static cache of export/decoder/kv_cache.py becomes explicit tensors:
per layer `past.{i}.{buffer}` in and `present.{i}.{buffer}` out, with the buffer names and
layouts of `LayerCache` (int4: `k_codes` uint8 [1, Hkv, S, Dh/2] + `k_scale`/`k_zero` fp16
[1, Hkv, S, Dh/group], same for `v_*`; fp32/fp16: `k_cache`/`v_cache`). The graph quantizes the
new rows and scatters them in at `input_pos` (ScatterND), reads the whole static cache back and
returns it; the runner feeds the outputs of one step back as the next step's inputs (OrtValues
bound with IO binding, so the cache never passes through numpy).

    text_decoder: embeddings f32 [1, T, D] (T dynamic), input_pos i64 [1], past.* -> logits f32 [1, V], present.*
    token_embedding: tokens i64 [1, T] -> embeddings f32 [1, T, D] (MiniCPM4's scale_emb inside)

Weights: fp32, or INT4 block-wise in the MatMulNBits layout of onnxruntime.quantization's block
quantizer (every linear, lm_head included; not the Hadamard rotation). The LLM arrives already
quantized, a layer at a time (export/llm_build.py: `NBitsLinear` modules export as the
com.microsoft op itself), and the graph is written with its initializers streamed to the external
data file: no fp32 copy of the weights and no `onnx.load` of a whole model is ever made (the old
path exported fp32, loaded it and quantized it: 3x the fp32 model for an 8B decoder). The
`quantize_weights` below, onnxruntime's own MatMulNBitsQuantizer over a saved fp32 graph, stays
as the independent check of that layout (tests) and for the benchmarks. Its two INT4
encodings were timed side by side (device_tests/decoder_onnx_bench.py: Qwen2.5-0.5B shape cut to 4
layers, S=1024, one decode step at position 512, ORT 1.32 CPU EP, 2 threads, minimum of 16
interleaved steps on a shared host): fp32 weights 272 ms; MatMulNBits with accuracy_level 4 (int8
activations in the kernel) 144 ms; opset-21 DequantizeLinear(int4) + MatMul 176 ms, because ORT's
CPU EP fuses that pair back into MatMulNBits at session load (29 MatMulNBits nodes in its optimized
graph); MatMulNBits with fp32 compute (accuracy_level unset) 305-322 ms, slower than fp32 here.
So the default is the contrib MatMulNBits op with accuracy_level 4 (the fastest; implemented by
ORT's CPU, CUDA, WebGPU and DirectML EPs), and `weight_format: qdq` writes the standard opset-21
form for runtimes and EPs that only read standard ONNX (about 1.2x slower on ORT CPU).
The token_embedding graph holds the table as the recipe's decoder `embedding` says: fp32, bf16,
or int8 per 32-wide row group (Gather of the codes and of the scales, standard ops).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgevlm.backends.ort_decoder import OrtDecoderBackend
from edgevlm.export.decoder.graph import ExportDecoder
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.decoder.stateless import StatelessDecoder, decoder_io_specs, empty_cache

OPSET = 21
WEIGHT_SCHEMES = OrtDecoderBackend.support.weights
# How INT4 weights are written: the contrib MatMulNBits op (default: fastest on ORT CPU) or the
# standard opset-21 DequantizeLinear(int4) + MatMul pair (portable to EPs that fuse QDQ).
WEIGHT_FORMATS = OrtDecoderBackend.support.weight_formats
EXTERNAL_DATA_BYTES = 1 << 30  # above this the weights go to <file>.data (protobuf stops at 2 GiB)
_OPTIONS = OrtDecoderBackend.support.options  # the option defaults, declared once by the backend


@dataclass(frozen=True)
class DecoderOnnxSpec:
    max_seq_len: int = 2048
    weights: str = "int4"  # fp32 | int4
    group_size: int = 32  # MatMulNBits block size: 32 | 64 | 128
    symmetric: bool = _OPTIONS["symmetric"]
    accuracy_level: int | None = _OPTIONS["accuracy_level"]  # MatMulNBits: 4 = int8 activations (fastest), None = fp32
    weight_format: str = _OPTIONS["weight_format"]  # matmulnbits | qdq
    cache: KVCacheSpec = KVCacheSpec()
    embedding: str = "fp32"  # token_embedding table: fp32 | bf16 | int8 (export/quantized_modules.py)


def _torch_export_onnx(module: nn.Module, args: tuple, names_in: list[str], names_out: list[str],
                       dynamic_shapes, path: Path, weight_format: str = "matmulnbits") -> list[Path]:
    """Export and save; weights go to <file>.data when they would overflow protobuf (streamed
    tensor by tensor from the module's own buffers). Returns the files written, the .onnx first."""
    from edgevlm.errors import EdgeVLMError

    from edgevlm.third_party import quiet_loggers

    try:
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad(), quiet_loggers("torch.onnx"):
            program = torch.onnx.export(module, args, input_names=names_in, output_names=names_out,
                                        dynamic_shapes=dynamic_shapes, opset_version=OPSET, dynamo=True,
                                        external_data=False, verbose=False)
    except Exception as e:
        raise EdgeVLMError(f"ONNX export of {path.name} failed: {e}", "report the failing op; the .pte "
                           "decoder (recipe backend executorch) is the alternative") from None
    if weight_format == "qdq":
        from edgevlm.export.onnx_qdq import matmulnbits_to_qdq

        matmulnbits_to_qdq(program.model)
    external = _initializer_bytes(program.model) > EXTERNAL_DATA_BYTES
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    program.save(str(path), external_data=external)
    return [path, data] if external else [path]


def _initializer_bytes(model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def quantize_weights(path: Path, spec: DecoderOnnxSpec):
    """onnxruntime's MatMulNBitsQuantizer (or its opset-21 QDQ int4 form) over a saved fp32 graph:
    every MatMul with a constant weight. The export itself quantizes before exporting
    (export/llm_build.py); this is the library's whole-model path, kept as the reference for that
    layout and for the benchmarks that time both encodings."""
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    if spec.weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight_format must be one of {WEIGHT_FORMATS}")
    fmt = QuantFormat.QOperator if spec.weight_format == "matmulnbits" else QuantFormat.QDQ
    config = DefaultWeightOnlyQuantConfig(block_size=spec.group_size, is_symmetric=spec.symmetric,
                                          accuracy_level=spec.accuracy_level, quant_format=fmt)
    model = onnx.load(str(path))
    # Only the linear layers: the Hadamard key rotation is a constant MatMul too, but it must stay exact.
    keep = [n.name for n in model.graph.node if n.op_type == "MatMul" and any("hadamard" in i for i in n.input)]
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=keep, algo_config=config)
    from edgevlm.third_party import quiet_loggers

    with quiet_loggers("onnxruntime.quantization"):  # per-node INFO/WARNING lines, for this call only
        quantizer.process()
    return quantizer.model.model


def weight_plan(spec: DecoderOnnxSpec, awq=None):
    """What export/llm_build.py turns the float LLM into for this spec."""
    from edgevlm.export.llm_build import WeightPlan

    return WeightPlan(scheme="int4" if spec.weights == "int4" else "fp32", group_size=spec.group_size,
                      symmetric=spec.symmetric, accuracy_level=spec.accuracy_level, embedding=spec.embedding, awq=awq)


def check_spec(spec: DecoderOnnxSpec) -> None:
    from edgevlm.errors import ConfigError

    if spec.weights not in WEIGHT_SCHEMES:
        raise ConfigError(f"unknown ONNX decoder weight scheme {spec.weights!r}",
                          f"use one of {', '.join(WEIGHT_SCHEMES)}")
    if spec.group_size not in (16, 32, 64, 128, 256):
        raise ConfigError(f"MatMulNBits block size {spec.group_size} is not supported",
                          "use 32, 64 or 128 (a power of two >= 16)")
    if spec.weight_format not in WEIGHT_FORMATS:
        raise ConfigError(f"unknown ONNX decoder weight_format {spec.weight_format!r}",
                          f"use one of {', '.join(WEIGHT_FORMATS)}")


def export_decoder_onnx(llm: nn.Module, spec: DecoderOnnxSpec, path: Path) -> list[Path]:
    """Write the text_decoder graph of `llm`, which is already in the spec's weight form (a float LLM
    for fp32; export/llm_build.py's NBitsLinear layers for int4). Returns the files written."""
    from torch.export import Dim

    check_spec(spec)
    path = Path(path)
    decoder = ExportDecoder(llm, spec.max_seq_len, spec.cache).eval()
    module = StatelessDecoder(decoder).eval()
    past = empty_cache(decoder)
    names = [s["name"] for s in decoder_io_specs(decoder)[0]]
    embeds = torch.zeros(1, 4, llm.config.hidden_size)
    seq = Dim("seq", min=1, max=spec.max_seq_len - 1)
    dynamic = ({1: seq}, None, [None] * len(past))  # *past is one varargs entry
    present = [n.replace("past.", "present.", 1) for n in names[2:]]
    return _torch_export_onnx(module, (embeds, torch.tensor([0]), past), names, ["logits", *present], dynamic, path,
                              spec.weight_format if spec.weights == "int4" else "matmulnbits")


def export_embedding_onnx(llm: nn.Module, path: Path, max_seq_len: int) -> list[Path]:
    """token_embedding: tokens i64 [1, T] -> [1, T, D] (the model's own embedding module, scaling included)."""
    from torch.export import Dim

    from edgevlm.export.decoder.pte import TokenEmbedding

    module = TokenEmbedding(llm.get_input_embeddings()).eval()
    seq = Dim("seq", min=1, max=max_seq_len - 1)
    return _torch_export_onnx(module, (torch.zeros(1, 4, dtype=torch.long),), ["tokens"], ["embeddings"], ({1: seq},),
                              Path(path))


def session(path: Path, threads: int | None = None):
    """An ORT CPU session (graph optimizations on; MatMulNBits is a CPU-EP contrib kernel)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_census(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts

