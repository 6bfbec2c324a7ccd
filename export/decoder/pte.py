"""ExecuTorch `.pte` decoders (XNNPACK) that follow ExecuTorch's LLM runner conventions.

Standalone text decoder (the text LLM runner): method `forward(tokens int64 [1, T], input_pos
int64 [1]) -> logits [1, V]`. Multimodal (the multimodal runner, as ExecuTorch's LLaVA export):
methods `token_embedding(tokens) -> [1, T, D]`, `text_decoder(embeds [1, T, D], input_pos) ->
logits [1, V]` and `vision_encoder(pixel_values, patch_mask, position_ids, resampler_pos) ->
[1, Q, D]` (the static vision contract of export/vision.py). Both carry the runner's metadata as
constant methods (get_max_seq_len, get_vocab_size, get_bos_id, get_eos_ids, use_kv_cache, ...),
plus the KV-cache format so a harness can tell caches apart without the manifest.

Weights: torchao group-wise INT4, either 8da4w (int8 dynamic activations, XNNPACK's fast path)
or weight-only, on every linear layer including lm_head, built a layer at a time
(export/llm_build.py); the token embedding fp32, bf16, or int8 / int4 per 32-wide row group, the
quantized ones run by ExecuTorch's quantized kernels (`quantized_decomposed::embedding_byte` /
`embedding_4bit`, kernels_quantized). A tied lm_head keeps its own copy: XNNPACK packs the
lm_head's 4-bit weights into its delegate blob, which the embedding gather cannot read. The KV cache is the
decoder's own static buffers (export/decoder/kv_cache.py), mutated in place by the program.

Memory: the quantized codes are the only copy of the weights while ExecuTorch lowers them
(`share_constants_in_lowering`), and the program is written piece by piece (`write_to_file`),
never joined into one buffer.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgevlm.backends.executorch_decoder import ExecuTorchDecoderBackend
from edgevlm.export.decoder import pte_names as names
from edgevlm.export.decoder.custom_ops_attention import NAME as CUSTOM
from edgevlm.export.decoder.graph import ExportDecoder
from edgevlm.export.decoder.kv_cache import FORMATS, KVCacheSpec
from edgevlm.export.decoder.static_attention import NAME as STATIC
from edgevlm.export.quantized_modules import executorch_embedding

# No weight-only "4w": XNNPACK runs 4-bit weights only with int8 dynamic activations, and with
# weight-only int4 ExecuTorch folded the dequantization into fp32 weights (an 8x larger .pte).
WEIGHT_SCHEMES = ExecuTorchDecoderBackend.support.weights
KV_FORMAT_CODES = {name: i for i, name in enumerate(FORMATS)}  # constant methods hold numbers, not strings


@dataclass(frozen=True)
class DecoderPteSpec:
    max_seq_len: int = 1024
    weights: str = "8da4w"  # fp32 | 8da4w
    group_size: int = 32
    cache: KVCacheSpec = KVCacheSpec()
    attention: str = STATIC  # static | custom (ExecuTorch custom ops: export/decoder/custom_ops_attention.py)
    embedding: str = "fp32"  # token-embedding table: fp32 | bf16 | int8 | int4 (export/quantized_modules.py)

    def weight_plan(self, awq=None):
        from edgevlm.export.llm_build import WeightPlan

        return WeightPlan(scheme=self.weights, group_size=self.group_size, embedding=self.embedding, awq=awq)


class TokenEmbedding(nn.Module):
    def __init__(self, embed: nn.Module):
        super().__init__()
        self.embed = embed

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens)


class TextDecoderWithEmbedding(nn.Module):
    """tokens -> logits, for the text-only runner."""

    def __init__(self, embed: nn.Module, decoder: ExportDecoder):
        super().__init__()
        self.embed, self.decoder = embed, decoder

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.embed(tokens), input_pos)


def quantize_weights(llm: nn.Module, spec: DecoderPteSpec) -> nn.Module:
    """A quantized copy of an in-memory LLM, in the form the .pte lowers (the reference model stays
    as it is: it is the oracle)."""
    if spec.weights not in WEIGHT_SCHEMES:
        from edgevlm.errors import ConfigError

        raise ConfigError(f"unknown decoder weight scheme {spec.weights!r}", f"use one of {', '.join(WEIGHT_SCHEMES)}")
    from edgevlm.export.llm_build import build_llm
    from edgevlm.export.llm_source import ModuleLayers

    return build_llm(ModuleLayers(llm), spec.weight_plan()).llm


@contextlib.contextmanager
def share_constants_in_lowering():
    """Let XNNPACK's preprocessing share the program's constant tensors instead of deep-copying them.

    ExecuTorch deep-copies every partition's program before any backend preprocesses it, weights
    included: 1 byte per int4 weight on top of the codes we hold, for the whole model at once (an
    8B decoder: +7.6 GB). XNNPACK's preprocess rewrites graphs but never writes into a constant
    tensor (it packs new bytes), so the copy may share them, which is what ExecuTorch's own CUDA
    backend does in its low-memory mode (`copy_exported_program_for_preprocess`). The .pte bytes
    are the same either way (tests/test_llm_build.py)."""
    from executorch.backends.xnnpack.xnnpack_preprocess import XnnpackBackend

    def copy_sharing_tensors(cls, edge_program, compile_specs):
        memo = {id(t): t for values in (edge_program.state_dict, edge_program.constants)
                for t in values.values() if isinstance(t, torch.Tensor)}
        return copy.deepcopy(edge_program, memo)

    original = XnnpackBackend.__dict__.get("copy_exported_program_for_preprocess")
    XnnpackBackend.copy_exported_program_for_preprocess = classmethod(copy_sharing_tensors)
    try:
        yield
    finally:
        if original is None:
            del XnnpackBackend.copy_exported_program_for_preprocess
        else:
            XnnpackBackend.copy_exported_program_for_preprocess = original


def runner_metadata(loaded, spec: DecoderPteSpec) -> dict:
    cfg, tok = loaded.config, loaded.tokenizer
    return {
        names.MAX_SEQ_LEN: spec.max_seq_len, names.MAX_CONTEXT_LEN: spec.max_seq_len,
        names.VOCAB_SIZE: cfg.llm.vocab_size, names.N_LAYERS: cfg.llm.num_hidden_layers,
        names.BOS_ID: tok.maybe_token_id(tok.bos_token) if tok.bos_token else -1,
        names.EOS_IDS: sorted(tok.stop_token_ids()), names.USE_KV_CACHE: True,
        names.USE_SDPA_WITH_KV_CACHE: spec.attention == CUSTOM,
        names.ENABLE_DYNAMIC_SHAPE: True,
        names.KV_CACHE_FORMAT: KV_FORMAT_CODES[spec.cache.format], names.KV_CACHE_BITS: spec.cache.bits,
        names.KV_CACHE_GROUP_SIZE: spec.cache.group_size if spec.cache.quantized else 0,
    }


RUNNERS = ("multimodal", "text")


def export_pte(loaded, spec: DecoderPteSpec, out: Path, runner: str = "multimodal", vision: tuple | None = None,
               llm: nn.Module | None = None) -> dict:
    """Write a decoder .pte for ExecuTorch's multimodal runner (token_embedding + text_decoder, plus
    vision_encoder when `vision` = (encoder, example inputs)) or its text runner (forward).

    llm: the LLM already in the spec's weight form (export/llm_build.py; what `edgevlm export`
    passes); by default the loaded reference LLM, quantized here. Returns the metadata written as
    constant methods.
    """
    if runner not in RUNNERS or (runner == "text" and vision is not None):
        raise ValueError(f"runner must be one of {RUNNERS}; only the multimodal runner carries a vision encoder")
    from torch.export import Dim, export

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    if llm is None:
        llm = quantize_weights(loaded.model.llm, spec)
    decoder = ExportDecoder(llm, spec.max_seq_len, spec.cache, attention=spec.attention).eval()
    embed = executorch_embedding(llm.get_input_embeddings())  # int8/int4: ExecuTorch's quantized kernel
    seq = Dim("seq", min=1, max=spec.max_seq_len - 1)
    tokens = torch.zeros(1, 4, dtype=torch.long)
    pos = torch.tensor([0], dtype=torch.long)
    programs = {}
    with torch.no_grad():
        if runner == "text":
            programs[names.TEXT_FORWARD] = export(TextDecoderWithEmbedding(embed, decoder), (tokens, pos),
                                         dynamic_shapes=({1: seq}, None), strict=False)
        else:
            if vision is not None:
                encoder, example = vision
                from edgevlm.export.vision import INPUT_NAMES

                programs[names.VISION_ENCODER] = export(encoder.eval(), tuple(torch.from_numpy(example[n])
                                                                          for n in INPUT_NAMES), strict=False)
            programs[names.TOKEN_EMBEDDING] = export(TokenEmbedding(embed), (tokens,), dynamic_shapes=({1: seq},),
                                                 strict=False)
            embeds = torch.zeros(1, 4, loaded.config.llm.hidden_size)
            programs[names.TEXT_DECODER] = export(decoder, (embeds, pos), dynamic_shapes=({1: seq}, None), strict=False)
    metadata = runner_metadata(loaded, spec)
    # The custom mode's INT8 cache is written by llama::update_cache and dequantized after it;
    # XNNPACK's merged partitions then form a dependency cycle through the cache, so each op is its
    # own delegate there. (INT4 goes through edgevlm::int4_sdpa, with no dequantize ops.)
    per_op = spec.attention == CUSTOM and spec.cache.format == "int8"
    with share_constants_in_lowering():
        lowered = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner(per_op_mode=per_op)],
                                              constant_methods=metadata,
                                              compile_config=EdgeCompileConfig(_check_ir_validity=False))
    del programs
    program = lowered.to_executorch()
    del lowered
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with open(tmp, "wb") as f:
            program.write_to_file(f)  # piece by piece: `program.buffer` would join a model-sized bytes
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return metadata


def uses_int4_attention(path: Path) -> bool:
    """Whether a .pte calls edgevlm::int4_sdpa (operator names are plain strings in the program)."""
    stat = Path(path).stat()
    return _scan_for_int4_attention(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _scan_for_int4_attention(path: str, mtime_ns: int, size: int) -> bool:
    # once per file version: a runner loads two or three methods of the same (GB-sized) program
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b"edgevlm::int4_sdpa") >= 0


def load_pte_kernels(path: Path) -> None:
    """Register the kernels a decoder .pte may name before ExecuTorch loads it (SPEC section 4)."""
    import executorch.kernels.quantized  # noqa: F401  (quantized embedding kernels)
    from edgevlm.export.decoder.custom_ops_attention import load_custom_ops

    load_custom_ops()  # llama::update_cache / custom_sdpa kernels for `custom`-attention programs
    if uses_int4_attention(path):
        from edgevlm.export.decoder.int4_attention import load_kernel_library

        load_kernel_library()  # compiled on first use (export/kernels/int4_sdpa.cpp)


@contextlib.contextmanager
def torch_on_one_thread():
    """Run a stretch of ExecuTorch (or ONNX Runtime) calls with torch's own work on the calling thread.

    A program runs on the runtime's thread pool, but torch still copies each output (a [1, vocab]
    logits row) and the caller's argmax reads it. Both are big enough for torch to wake its OpenMP
    team, whose threads then spin-wait through the next step on the cores the runtime's pool needs
    (0.5B INT4 .pte on 2 cores, greedy decode through PteDecoderSession: 87 -> 146 tok/s).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_pte_method(path: Path, method: str):
    """Load a method of a .pte with the Python runtime (kernels registered first)."""
    load_pte_kernels(path)
    from executorch.runtime import Runtime

    from edgevlm.third_party import native_stderr

    with native_stderr("executorch"):  # its C++ runtime probes the CPU and prints what it could not read
        return Runtime.get().load_program(str(path)).load_method(method)
