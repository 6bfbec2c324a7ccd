"""ONNX element types -> numpy dtype names, from onnx's own tables (no hand-written map).

Two spellings reach us: a graph's `TensorProto` elem_type (an int) and onnxruntime's type string
("tensor(float16)"), whose inner name is the lower-case `TensorProto.DataType` name. Anything
without a tensor dtype (a sequence, a map, an unknown code) comes back as it was spelled.
"""

from __future__ import annotations


def onnx_dtype_name(elem_type: int) -> str:
    """TensorProto elem_type (1) -> numpy dtype name ("float32")."""
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError):
        return str(elem_type)


def ort_dtype_name(ort_type: str) -> str:
    """onnxruntime NodeArg.type ("tensor(float)") -> numpy dtype name ("float32")."""
    from onnx import TensorProto

    if not (ort_type.startswith("tensor(") and ort_type.endswith(")")):
        return ort_type
    try:
        elem_type = TensorProto.DataType.Value(ort_type[len("tensor("):-1].upper())
    except ValueError:
        return ort_type
    name = onnx_dtype_name(elem_type)
    return ort_type if name == str(elem_type) else name
