"""The `custom` attention mode of ExportDecoder: ExecuTorch's LLM custom ops, cost that grows with the context.

The default (`static`) mode attends over all max_seq_len cache positions with a mask, so one decode
step costs the same at context 10 as at 4096, a quantized cache is dequantized whole every step,
and its functional `index_copy_` writes back whole buffers. This mode does what ExecuTorch's own
llama export does instead:

- the cache is sequence-major [B, S, Hkv, Dh] (the layout of `llama::update_cache` and
  `llama::custom_sdpa`), written in place by `llama::update_cache` at start_pos;
- `llama::custom_sdpa` (causal, grouped-query) reads only positions < start_pos + T;
- a quantized cache is dequantized only up to start_pos + T (a `narrow` by the unbacked start
  position, as ExecuTorch's llama mask slicing does), INT4 codes through a 256-entry table
  (one gather turns a byte into both nibbles) rather than the arithmetic unpack.

Storage formats and quantization are those of export/kv_cache.py; only the layout differs.
The ops come from executorch.extension.llm.custom_ops (their kernels ship in the pip wheel), so
this mode is for the ExecuTorch .pte; ONNX exports keep the default mode.
"""

from __future__ import annotations

import torch
from torch import nn

from edgevlm.export.kv_cache import KVCacheSpec, quantize, register_cache_buffers

ATTENTION_MODES = ("static", "custom")


def load_custom_ops() -> None:
    """Register llama::update_cache / llama::custom_sdpa (eager kernels and export meta functions)."""
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401


def nibble_table(dtype=torch.float32) -> torch.Tensor:
    """[256, 2]: byte b -> (low nibble, high nibble) as floats (the INT4 packing of kv_cache.py)."""
    codes = torch.arange(256)
    return torch.stack([codes % 16, codes // 16], dim=-1).to(dtype)


class SeqMajorLayerCache(nn.Module):
    """One layer's cache, [B, S, Hkv, Dh]-shaped, in a KVCacheSpec format."""

    def __init__(self, spec: KVCacheSpec, batch: int, kv_heads: int, max_seq_len: int, head_dim: int):
        super().__init__()
        self.spec = spec
        register_cache_buffers(self, spec, (batch, max_seq_len, kv_heads, head_dim))
        if spec.bits == 4:
            self.register_buffer("nibbles", nibble_table(), persistent=False)

    def write(self, name: str, start: int, rows: torch.Tensor) -> None:
        """rows [B, T, Hkv, Dh] go to positions start .. start+T-1, in place."""
        if self.spec.quantized:
            codes, scale, zero = quantize(rows, self.spec.bits, self.spec.group_size)
            torch.ops.llama.update_cache(codes, getattr(self, f"{name}_codes"), start)
            torch.ops.llama.update_cache(scale, getattr(self, f"{name}_scale"), start)
            torch.ops.llama.update_cache(zero, getattr(self, f"{name}_zero"), start)
        else:
            cache = getattr(self, f"{name}_cache")
            torch.ops.llama.update_cache(rows.to(cache.dtype), cache, start)

    def read(self, name: str, end: int) -> torch.Tensor:
        """float32 [B, S', Hkv, Dh] holding at least positions 0 .. end-1 (custom_sdpa ignores the rest)."""
        if not self.spec.quantized:
            cache = getattr(self, f"{name}_cache")
            return cache if cache.dtype == torch.float32 else cache.narrow(1, 0, end).float()
        codes = getattr(self, f"{name}_codes").narrow(1, 0, end)
        scale = getattr(self, f"{name}_scale").narrow(1, 0, end).float()
        zero = getattr(self, f"{name}_zero").narrow(1, 0, end).float()
        if self.spec.bits == 4:
            values = nn.functional.embedding(codes.long(), self.nibbles)  # [B, S', Hkv, Dh/2, 2]
        else:
            values = codes.float()
        b, s, h = codes.shape[:3]
        groups = scale.shape[-1]
        values = values.reshape(b, s, h, groups, -1) * scale[..., None] + zero[..., None]
        return values.reshape(b, s, h, -1)

    def reset(self) -> None:
        for buffer in self.buffers():
            if buffer is not getattr(self, "nibbles", None):
                buffer.zero_()


def start_position(start_pos: torch.Tensor, t: int, max_seq_len: int):
    """The start position as a (possibly unbacked) integer, bounded for export."""
    start = start_pos[0].item()
    torch._check_is_size(start)
    torch._check(start < max_seq_len)
    torch._check(start + t <= max_seq_len)
    return start


def custom_attention(decoder, attn, x, cache: SeqMajorLayerCache, start, cos, sin):
    """One layer's attention in the custom mode; x [B, T, D], cos/sin [T, Dh]."""
    from edgevlm.export.decoder import rotate_half

    b, t, _ = x.shape
    q = attn.q_proj(x).view(b, t, -1, decoder.head_dim)  # [B, T, H, Dh]: the custom ops' layout
    k = attn.k_proj(x).view(b, t, -1, decoder.head_dim)
    v = attn.v_proj(x).view(b, t, -1, decoder.head_dim)
    if hasattr(attn, "q_norm"):
        q, k = attn.q_norm(q), attn.k_norm(k)
    cos, sin = cos[:, None], sin[:, None]
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    if decoder.rotate:
        q, k = q @ decoder.hadamard, k @ decoder.hadamard
    cache.write("k", start, k)
    cache.write("v", start, v)
    end = start + t
    out = torch.ops.llama.custom_sdpa(q, cache.read("k", end), cache.read("v", end), start, None, 0.0, True,
                                      attn.scaling)
    return attn.o_proj(out.reshape(b, t, -1))
