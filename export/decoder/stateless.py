"""The stateless form of ExportDecoder: the KV cache as graph inputs and outputs (the ONNX decoder).

(embeddings, input_pos, past.<i>.<buffer>...) -> (logits, present.<i>.<buffer>...): the same
layer loop and static attention as the stateful decoder, over GraphLayerCache, which rebinds
out-of-place updates instead of mutating buffers. Also the names, shapes and dtypes of that I/O
(what the manifest lists and an app allocates).
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.export.decoder.graph import ExportDecoder
from edgevlm.export.decoder.kv_cache import KVCacheSpec, dequantize, quantize
from edgevlm.export.decoder.static_attention import StaticAttention


def cache_buffer_names(spec: KVCacheSpec) -> list[str]:
    parts = ("codes", "scale", "zero") if spec.quantized else ("cache",)
    return [f"{kv}_{part}" for kv in ("k", "v") for part in parts]


def cache_tensor_specs(spec: KVCacheSpec, layers: int, kv_heads: int, max_seq_len: int, head_dim: int,
                       prefix: str = "past") -> list[dict]:
    """Name, shape and dtype of every cache tensor, in graph order (what an app allocates)."""
    out = []
    for i in range(layers):
        for buf in cache_buffer_names(spec):
            if buf.endswith("_codes"):
                width, dtype = (head_dim // 2 if spec.bits == 4 else head_dim), "uint8"
            elif spec.quantized:
                width, dtype = head_dim // spec.group_size, "float16"
            else:
                width, dtype = head_dim, "float16" if spec.format == "fp16" else "float32"
            out.append({"name": f"{prefix}.{i}.{buf}", "shape": [1, kv_heads, max_seq_len, width], "dtype": dtype})
    return out


class GraphLayerCache:
    """One layer's cache held as graph tensors: `write` rebinds out-of-place updates (no state)."""

    def __init__(self, spec: KVCacheSpec, tensors: dict[str, torch.Tensor]):
        self.spec, self.tensors = spec, dict(tensors)

    def write(self, name: str, at: torch.Tensor, rows: torch.Tensor) -> None:
        """rows [B, Hkv, T, Dh] go to sequence positions `at` [T] (index_copy: a new tensor)."""
        if self.spec.quantized:
            codes, scale, zero = quantize(rows, self.spec.bits, self.spec.group_size)
            updates = {f"{name}_codes": codes, f"{name}_scale": scale, f"{name}_zero": zero}
        else:
            updates = {f"{name}_cache": rows}
        for key, value in updates.items():
            cache = self.tensors[key]
            self.tensors[key] = cache.index_copy(2, at, value.to(cache.dtype))

    def read(self, name: str, dtype=torch.float32) -> torch.Tensor:
        if self.spec.quantized:
            t = self.tensors
            return dequantize(t[f"{name}_codes"], t[f"{name}_scale"], t[f"{name}_zero"], self.spec.bits,
                              self.spec.group_size, dtype)
        return self.tensors[f"{name}_cache"].to(dtype)


class StatelessDecoder(nn.Module):
    """(embeddings, input_pos, *past) -> (logits, *present): ExportDecoder's layers, cache as I/O."""

    def __init__(self, decoder: ExportDecoder):
        super().__init__()
        if decoder.attention != StaticAttention.name:
            raise ValueError("the stateless (ONNX) decoder needs ExportDecoder(attention='static')")
        self.decoder = decoder  # the attribute name prefixes every initializer of the graph
        self.buffers_per_layer = cache_buffer_names(decoder.cache_spec)

    def forward(self, inputs_embeds: torch.Tensor, input_pos: torch.Tensor, past: list[torch.Tensor]):
        d = self.decoder
        n = len(self.buffers_per_layer)
        caches = [GraphLayerCache(d.cache_spec, dict(zip(self.buffers_per_layer, past[i * n:(i + 1) * n])))
                  for i in range(len(d.layers))]
        x = d.run_layers(inputs_embeds, input_pos, caches)  # ExportDecoder's own loop, these caches
        # [:, -1:] keeps lm_head a 3-D MatMul (a 2-D one exports as Gemm, which MatMulNBits skips).
        logits = d.lm_head(d.norm(x[:, -1:]))[:, 0]
        return (logits, *[c.tensors[b] for c in caches for b in self.buffers_per_layer])


def empty_cache(decoder: ExportDecoder) -> list[torch.Tensor]:
    """Zeroed past tensors in graph order (the layout of ExportDecoder's own buffers)."""
    return [getattr(c, b).detach().clone().zero_() for c in decoder.caches for b in cache_buffer_names(decoder.cache_spec)]


def io_specs(cache: KVCacheSpec, layers: int, kv_heads: int, max_seq_len: int, head_dim: int, hidden: int,
             vocab: int) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of the text_decoder graph, as the manifest lists them."""
    past = cache_tensor_specs(cache, layers, kv_heads, max_seq_len, head_dim)
    inputs = [{"name": "embeddings", "shape": [1, "T", hidden], "dtype": "float32"},
              {"name": "input_pos", "shape": [1], "dtype": "int64"}] + past
    outputs = [{"name": "logits", "shape": [1, vocab], "dtype": "float32"}] + [
        s | {"name": s["name"].replace("past.", "present.", 1)} for s in past]
    return inputs, outputs


def decoder_io_specs(decoder: ExportDecoder) -> tuple[list[dict], list[dict]]:
    vocab, hidden = decoder.vocab_size, decoder.hidden_size
    return io_specs(decoder.cache_spec, len(decoder.layers), decoder.kv_heads, decoder.max_seq_len,
                    decoder.head_dim, hidden, vocab)
