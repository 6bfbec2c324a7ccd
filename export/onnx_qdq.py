"""Rewrite MatMulNBits nodes as standard opset-21 DequantizeLinear(int4) + MatMul, in place.

For runtimes and execution providers that read standard ONNX only (`weight_format: qdq`). The
codes are the same (ONNX Runtime's CPU EP fuses the pair back into MatMulNBits at load): only the
layout changes, one weight at a time, from MatMulNBits' [N, K/block, block/2] (column-major along
K, two codes per byte) to DequantizeLinear's [K, N] int4 tensor blocked along axis 0. Symmetric
weights (no zero-point input, implicit 8) become signed INT4 without a zero point, asymmetric ones
UINT4 with a [K/block, N] zero point, as onnxruntime's own QDQ quantizer writes them.
"""

from __future__ import annotations

import numpy as np

MSFT = "com.microsoft"


def _unpack(packed: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """uint8 codes [rows, cols] from two-per-byte rows (element 2i in the low nibble)."""
    packed = packed.reshape(rows, -1)
    return np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(rows, -1)[:, :cols]


def _pack(codes: np.ndarray) -> np.ndarray:
    """Row-major int4 packing of a whole tensor (element 2i low nibble, 2i+1 high)."""
    flat = codes.reshape(-1).astype(np.uint8) & 0xF
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return flat[0::2] | (flat[1::2] << 4)


def matmulnbits_to_qdq(model) -> int:
    """Rewrite every com.microsoft MatMulNBits (4 bits) of an onnx_ir model; returns how many."""
    import onnx_ir as ir

    graph = model.graph
    done = 0
    for node in list(graph):
        if node.op_type != "MatMulNBits" or node.domain != MSFT:
            continue
        attrs = {name: attr.value for name, attr in node.attributes.items()}
        k, n, block = attrs["K"], attrs["N"], attrs["block_size"]
        if attrs.get("bits", 4) != 4:
            raise ValueError(f"{node.name}: only 4-bit MatMulNBits has a QDQ form here")
        a, packed, scales = node.inputs[:3]
        zero_points = node.inputs[3] if len(node.inputs) > 3 else None
        blocks = -(-k // block)
        codes = _unpack(packed.const_value.numpy(), n, blocks * block)[:, :k].T  # [K, N]
        scale_kn = np.ascontiguousarray(scales.const_value.numpy().reshape(n, blocks).T)
        base = packed.name.removesuffix(".packed")
        inputs = []
        if zero_points is None:  # implicit zero point 8: signed codes
            weight = ir.PackedTensor(_pack(codes.astype(np.int16) - 8), ir.DataType.INT4, shape=[k, n])
        else:
            weight = ir.PackedTensor(_pack(codes), ir.DataType.UINT4, shape=[k, n])
            zp = _unpack(zero_points.const_value.numpy(), n, blocks).T
            inputs = [ir.PackedTensor(_pack(zp), ir.DataType.UINT4, shape=[blocks, n])]
        values = [ir.Value(name=f"{base}.qweight", const_value=weight),
                  ir.Value(name=f"{base}.qscale", const_value=ir.tensor(scale_kn)),
                  *[ir.Value(name=f"{base}.qzero", const_value=t) for t in inputs]]
        for value in values:
            graph.register_initializer(value)
        dq = ir.node("DequantizeLinear", values, attributes={"axis": 0, "block_size": block},
                     name=f"{node.name}.dq", num_outputs=1)
        matmul = ir.node("MatMul", [a, dq.outputs[0]], name=f"{node.name}.matmul", num_outputs=1)
        graph.insert_before(node, [dq, matmul])
        ir.convenience.replace_all_uses_with(node.outputs[0], matmul.outputs[0])
        if graph.outputs and node.outputs[0] in graph.outputs:
            graph.outputs[graph.outputs.index(node.outputs[0])] = matmul.outputs[0]
        graph.remove(node, safe=True)
        for old in (packed, scales, zero_points):
            if old is not None and not old.uses():
                graph.initializers.pop(old.name, None)
        done += 1
    model.opset_imports.setdefault("", 21)
    return done
