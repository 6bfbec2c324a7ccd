"""The `custom` attention strategy of ExportDecoder: ExecuTorch's LLM custom ops, cost that grows with the context.

The default (`static`) mode attends over all max_seq_len cache positions with a mask, so one decode
step costs the same at context 10 as at 4096, a quantized cache is dequantized whole every step,
and its functional `index_copy_` writes back whole buffers. This mode does what ExecuTorch's own
llama export does instead:

- the cache is sequence-major [B, S, Hkv, Dh] (the layout of `llama::update_cache` and
  `llama::custom_sdpa`), written in place by `llama::update_cache` at start_pos;
- `llama::custom_sdpa` (causal, grouped-query) reads only positions < start_pos + T;
- an INT4 cache is written by `edgevlm::int4_update_cache` and never dequantized into a float
  tensor: `edgevlm::int4_sdpa` attends over the packed codes directly (export/decoder/int4_attention.py,
  kernels of ours registered with ExecuTorch), so a decode step reads 4.5 bits per cached element
  instead of 32, and XNNPACK merges partitions as it does for the float cache (quantize and
  dequantize ops around `llama::update_cache` formed dependency cycles between partitions);
- an INT8 cache is dequantized only up to start_pos + T (a `narrow` by the unbacked start
  position, as ExecuTorch's llama mask slicing does) before `llama::custom_sdpa`;
- RMSNorms take their mean of squares as a fully-connected layer (LinearRMSNorm). XNNPACK does
  not delegate the reference's mean over the last dim of a 3-D tensor: every norm ran as a portable
  kernel and cut the layer's XNNPACK partition in two.

Storage formats and quantization are those of export/decoder/kv_cache.py; only the layout differs.
The ops come from executorch.extension.llm.custom_ops (their kernels ship in the pip wheel), so
this strategy is for the ExecuTorch .pte; ONNX exports use the static one (static_attention.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgevlm.export.decoder.kv_cache import KVCacheSpec, quantize, register_cache_buffers

NAME = "custom"


def load_custom_ops() -> None:
    """Register llama::update_cache / llama::custom_sdpa and edgevlm::int4_update_cache / int4_sdpa
    (eager kernels and export meta functions; edgevlm's ExecuTorch kernels are loaded where a
    program runs, export/decoder/pte.load_pte_method)."""
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401

    from edgevlm.export.decoder.int4_attention import register_op

    register_op()


class LinearRMSNorm(nn.Module):
    """The reference RMSNorm (Llama / Qwen2 / Qwen3 / MiniCPM: weight * x * rsqrt(mean(x^2) + eps),
    computed in fp32) with mean(x^2) + eps written as one fully-connected layer: F.linear(x * x,
    [1/D ... 1/D], bias=eps). XNNPACK then runs a norm as 5 ops (square, FC, rsqrt, 2 multiplies);
    the pooled mean it takes otherwise needs reshapes and transposes around it (10 ops), and each op
    of a decode step costs about a microsecond of XNNPACK's per-call setup whatever its size.
    Shares the reference module's weight; the reference model is not modified."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.weight = norm.weight
        width = norm.weight.shape[-1]
        self.register_buffer("mean_weight", torch.full((1, width), 1.0 / width), persistent=False)
        self.register_buffer("eps", torch.tensor([float(norm.variance_epsilon)]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        variance = F.linear(x * x, self.mean_weight, self.eps)  # [..., 1]
        return self.weight * (x * torch.rsqrt(variance)).to(dtype)


class SeqMajorLayerCache(nn.Module):
    """One layer's cache, [B, S, Hkv, Dh]-shaped, in a KVCacheSpec format."""

    def __init__(self, spec: KVCacheSpec, batch: int, kv_heads: int, max_seq_len: int, head_dim: int):
        super().__init__()
        self.spec = spec
        register_cache_buffers(self, spec, (batch, max_seq_len, kv_heads, head_dim))

    def write(self, name: str, at, rows: torch.Tensor) -> None:
        """rows [B, T, Hkv, Dh] go to positions at .. at+T-1 (`at`: the start position), in place."""
        if self.spec.bits == 4:  # quantize + write in one kernel (export/decoder/int4_attention.py)
            torch.ops.edgevlm.int4_update_cache(rows.float(), *self.quantized_buffers(name), at)
        elif self.spec.quantized:
            new = quantize(rows, self.spec.bits, self.spec.group_size)
            for part, buffer in zip(new, self.quantized_buffers(name)):
                torch.ops.llama.update_cache(part, buffer, at)
        else:
            cache = getattr(self, f"{name}_cache")
            torch.ops.llama.update_cache(rows.to(cache.dtype), cache, at)

    def quantized_buffers(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes, scale, zero) of the `k` or `v` cache of a quantized format."""
        return getattr(self, f"{name}_codes"), getattr(self, f"{name}_scale"), getattr(self, f"{name}_zero")

    def attend(self, q: torch.Tensor, start: int, scale: float) -> torch.Tensor:
        """Causal grouped-query attention of q [B, T, H, Dh] (positions start..) over the cache."""
        if self.spec.bits == 4:
            return torch.ops.edgevlm.int4_sdpa(q, *self.quantized_buffers("k"), *self.quantized_buffers("v"),
                                               start, scale)
        end = start + q.shape[1]
        keys, values = self.read("k", end), self.read("v", end)
        return torch.ops.llama.custom_sdpa(q, keys, values, start, None, 0.0, True, scale)

    def read(self, name: str, end: int) -> torch.Tensor:
        """float32 [B, S', Hkv, Dh] holding at least positions 0 .. end-1 (custom_sdpa ignores the rest).
        Float and INT8 caches only: an INT4 cache is read by edgevlm::int4_sdpa, never dequantized."""
        if self.spec.bits == 4:
            raise ValueError("an INT4 cache is attended by edgevlm::int4_sdpa (attend), not read back")
        if not self.spec.quantized:
            cache = getattr(self, f"{name}_cache")
            return cache if cache.dtype == torch.float32 else cache.narrow(1, 0, end).float()
        codes, scale, zero = (buffer.narrow(1, 0, end) for buffer in self.quantized_buffers(name))
        scale, zero = scale.float(), zero.float()
        b, s, h = codes.shape[:3]
        values = codes.float().reshape(b, s, h, scale.shape[-1], -1) * scale[..., None] + zero[..., None]
        return values.reshape(b, s, h, -1)

    def reset(self) -> None:
        for buffer in self.buffers():
            buffer.zero_()


def start_position(start_pos: torch.Tensor, t: int, max_seq_len: int):
    """The start position as a (possibly unbacked) integer, bounded for export."""
    start = start_pos[0].item()
    torch._check_is_size(start)
    torch._check(start < max_seq_len)
    torch._check(start + t <= max_seq_len)
    return start


def layer_norms(layer: nn.Module) -> nn.ModuleDict:
    """A decoder layer's RMSNorms (Qwen3's q/k norms included) in the LinearRMSNorm form."""
    norms = {"input": layer.input_layernorm, "post": layer.post_attention_layernorm}
    if hasattr(layer.self_attn, "q_norm"):
        norms |= {"q": layer.self_attn.q_norm, "k": layer.self_attn.k_norm}
    return nn.ModuleDict({name: LinearRMSNorm(norm) for name, norm in norms.items()})


def rotate_half_weight(head_dim: int) -> torch.Tensor:
    """W with F.linear(x, W) == rotate_half(x) == cat(-x[half:], x[:half]): RoPE's rotation as one
    fully-connected layer. rotate_half's slices have a symbolic sequence dim, so XNNPACK leaves them
    to portable kernels, which cut each layer into more partitions (74 delegate calls per 0.5B
    decode step). Exact: one +-1 term per output."""
    half = head_dim // 2
    weight = torch.zeros(head_dim, head_dim)
    rows = torch.arange(half)
    weight[rows, rows + half] = -1.0
    weight[rows + half, rows] = 1.0
    return weight


def custom_attention(decoder, attn, x, cache: SeqMajorLayerCache, start, cos, sin, norms: nn.ModuleDict):
    """One layer's attention in the custom mode; x [B, T, D], cos/sin [T, 1, Dh]."""
    # [B, T, H, Dh]: the custom ops' layout. The symbolic T is the one -1: XNNPACK delegates a
    # reshape with a single inferred dim, and a reshape left outside splits the layer's partition.
    b, heads, kv_heads, head_dim = x.shape[0], decoder.num_heads, decoder.kv_heads, decoder.head_dim
    q = attn.q_proj(x).view(b, -1, heads, head_dim)
    k = attn.k_proj(x).view(b, -1, kv_heads, head_dim)
    v = attn.v_proj(x).view(b, -1, kv_heads, head_dim)
    if "q" in norms:  # Qwen3: per-head RMSNorm before RoPE
        q, k = norms["q"](q), norms["k"](k)
    if cache.spec.bits == 4:  # one edgevlm::rope kernel each (built with the INT4 cache kernels)
        q = torch.ops.edgevlm.rope(q, decoder.rope_cos, decoder.rope_sin, start, decoder.rotate)
        k = torch.ops.edgevlm.rope(k, decoder.rope_cos, decoder.rope_sin, start, decoder.rotate)
    else:
        # F.linear, not matmul: aten.linear stays one XNNPACK fully-connected node on the 4-D tensor,
        # where matmul decomposes into reshapes of the symbolic shape that XNNPACK does not take
        q = q * cos + F.linear(q, decoder.rope_rotation) * sin
        k = k * cos + F.linear(k, decoder.rope_rotation) * sin
        if decoder.rotate:  # the Sylvester Hadamard matrix is symmetric: linear(x, H) = x @ H
            q, k = F.linear(q, decoder.hadamard), F.linear(k, decoder.hadamard)
    cache.write("k", start, k)
    cache.write("v", start, v)
    return attn.o_proj(cache.attend(q, start, attn.scaling).reshape(b, -1, heads * head_dim))


@dataclass
class StepContext:
    start: int  # the (unbacked) start position of this step
    cos: torch.Tensor  # [T, 1, Dh]: broadcast over heads, once for all layers
    sin: torch.Tensor


class CustomOpsAttention:
    name = NAME
    cache_class = SeqMajorLayerCache

    def install(self, decoder) -> None:
        """The LinearRMSNorm twins of the reference norms and RoPE's rotation as a weight (the
        attribute names are part of the exported program: custom_norms, final_norm, rope_rotation)."""
        load_custom_ops()
        decoder.custom_norms = nn.ModuleList(layer_norms(layer) for layer in decoder.layers)
        decoder.final_norm = LinearRMSNorm(decoder.norm)
        decoder.register_buffer("rope_rotation", rotate_half_weight(decoder.head_dim), persistent=False)

    def prepare(self, decoder, x: torch.Tensor, start_pos: torch.Tensor) -> StepContext:
        _, cos, sin = decoder.rope_rows(x, start_pos)
        start = start_position(start_pos, x.shape[1], decoder.max_seq_len)
        return StepContext(start, cos[:, None], sin[:, None])

    def norms(self, decoder, index: int, layer):
        norms = decoder.custom_norms[index]
        return norms["input"], norms["post"]

    def final_norm(self, decoder):
        return decoder.final_norm

    def attend(self, decoder, index: int, attn, x: torch.Tensor, cache, step: StepContext) -> torch.Tensor:
        return custom_attention(decoder, attn, x, cache, step.start, step.cos, step.sin, decoder.custom_norms[index])
