"""Quantized decoder modules in the form each backend lowers, built one weight at a time.

- `IntxLinear`: torchao's group-wise int4 linear (int8-stored codes, scale, zero point; with int8
  per-token dynamic activations for 8da4w), the graph ExecuTorch's XNNPACK partitioner packs into
  4-bit GEMMs. Codes come from torchao's own `IntxUnpackedToInt8Tensor.from_hp` and the forward is
  its linear, but the codes are plain buffers instead of a tensor subclass: the lowering then
  shares them instead of copying them, and they can be parked in files (edgevlm.resources).
- `NBitsLinear`: ONNX Runtime's MatMulNBits (block-wise 4-bit, packed two per byte), quantized by
  onnxruntime.quantization's own block quantizer; exported as the com.microsoft op itself.
- `Int8Embedding` / `Int4Embedding` / `CastEmbedding`: the token-embedding table as int8 per
  32-wide row group (symmetric, fp32 scales), int4 per 32-wide row group (symmetric, two codes per
  byte, fp16 scales; ExecuTorch's `embedding_4bit` layout) or in a float dtype such as bf16,
  upcast after the gather. In a .pte (`executorch_op`) the quantized ones are one call of
  ExecuTorch's quantized kernels (`quantized_decomposed::embedding_byte` / `embedding_4bit`, the
  ops of its llama export's `--embedding-quantize 8,32` / `4,32`), which gather and dequantize
  only the requested rows.

Every constructor takes fp32 weight rows in blocks (`row_blocks`), so a 150k-row lm_head is
quantized without an fp32 copy of the whole matrix (torchao's quantize_ needs ~3x the fp32 weight
while it runs).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

ROW_BLOCK = 8192  # rows quantized at a time
EMBEDDING_GROUP = 32  # int8 / int4 embedding: one scale per 32 elements of a row
INTX_SCHEMES = ("8da4w",)  # torchao forms XNNPACK lowers to 4-bit GEMMs


def row_blocks(weight: torch.Tensor, rows: int = ROW_BLOCK) -> Iterator[torch.Tensor]:
    """fp32 blocks of a weight's rows (any float dtype in, fp32 out)."""
    for start in range(0, weight.shape[0], rows):
        yield weight[start:start + rows].float()


class IntxLinear(nn.Module):
    """y = linear(act(x / input_divisor), dequantize(codes)) + bias, as torchao computes it."""

    def __init__(self, qdata: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, group_size: int,
                 dynamic_activations: bool, bias: torch.Tensor | None = None, input_divisor: float | None = None):
        super().__init__()
        self.register_buffer("qdata", qdata)
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point)
        self.register_buffer("bias", bias)
        self.block_size = (1, group_size)
        self.dynamic_activations = dynamic_activations
        self.input_divisor = input_divisor
        self.out_features, self.in_features = qdata.shape

    @classmethod
    def from_rows(cls, blocks: Iterable[torch.Tensor], scheme: str, group_size: int, bias=None,
                  input_divisor: float | None = None, park=None) -> "IntxLinear":
        from torchao.quantization import IntxUnpackedToInt8Tensor

        if scheme not in INTX_SCHEMES:
            raise ValueError(f"scheme must be one of {INTX_SCHEMES}")
        parts = {"qdata": [], "scale": [], "zero_point": []}
        for block in blocks:
            t = IntxUnpackedToInt8Tensor.from_hp(block, (1, group_size), torch.int4)
            for name in parts:
                parts[name].append(getattr(t, name))
        tensors = {name: torch.cat(chunks) for name, chunks in parts.items()}
        if park is not None:
            tensors = {name: park(t) for name, t in tensors.items()}
        del parts
        return cls(**tensors, group_size=group_size, dynamic_activations=scheme == "8da4w", bias=bias,
                   input_divisor=input_divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchao.quantization.quant_primitives import dequantize_affine
        from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
            _apply_int8_act_asym_per_token_quant_dequant)

        if self.input_divisor is not None:
            x = x / self.input_divisor
        if self.dynamic_activations:
            x = _apply_int8_act_asym_per_token_quant_dequant(x)

        def linear(qdata, scale, zero_point, bias) -> torch.Tensor:
            weight = dequantize_affine(qdata, self.block_size, scale, zero_point, torch.int8, -8, 7,
                                       output_dtype=x.dtype)
            return F.linear(x, weight, bias)

        if torch.compiler.is_exporting() or self.out_features <= ROW_BLOCK:
            # the buffers themselves: XNNPACK packs a dequantize whose inputs are the constants
            return linear(self.qdata, self.scale, self.zero_point, self.bias)
        # eager runs of a 150k-row lm_head: a block of dequantized rows at a time, not 2.5 GB of fp32
        blocks = [slice(i, i + ROW_BLOCK) for i in range(0, self.out_features, ROW_BLOCK)]
        return torch.cat([linear(self.qdata[r], self.scale[r], self.zero_point[r],
                                 None if self.bias is None else self.bias[r]) for r in blocks], dim=-1)


