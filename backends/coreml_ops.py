"""The numpy op tables of the Core ML interpreter (coreml_interp.py).

OPS maps a MIL op type to a function of its bound arguments; CONSTEXPR does the same for the
compressed-weight ops that are decompressed once when a program loads. Each function computes in
float32 (fp16 operands widen); the interpreter rounds results to the dtype the program declares.
"""

from __future__ import annotations

import math

import numpy as np

from edgevlm.backends.base import BackendError


class InterpreterError(BackendError):
    """The interpreter cannot run (part of) a program; names the op."""


def unpack_bits(raw: np.ndarray, nbits: int, count: int, signed: bool) -> np.ndarray:
    """Values packed least-significant bit first, as coremltools writes sub-byte tensors."""
    from coremltools.optimize._utils import restore_elements_from_packed_bits

    return restore_elements_from_packed_bits(np.asarray(raw, np.uint8).reshape(-1), nbits, count, signed)


# ---- ops: numpy in float32 (fp16 operands widen); `_execute` rounds results to the declared dtype ----


def _f(x):
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _ints(v) -> list[int]:
    return [int(i) for i in np.atleast_1d(v)]


def _erf(x):
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf and scipy is not a dependency."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-a * a))


def _softmax(x, axis=-1):
    e = x - x.max(axis=axis, keepdims=True)  # a new array: the in-place steps below do not touch x
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _gelu(a):
    x, mode = _f(a["x"]), a.get("mode", "EXACT")
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1.0 + np.exp(-1.702 * x))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _layer_norm(a):
    x = _f(a["x"])
    axes = tuple(_ints(a["axes"])) if "axes" in a else (-1,)
    mean = x.mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + _f(a.get("epsilon", 1e-5)))
    return y * _f(a.get("gamma", 1.0)) + _f(a.get("beta", 0.0))


