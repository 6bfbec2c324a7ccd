"""`edgevlm::rope`: rotary position embedding of new query or key rows, with the INT4 cache's
Hadamard rotation after it, as one op.

    rope(x float32 [B, T, H, D], cos, sin float32 [S, D], start_pos, hadamard) -> [B, T, H, D]
    y = x * cos[p] + rotate_half(x) * sin[p] for positions p = start_pos .. start_pos + T - 1;
    out = y @ hadamard(D) when `hadamard`, else y: orthonormal Sylvester blocks of the largest power of
    two dividing D (the whole head for 64 / 128, 5 blocks of 16 for MiniCPM4's 80; kv_cache.hadamard).

cos/sin are the decoder's tables for every cache position (the model's own rotary embedding,
Llama-3 / LongRoPE scaling included), so the op picks its rows by start_pos: no per-step index ops.
Registered with the INT4 cache ops by int4_attention.register_op.
In the graph this was five XNNPACK ops per tensor per layer; the ExecuTorch kernel is
export/kernels/rope.cpp, built and loaded with the INT4 cache kernels (export/decoder/int4_attention.py),
which is why the decoder uses it only where those kernels are required anyway (an INT4 cache).
"""

from __future__ import annotations

import torch

OP_NAME = "rope"
_ARGS = "Tensor x, Tensor cos, Tensor sin, SymInt start_pos, bool hadamard"
SCHEMA = f"{OP_NAME}({_ARGS}) -> Tensor"
OUT_SCHEMA = f"{OP_NAME}.out({_ARGS}, *, Tensor(a!) out) -> Tensor(a!)"


def _validate(x, cos, sin, start_pos, hadamard) -> None:
    from edgevlm.export.decoder.int4_attention import _require

    def require(cond, message):
        _require(cond, message, OP_NAME)

    require(x.dtype == torch.float32 and x.dim() == 4,
            f"x must be float32 [B, T, H, D], got {x.dtype} with shape {list(x.shape)}")
    d = x.shape[-1]
    require(cos.dtype == torch.float32 and sin.dtype == torch.float32 and cos.dim() == 2 and cos.shape == sin.shape
            and cos.shape[-1] == d, f"cos and sin must be float32 [S, {d}], got {list(cos.shape)} and {list(sin.shape)}")
    require(d % 2 == 0, f"head dim {d} must be even")
    if isinstance(start_pos, int):  # an unbacked SymInt during export: the kernel checks it at run time
        require(0 <= start_pos and start_pos + x.shape[1] <= cos.shape[0],
                f"start_pos {start_pos} + {x.shape[1]} rows exceeds the rotary table of {cos.shape[0]}")


def rope_reference(x, cos, sin, start_pos: int, hadamard: bool) -> torch.Tensor:
    from edgevlm.export.decoder.graph import rotate_half
    from edgevlm.export.decoder.kv_cache import hadamard as hadamard_matrix

    _validate(x, cos, sin, start_pos, hadamard)
    rows = slice(int(start_pos), int(start_pos) + x.shape[1])
    c, s = cos[rows][:, None], sin[rows][:, None]  # [T, 1, D]: over heads
    y = x * c + rotate_half(x) * s
    return y @ hadamard_matrix(x.shape[-1]) if hadamard else y


def rope_out(x, cos, sin, start_pos, hadamard, *, out):
    result = rope_reference(x, cos, sin, start_pos, hadamard)
    out.resize_(result.shape)
    return out.copy_(result)


def rope_fake(x, cos, sin, start_pos, hadamard):
    _validate(x, cos, sin, start_pos, hadamard)
    return torch.empty_like(x)


def rope_out_fake(x, cos, sin, start_pos, hadamard, *, out):
    _validate(x, cos, sin, start_pos, hadamard)
    return out
