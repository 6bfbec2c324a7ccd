"""The `static` attention strategy: masked SDPA over the whole preallocated cache.

Portable to every exporter (torch.onnx, ExecuTorch without custom kernels): one decode step
attends over all max_seq_len positions with a causal mask, so its cost does not fall with a
short context (the `custom` strategy, custom_ops_attention.py, is the one whose cost does).
The cache is head-major [B, Hkv, S, Dh]: kv_cache.LayerCache (module buffers, mutated in place)
or stateless.GraphLayerCache (graph I/O, for ONNX); both take `write(name, positions, rows)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgevlm.export.decoder.kv_cache import LayerCache

NAME = "static"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def causal_mask(positions: torch.Tensor, max_seq_len: int) -> torch.Tensor:
    """[T, S] additive mask over the whole static cache: query i sees cache positions <= its own."""
    keys_pos = torch.arange(max_seq_len, dtype=torch.long)
    return torch.where(keys_pos[None, :] <= positions[:, None], 0.0, float("-inf"))


@dataclass
class StepContext:
    positions: torch.Tensor  # [T] cache positions written this step
    cos: torch.Tensor  # [T, Dh]
    sin: torch.Tensor
    mask: torch.Tensor  # [T, S]


class StaticAttention:
    name = NAME
    cache_class = LayerCache

    def install(self, decoder) -> None:
        """Nothing beyond the reference modules: the norms and projections are used as they are."""

    def prepare(self, decoder, x: torch.Tensor, start_pos: torch.Tensor) -> StepContext:
        positions, cos, sin = decoder.rope_rows(x, start_pos)
        return StepContext(positions, cos, sin, causal_mask(positions, decoder.max_seq_len))

    def norms(self, decoder, index: int, layer):
        return layer.input_layernorm, layer.post_attention_layernorm

    def final_norm(self, decoder):
        return decoder.norm

    def attend(self, decoder, index: int, attn, x: torch.Tensor, cache, step: StepContext) -> torch.Tensor:
        return static_attention(decoder, attn, x, cache, step.positions, step.cos, step.sin, step.mask)


def static_attention(decoder, attn, x, cache, positions, cos, sin, mask):
    """One layer's attention; x [B, T, D] (already normed), cos/sin [T, Dh], mask [T, S]."""
    b, t, _ = x.shape
    head_dim = decoder.head_dim
    q = attn.q_proj(x).view(b, t, -1, head_dim)
    k = attn.k_proj(x).view(b, t, -1, head_dim)
    v = attn.v_proj(x).view(b, t, -1, head_dim).transpose(1, 2)
    if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm per head before RoPE
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)  # [B, H, T, Dh]
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    if decoder.rotate:  # (qH)(kH)^T = q k^T: rotating both spreads key outliers before quantization
        q, k = q @ decoder.hadamard, k @ decoder.hadamard
    cache.write("k", positions, k)
    cache.write("v", positions, v)
    keys, values = cache.read("k", q.dtype), cache.read("v", q.dtype)  # [B, Hkv, S, Dh]
    groups = decoder.num_heads // decoder.kv_heads
    keys = keys.repeat_interleave(groups, dim=1)
    values = values.repeat_interleave(groups, dim=1)
    out = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask.to(q.dtype),
                                                           scale=attn.scaling)
    return attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