class NBitsLinear(nn.Module):
    """com.microsoft MatMulNBits (4 bits, block-wise along the input dim), plus bias.

    packed uint8 [N, K/block, block/2] (element 2i in the low nibble), scales fp32 [N * K/block],
    zero_points uint8 [N * ceil(K/block/2)] (two per byte) or absent (symmetric: zero point 8)."""

    def __init__(self, packed, scales, zero_points, in_features: int, out_features: int, block_size: int,
                 accuracy_level: int | None, bias: torch.Tensor | None = None, input_divisor: float | None = None):
        super().__init__()
        self.register_buffer("packed", packed)
        self.register_buffer("scales", scales)
        self.register_buffer("zero_points", zero_points)
        self.register_buffer("bias", bias)
        self.in_features, self.out_features, self.block_size = in_features, out_features, block_size
        self.accuracy_level, self.input_divisor = accuracy_level, input_divisor

    @classmethod
    def from_rows(cls, blocks: Iterable[torch.Tensor], block_size: int, symmetric: bool, accuracy_level: int | None,
                  bias=None, input_divisor: float | None = None, park=None) -> "NBitsLinear":
        import numpy as np
        from onnxruntime.quantization import QuantFormat
        from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                     DefaultWeightOnlyQuantizer)

        quantizer = DefaultWeightOnlyQuantizer(DefaultWeightOnlyQuantConfig(
            block_size=block_size, is_symmetric=symmetric, accuracy_level=accuracy_level,
            quant_format=QuantFormat.QOperator))
        packed, scales, zeros, rows = [], [], [], 0
        for block in blocks:  # MatMul's B is [K, N]: blocks of output rows are blocks of B's columns
            p, s, z = quantizer.qbits_block_quant(np.ascontiguousarray(block.T.numpy()))
            packed.append(p), scales.append(s), zeros.append(z)
            rows, in_features = rows + block.shape[0], block.shape[1]
        tensors = {"packed": torch.from_numpy(np.concatenate(packed)),
                   "scales": torch.from_numpy(np.concatenate(scales).reshape(-1)),
                   "zero_points": None if symmetric else torch.from_numpy(np.concatenate(zeros).reshape(-1))}
        del packed, scales, zeros
        if park is not None:
            tensors = {k: None if v is None else park(v) for k, v in tensors.items()}
        return cls(**tensors, in_features=in_features, out_features=rows, block_size=block_size,
                   accuracy_level=accuracy_level, bias=bias, input_divisor=input_divisor)

    def dequantized_weight(self, rows: slice = slice(None)) -> torch.Tensor:
        """fp32 [N, K] (or those rows): what MatMulNBits computes with (eager reference of the op)."""
        packed = self.packed[rows]
        n, blocks = packed.shape[0], packed.shape[1]
        codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(n, blocks, -1).float()
        if self.zero_points is None:
            zero = torch.full((n, blocks, 1), 8.0)
        else:
            z = self.zero_points.reshape(self.out_features, -1)[rows]
            zero = torch.stack([z & 0xF, z >> 4], dim=-1).reshape(n, -1)[:, :blocks, None].float()
        weight = (codes - zero) * self.scales.reshape(self.out_features, blocks, 1)[rows]
        return weight.reshape(n, -1)[:, :self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_divisor is not None:
            x = x / self.input_divisor
        if torch.onnx.is_in_onnx_export():
            inputs = (x, self.packed, self.scales) + (() if self.zero_points is None else (self.zero_points,))
            attrs = {"K": self.in_features, "N": self.out_features, "bits": 4, "block_size": self.block_size}
            if self.accuracy_level:  # optional attribute; most EPs do not read it
                attrs["accuracy_level"] = self.accuracy_level
            y = torch.onnx.ops.symbolic("com.microsoft::MatMulNBits", inputs, attrs, dtype=x.dtype,
                                        shape=(*x.shape[:-1], self.out_features), version=1)
        else:  # eager: a block of dequantized rows at a time
            y = torch.cat([x @ self.dequantized_weight(slice(i, i + ROW_BLOCK)).T
                           for i in range(0, self.out_features, ROW_BLOCK)], dim=-1)
        return y if self.bias is None else y + self.bias


class _RowGroupEmbedding(nn.Module):
    """A token table quantized symmetrically per 32-wide group of each row: codes + one scale per
    group, times the model's embedding scale (MiniCPM4's scale_emb, else 1). Subclasses give the
    code format (`quantize`), the Python gather (`dequantized_rows`) and the ExecuTorch kernel
    (`kernel`, one quantized_decomposed call: what the .pte runs)."""

    CODES = "codes"  # the codes buffer's name
    executorch_op = False  # True: forward calls the ExecuTorch kernel (the .pte form)

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.register_buffer(self.CODES, codes)
        self.register_buffer("scales", scales)
        self.scale = scale

    @classmethod
    def from_rows(cls, blocks: Iterable[torch.Tensor], scale: float = 1.0, park=None):
        """Quantize a table given as row blocks (bounded memory); `park` moves each result (e.g. to disk)."""
        parts = [cls.quantize(block.reshape(block.shape[0], -1, EMBEDDING_GROUP)) for block in blocks]
        tensors = torch.cat([codes for codes, _ in parts]), torch.cat([scales for _, scales in parts])
        if park is not None:
            tensors = tuple(park(t) for t in tensors)
        return cls(*tensors, scale=scale)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.executorch_op:
            _register_quantized_decomposed()
            out = self.kernel(ids)
        else:
            out = self.dequantized_rows(ids)
        return out * self.scale if self.scale != 1.0 else out

    def _apply_scales(self, codes: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        scales = F.embedding(ids, self.scales).float()
        return (codes.unflatten(-1, (scales.shape[-1], EMBEDDING_GROUP)) * scales[..., None]).flatten(-2)


class Int8Embedding(_RowGroupEmbedding):
    """int8 codes [V, D] and fp32 scales [V, D/32]; the .pte form is ExecuTorch's embedding_byte."""

    @staticmethod
    def quantize(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = (groups.abs().amax(-1) / 127).clamp_min(1e-12)
        return (groups / s[..., None]).round().clamp(-127, 127).to(torch.int8).flatten(1), s

    def dequantized_rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self._apply_scales(F.embedding(ids, self.codes).float(), ids)

    def kernel(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized_decomposed.embedding_byte.dtype(self.codes, self.scales, None, -127, 127, ids,
                                                                   dtype=torch.float32)


class Int4Embedding(_RowGroupEmbedding):
    """int4 codes packed two per byte, uint8 [V, D/2] (code + 8; element 2i in the high nibble, as
    ExecuTorch's embedding_4bit reads them), and fp16 scales [V, D/32]."""

    CODES = "packed"

    @staticmethod
    def quantize(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # fp16 scales, never subnormal; the codes are rounded against the stored (fp16) scale
        s = (groups.abs().amax(-1) / 7).clamp_min(torch.finfo(torch.float16).tiny).to(torch.float16)
        codes = (groups / s.float()[..., None]).round().clamp(-8, 7).to(torch.int16).flatten(1) + 8
        return ((codes[:, ::2] << 4) | codes[:, 1::2]).to(torch.uint8), s

    def dequantized_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """fp32 rows of `ids` (what embedding_4bit computes), gathered before they are unpacked."""
        packed = F.embedding(ids, self.packed).to(torch.int16)
        return self._apply_scales(torch.stack([packed >> 4, packed & 0xF], dim=-1).flatten(-2).float() - 8, ids)

    def kernel(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized_decomposed.embedding_4bit.dtype(self.packed, self.scales, None, -8, 7, ids,
                                                                   dtype=torch.float32)


def _register_quantized_decomposed() -> None:
    """ExecuTorch's quantized_decomposed embedding ops (their Python definitions; the .pte runs its
    kernels from the quantized kernel library)."""
    import executorch.exir.passes._quant_patterns_and_replacements  # noqa: F401


def executorch_embedding(embed: nn.Module) -> nn.Module:
    """The embedding as a .pte computes it: a quantized table becomes one ExecuTorch quantized
    kernel call on the same buffers (a shallow copy; the module passed in is unchanged)."""
    if not isinstance(embed, _RowGroupEmbedding):
        return embed
    op = copy.copy(embed)
    op.executorch_op = True
    return op


EMBEDDING_OPS = {"int8": "quantized_decomposed::embedding_byte.dtype_out",
                 "int4": "quantized_decomposed::embedding_4bit.dtype_out"}  # the .pte's kernel per format


class CastEmbedding(nn.Module):
    """Token embedding stored in a float dtype (bf16, fp16, fp32), gathered then upcast to fp32."""

    def __init__(self, weight: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.scale = scale

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = F.embedding(ids, self.weight).float()
        return out * self.scale if self.scale != 1.0 else out


EMBEDDING_FORMATS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8,
                     "int4": torch.uint8}
QUANTIZED_EMBEDDINGS = {"int8": Int8Embedding, "int4": Int4Embedding}


def quantized_embedding(table: torch.Tensor, fmt: str, scale: float = 1.0, park=None) -> nn.Module:
    """The token-embedding module for `fmt` (EMBEDDING_FORMATS) from the table in any float dtype."""
    if fmt not in EMBEDDING_FORMATS:
        raise ValueError(f"embedding format must be one of {tuple(EMBEDDING_FORMATS)}")
    if fmt in QUANTIZED_EMBEDDINGS:
        if table.shape[1] % EMBEDDING_GROUP:
            raise ValueError(f"{fmt} embedding groups of {EMBEDDING_GROUP} do not divide the width {table.shape[1]}")
        return QUANTIZED_EMBEDDINGS[fmt].from_rows(row_blocks(table), scale, park)
    weight = table.to(EMBEDDING_FORMATS[fmt])
    if weight.data_ptr() == table.data_ptr():
        weight = weight.clone()  # own the storage (the table may be a view of a checkpoint mapping)
    return CastEmbedding(park(weight) if park is not None else weight, scale)