def _matmul(a):
    x, y = _f(a["x"]), _f(a["y"])
    if bool(a.get("transpose_x", False)) and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if bool(a.get("transpose_y", False)) and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _conv(a):
    """1-D/2-D convolution (NC[H]W, weight OI[H]W) as strided windows contracted with einsum."""
    x, w = _f(a["x"]), _f(a["weight"])
    spatial = x.ndim - 2
    if spatial not in (1, 2):
        raise InterpreterError(f"conv over {spatial} spatial dims is not supported by the interpreter")
    strides, dil = _ints(a.get("strides", [1] * spatial)), _ints(a.get("dilations", [1] * spatial))
    pad, pad_type = _ints(a.get("pad", [0] * 2 * spatial)), a.get("pad_type", "valid")
    if spatial == 1:  # as 2-D with height 1
        x, w, strides, dil, pad = x[:, :, None], w[:, :, None], [1] + strides, [1] + dil, [0, 0] + pad
    eff = [(w.shape[2 + i] - 1) * dil[i] + 1 for i in range(2)]
    pads = [(0, 0)] * 2
    if pad_type == "custom":
        pads = [(pad[0], pad[1]), (pad[2], pad[3])]
    elif pad_type in ("same", "same_lower"):
        for i in range(2):
            size = x.shape[2 + i]
            total = max((-(-size // strides[i]) - 1) * strides[i] + eff[i] - size, 0)
            low = total - total // 2 if pad_type == "same_lower" else total // 2
            pads[i] = (low, total - low)
    x = np.pad(x, [(0, 0), (0, 0)] + pads)
    win = np.lib.stride_tricks.sliding_window_view(x, eff, axis=(2, 3))
    win = win[:, :, ::strides[0], ::strides[1], ::dil[0], ::dil[1]]  # N C Ho Wo kh kw
    groups = int(a.get("groups", 1))
    cin, cout = w.shape[1], w.shape[0] // groups
    y = np.concatenate([np.einsum("nchwij,ocij->nohw", win[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout],
                                  optimize=True) for g in range(groups)], axis=1)
    if a.get("bias") is not None:
        y = y + _f(a["bias"])[None, :, None, None]
    return y[:, :, 0] if spatial == 1 else y


def _wrap(idx, n: int):
    idx = np.asarray(idx).astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise InterpreterError(f"gather index out of range [-{n}, {n}): {int(idx.min())}..{int(idx.max())}")
    return np.where(idx < 0, idx + n, idx)


def _gather(a):
    x, axis, b = a["x"], int(a.get("axis", 0)), int(a.get("batch_dims", 0))
    axis %= x.ndim
    idx = _wrap(a["indices"], x.shape[axis])
    if b == 0:
        return np.take(x, idx, axis=axis)
    xs, ids = x.reshape((-1,) + x.shape[b:]), idx.reshape((-1,) + idx.shape[b:])
    out = np.stack([np.take(xs[i], ids[i], axis=axis - b) for i in range(len(xs))])
    return out.reshape(x.shape[:b] + out.shape[1:])


def _slice_by_index(a):
    x = a["x"]
    r = x.ndim
    begin, end = _ints(a["begin"]), _ints(a["end"])
    stride = _ints(a.get("stride", [1] * r))
    bmask, emask, smask = ([bool(v) for v in np.atleast_1d(a.get(k, [False] * r))]
                           for k in ("begin_mask", "end_mask", "squeeze_mask"))
    index = tuple(begin[i] if smask[i] else slice(None if bmask[i] else begin[i], None if emask[i] else end[i],
                                                  stride[i]) for i in range(r))
    return x[index]


def _slice_by_size(a):
    x, begin, size = a["x"], _ints(a["begin"]), _ints(a["size"])
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


def _expand_dims(a):
    x = a["x"]
    rank = x.ndim + len(_ints(a["axes"]))
    for axis in sorted(i % rank for i in _ints(a["axes"])):
        x = np.expand_dims(x, axis)
    return x


def _concat(a):
    values, axis = [np.asarray(v) for v in a["values"]], int(a["axis"])
    if bool(a.get("interleave", False)):
        stacked = np.stack(values, axis=(axis % values[0].ndim) + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return np.concatenate(values, axis=axis)


def _split(a):
    x, axis = a["x"], int(a["axis"])
    n = int(a.get("num_splits", 1))
    sizes = _ints(a["split_sizes"]) if "split_sizes" in a else [x.shape[axis] // n] * n
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _reduce(fn):
    def run(a):
        axes = tuple(_ints(a["axes"])) if a.get("axes") is not None else None
        return fn(_f(a["x"]), axis=axes, keepdims=bool(a.get("keep_dims", False)))
    return run


def _sdpa(a):
    q, k, v = _f(a["query"]), _f(a["key"]), _f(a["value"])
    scores = (q * np.float32(1 / math.sqrt(q.shape[-1]))) @ np.swapaxes(k, -1, -2)
    mask = a.get("attn_mask")
    if mask is not None and mask.dtype == np.bool_:
        scores = np.where(mask, scores, -np.inf)
    elif mask is not None:
        scores += _f(mask)
    return _softmax(scores) @ v


def _binary(fn):
    return lambda a: fn(_f(a["x"]), _f(a["y"]))


def _unary(fn):
    return lambda a: fn(_f(a["x"]))


OPS = {
    "cast": lambda a: a["x"], "identity": lambda a: a["x"],
    "add": _binary(np.add), "sub": _binary(np.subtract), "mul": _binary(np.multiply),
    "real_div": _binary(np.divide), "floor_div": _binary(np.floor_divide), "mod": _binary(np.mod),
    "pow": _binary(np.power), "maximum": _binary(np.maximum), "minimum": _binary(np.minimum),
    "equal": _binary(np.equal), "not_equal": _binary(np.not_equal), "greater": _binary(np.greater),
    "greater_equal": _binary(np.greater_equal), "less": _binary(np.less), "less_equal": _binary(np.less_equal),
    "logical_and": _binary(np.logical_and), "logical_or": _binary(np.logical_or),
    "logical_xor": _binary(np.logical_xor), "logical_not": _unary(np.logical_not),
    "abs": _unary(np.abs), "exp": _unary(np.exp), "sqrt": _unary(np.sqrt), "sin": _unary(np.sin),
    "cos": _unary(np.cos), "tanh": _unary(np.tanh), "erf": _unary(_erf), "floor": _unary(np.floor),
    "ceil": _unary(np.ceil), "round": _unary(np.round), "sign": _unary(np.sign), "square": _unary(np.square),
    "relu": _unary(lambda x: np.maximum(x, 0)), "sigmoid": _unary(lambda x: 1 / (1 + np.exp(-x))),
    "silu": _unary(lambda x: x / (1 + np.exp(-x))),
    "rsqrt": lambda a: 1 / np.sqrt(_f(a["x"]) + _f(a.get("epsilon", 1e-12))),
    "inverse": lambda a: 1 / (_f(a["x"]) + _f(a.get("epsilon", 1e-4))),
    "log": lambda a: np.log(_f(a["x"]) + _f(a.get("epsilon", 1e-45))),
    "clip": lambda a: np.clip(_f(a["x"]), _f(a["alpha"]), _f(a["beta"])),
    "select": lambda a: np.where(a["cond"], _f(a["a"]), _f(a["b"])),
    "softmax": lambda a: _softmax(_f(a["x"]), int(a.get("axis", -1))),
    "layer_norm": _layer_norm, "gelu": _gelu, "matmul": _matmul, "conv": _conv,
    "linear": lambda a: _f(a["x"]) @ _f(a["weight"]).T + (_f(a["bias"]) if a.get("bias") is not None else 0),
    "scaled_dot_product_attention": _sdpa,
    "gather": _gather, "gather_along_axis": lambda a: np.take_along_axis(
        a["x"], _wrap(a["indices"], a["x"].shape[int(a.get("axis", 0))]), axis=int(a.get("axis", 0))),
    "reshape": lambda a: a["x"].reshape([a["x"].shape[i] if s == 0 else s for i, s in enumerate(_ints(a["shape"]))]),
    "transpose": lambda a: np.transpose(a["x"], _ints(a["perm"])),
    "squeeze": lambda a: np.squeeze(a["x"], axis=tuple(_ints(a["axes"])) if "axes" in a else None),
    "expand_dims": _expand_dims, "concat": _concat, "split": _split,
    "stack": lambda a: np.stack(a["values"], axis=int(a["axis"])), "tile": lambda a: np.tile(a["x"], _ints(a["reps"])),
    "slice_by_index": _slice_by_index, "slice_by_size": _slice_by_size,
    "reduce_sum": _reduce(np.sum), "reduce_mean": _reduce(np.mean), "reduce_max": _reduce(np.max),
    "reduce_min": _reduce(np.min), "reduce_prod": _reduce(np.prod),
}


# ---- constexpr ops: compressed weights, decompressed once when the program loads ----------------
# coremltools' own `decompress` of each op (the code its value inference runs); the interpreter
# rounds each result to the declared dtype as for any op.


def _affine_dequantize(a):
    """iOS16+: scale * (quantized_data - zero_point), scale/zero_point scalars or vectors along `axis`."""
    from coremltools.converters.mil.mil.ops.defs.iOS16.constexpr_ops import constexpr_affine_dequantize

    return constexpr_affine_dequantize.decompress(a["quantized_data"], np.asarray(a["zero_point"]),
                                                  np.asarray(a["scale"]), int(a["axis"]))


def _blockwise_shift_scale(a):
    """iOS18: scale * (data - offset), one scale/offset per block; block = data.shape / scale.shape."""
    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import constexpr_blockwise_shift_scale

    return constexpr_blockwise_shift_scale.decompress(a["data"], np.asarray(a["scale"]), a.get("offset"))


def _lut_to_dense(a):
    if "shape" in a:  # iOS16 form: one flat LUT, indices bit-packed into uint8 bytes
        from coremltools.converters.mil.mil.ops.defs.iOS16.constexpr_ops import constexpr_lut_to_dense

        return constexpr_lut_to_dense.decompress(np.asarray(a["lut"]), np.asarray(a["indices"]), _ints(a["shape"]))
    # iOS18: per-block LUTs. Not coremltools' lut_to_dense: it repeats the LUT once per weight element
    # (64 entries x 2 bytes per fp16 weight at 6 bits: ~630 MB for one SigLIP MLP matrix).
    idx, lut = np.asarray(a["indices"]).astype(np.int64), np.asarray(a["lut"])
    if lut.shape[-1] != 1:
        raise InterpreterError("vector palettization (cluster_dim > 1) is not supported by the interpreter")
    blocks, table = lut.shape[: idx.ndim], lut.reshape(-1, lut.shape[-2])
    block_id = np.zeros(idx.shape, np.int64)
    for axis in range(idx.ndim):
        coord = np.arange(idx.shape[axis]) // (idx.shape[axis] // blocks[axis])
        block_id = block_id * blocks[axis] + coord.reshape([-1 if i == axis else 1 for i in range(idx.ndim)])
    return table[block_id, idx]


CONSTEXPR = {
    "constexpr_affine_dequantize": _affine_dequantize,
    "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
    "constexpr_lut_to_dense": _lut_to_dense,
    "constexpr_cast": lambda a: a["source_val"],
}
