"""KV-cache storage formats for the export decoder: fp32, fp16, int8 and packed INT4.

Quantized formats are asymmetric and group-wise along the head dimension of each token
("per-token" groups): a new token's keys/values are quantized once when written and never
touched again, which is what a static, append-only cache needs (per-channel key groups span
tokens, so their scales would change as the cache fills). Outlier channels in the keys are the
usual objection to per-token key groups; the optional Hadamard rotation spreads them over the
channels of the head before quantization (q.k is unchanged because the rotation is orthogonal and
applied to the queries too). A head whose size is not a power of two (MiniCPM4's 80) is rotated
in blocks: block-diagonal Sylvester matrices of the largest power of two that divides it (5 x 16).

INT4 layout per layer: codes uint8 [B, Hkv, S, Dh/2] (element 2i in the low nibble, 2i+1 in the
high one), scale and zero float16 [B, Hkv, S, Dh/group]; value = code * scale + zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

import torch

from edgevlm.export.decoder.kv_formats import FORMATS  # noqa: F401  (re-export: the format names)


@dataclass(frozen=True)
class KVCacheSpec:
    format: str = "int4"  # fp32 | fp16 | int8 | int4
    group_size: int = 32  # head-dim elements per scale/zero (quantized formats)
    rotate_keys: bool = True  # Hadamard-rotate queries and keys before quantizing keys

    @property
    def bits(self) -> int:
        return {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}[self.format]

    @property
    def quantized(self) -> bool:
        return self.format in ("int8", "int4")

    def validate(self, head_dim: int) -> None:
        from edgevlm.errors import ConfigError

        if self.format not in FORMATS:
            raise ConfigError(f"unknown KV-cache format {self.format!r}", f"use one of {', '.join(FORMATS)}")
        if self.quantized and (head_dim % self.group_size or self.group_size % 2):
            raise ConfigError(f"KV group size {self.group_size} does not split head_dim {head_dim} into even groups",
                              f"use kv_group_size: auto ({auto_group_size(head_dim)} for this model) or one of "
                              f"{', '.join(map(str, allowed_group_sizes(head_dim)))}")

    def bytes_per_token(self, layers: int, kv_heads: int, head_dim: int) -> float:
        """Cache bytes one token costs across all layers (keys + values, scales and zeros included)."""
        per_head = head_dim * self.bits / 8
        if self.quantized:
            per_head += 2 * 2 * head_dim / self.group_size  # fp16 scale + fp16 zero per group
        return 2 * layers * kv_heads * per_head

    def to_dict(self) -> dict:
        return asdict(self) | {"bits": self.bits}


def allowed_group_sizes(head_dim: int) -> list[int]:
    """Even divisors of the head dimension (the INT4 kernels read groups as pairs of codes)."""
    return [g for g in range(2, head_dim + 1, 2) if head_dim % g == 0]


def auto_group_size(head_dim: int) -> int:
    """The default quantization group: the largest power of two up to 32 that divides the head
    (64 / 128-dim heads: 32; MiniCPM4's 80: 16). Powers of two keep the kernels' group loops
    aligned; `edgevlm kv-compare` reports the error of every valid group of a model's head."""
    return max(g for g in (2, 4, 8, 16, 32) if head_dim % g == 0)


def rotation_block(head_dim: int) -> int:
    """Size of the Hadamard blocks that rotate a head: the largest power of two dividing it."""
    return head_dim & -head_dim


def hadamard(n: int, dtype=torch.float32) -> torch.Tensor:
    """Orthonormal rotation of size n: the Sylvester Hadamard matrix for a power of two, else the
    block-diagonal matrix of Sylvester blocks of rotation_block(n)."""
    block = rotation_block(n)
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < block:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    h = torch.block_diag(*[h] * (n // block))
    return (h / math.sqrt(block)).to(dtype)


def quantize(x: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [..., D] -> (codes uint8 [..., D] or packed [..., D/2] for 4 bits, scale, zero [..., D/group] fp16)."""
    levels = (1 << bits) - 1
    g = x.float().reshape(*x.shape[:-1], x.shape[-1] // group, group)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    scale = ((hi - lo) / levels).clamp_min(1e-8)
    # Round the fp16-stored parameters first so quantization and dequantization agree exactly.
    scale, lo = scale.half().float(), lo.half().float()
    codes = ((g - lo) / scale).round().clamp(0, levels).reshape(x.shape)
    if bits == 4:  # arithmetic, not bit shifts: ExecuTorch's portable kernels have no shift ops
        codes = codes[..., 0::2] + codes[..., 1::2] * 16
    return codes.to(torch.uint8), scale.squeeze(-1).half(), lo.squeeze(-1).half()


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, group: int,
               dtype=torch.float32) -> torch.Tensor:
    codes = codes.to(dtype)
    if bits == 4:
        high = torch.floor(codes / 16)
        codes = torch.stack([codes - high * 16, high], dim=-1).flatten(-2)
    d = codes.shape[-1]
    g = codes.reshape(*codes.shape[:-1], d // group, group)
    return (g * scale.to(dtype)[..., None] + zero.to(dtype)[..., None]).reshape(codes.shape)


def register_cache_buffers(module: torch.nn.Module, spec: KVCacheSpec, shape: tuple[int, int, int, int]) -> None:
    """k/v buffers of one layer: `<k|v>_cache` for float formats, `_codes` (uint8, two 4-bit codes per
    byte for int4) + fp16 `_scale`/`_zero` per group for quantized ones. The last dim is head_dim."""
    head_dim = shape[-1]
    for name in ("k", "v"):
        if spec.quantized:
            width = head_dim // 2 if spec.bits == 4 else head_dim
            groups = head_dim // spec.group_size
            module.register_buffer(f"{name}_codes", torch.zeros(*shape[:3], width, dtype=torch.uint8))
            module.register_buffer(f"{name}_scale", torch.zeros(*shape[:3], groups, dtype=torch.float16))
            module.register_buffer(f"{name}_zero", torch.zeros(*shape[:3], groups, dtype=torch.float16))
        else:
            dtype = torch.float16 if spec.format == "fp16" else torch.float32
            module.register_buffer(f"{name}_cache", torch.zeros(shape, dtype=dtype))


class LayerKVCache(Protocol):
    """What every layer cache offers the attention strategies (LayerCache: head-major module
    buffers; custom_ops_attention.SeqMajorLayerCache: sequence-major buffers for the custom ops;
    stateless.GraphLayerCache: graph I/O tensors for ONNX)."""

    def write(self, name: str, at, rows: torch.Tensor) -> None:
        """Store the `k` or `v` rows of this step. `at` is where they go, in the form the layout
        indexes by: a positions tensor [T] (head-major caches) or the start position (sequence-major)."""


class LayerCache(torch.nn.Module):
    """One layer's static cache in the chosen format; `write` stores new rows, `read` returns floats."""

    def __init__(self, spec: KVCacheSpec, batch: int, kv_heads: int, max_seq_len: int, head_dim: int):
        super().__init__()
        self.spec = spec
        register_cache_buffers(self, spec, (batch, kv_heads, max_seq_len, head_dim))

    def write(self, name: str, at: torch.Tensor, rows: torch.Tensor) -> None:
        """rows [B, Hkv, T, Dh] go to sequence positions `at` [T] (index_copy_: exports as a mutable buffer)."""
        if self.spec.quantized:
            codes, scale, zero = quantize(rows, self.spec.bits, self.spec.group_size)
            getattr(self, f"{name}_codes").index_copy_(2, at, codes)
            getattr(self, f"{name}_scale").index_copy_(2, at, scale)
            getattr(self, f"{name}_zero").index_copy_(2, at, zero)
        else:
            cache = getattr(self, f"{name}_cache")
            cache.index_copy_(2, at, rows.to(cache.dtype))

    def read(self, name: str, dtype=torch.float32) -> torch.Tensor:
        if self.spec.quantized:
            return dequantize(getattr(self, f"{name}_codes"), getattr(self, f"{name}_scale"),
                              getattr(self, f"{name}_zero"), self.spec.bits, self.spec.group_size, dtype)
        return getattr(self, f"{name}_cache").to(dtype)

    def reset(self) -> None:
        for buffer in self.buffers():
            buffer.zero_()
