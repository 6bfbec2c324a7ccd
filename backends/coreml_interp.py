"""A numpy interpreter of a saved Core ML ML program (the `main` function of an .mlpackage).

Core ML predicts only on macOS. This runs the program that was written to disk (model.mlmodel plus
weights/weight.bin, read with coremltools' protobuf classes and blob reader) op by op, so a Linux
host can check an exported package's numerics, compressed weights included.

Numerics: every op's result is rounded to the dtype the program declares for it, so an fp16
program holds fp16 values between ops and fp16 overflow (inf), underflow and rounding all show up.
Inside one op the arithmetic runs in float32 (matmul/conv accumulation, exp, reductions, the
scores inside scaled_dot_product_attention). Apple does not publish how wide the Neural Engine's
accumulators are, so an overflow that happens only inside a device's accumulation is not seen
here. It is a reference for the program's math, not a bit-exact model of any device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevlm.backends.base import require
from edgevlm.backends.coreml_ops import CONSTEXPR, OPS, InterpreterError, unpack_bits  # noqa: F401 (re-exported)

# MIL DataType enum value -> (numpy dtype, blob reader suffix). Sub-byte types unpack to (u)int8.
DTYPES = {
    1: (np.bool_, None), 10: (np.float16, "fp16"), 11: (np.float32, "float"), 12: (np.float64, None),
    21: (np.int8, "int8"), 22: (np.int16, "int16"), 23: (np.int32, "int32"), 24: (np.int64, None),
    25: (np.int8, "int4"), 31: (np.uint8, "uint8"), 32: (np.uint16, "uint16"), 33: (np.uint32, "uint32"),
    35: (np.uint8, "uint4"), 36: (np.uint8, "uint2"), 37: (np.uint8, "uint1"), 38: (np.uint8, "uint6"),
    39: (np.uint8, "uint3"),
}
SUB_BYTE_BITS = {25: 4, 35: 4, 36: 2, 37: 1, 38: 6, 39: 3}
STRING = 2


@dataclass
class Op:
    type: str
    name: str  # its first output's name, which is what errors and findings cite
    args: dict  # input name -> list of bound var names (str) or literal values
    outputs: list  # [(name, numpy dtype or None)]


def package_files(package: Path) -> tuple[Path, Path]:
    """(model.mlmodel, the directory blob paths are relative to) of an .mlpackage."""
    package = Path(package)
    try:
        from coremltools.libmodelpackage import ModelPackage

        model = Path(ModelPackage(str(package)).getRootModel().path())
    except Exception:  # no libmodelpackage, or a package it rejects: the standard layout
        model = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    if not model.is_file():
        raise InterpreterError(f"{package} holds no model.mlmodel", "pass the .mlpackage `edgevlm export` wrote")
    return model, model.parent


def load_spec(package: Path):
    proto = require("coremltools.proto.Model_pb2", "coremltools==9.0", "reading a Core ML package")
    spec = proto.Model()
    spec.ParseFromString(package_files(package)[0].read_bytes())
    return spec


def main_block(spec):
    if spec.WhichOneof("Type") != "mlProgram":
        raise InterpreterError(f"the package holds a {spec.WhichOneof('Type')} model, not an ML program",
                               "export with convert_to='mlprogram'")
    fn = spec.mlProgram.functions["main"]
    return fn, fn.block_specializations[fn.opset]



class _Values:
    """Decodes MIL Value protos: immediate tensors and blob-file weights."""

    def __init__(self, weights_root: Path):
        self.root = weights_root
        self.readers = {}

    def decode(self, value):
        kind = value.type.WhichOneof("type")
        if kind != "tensorType":
            raise InterpreterError(f"values of type {kind} are not supported by the interpreter")
        ttype = value.type.tensorType
        shape = tuple(d.constant.size for d in ttype.dimensions)
        code = ttype.dataType
        if value.WhichOneof("value") == "blobFileValue":
            return self._blob(value.blobFileValue, code, shape)
        tensor = value.immediateValue.tensor
        field = tensor.WhichOneof("value")
        if code == STRING:
            strings = list(tensor.strings.values)
            return strings[0] if shape == () else strings
        dtype = DTYPES[code][0]
        if field == "bytes":
            raw = np.frombuffer(tensor.bytes.values, np.uint8 if code in SUB_BYTE_BITS else dtype)
            if code in SUB_BYTE_BITS:
                raw = unpack_bits(raw, SUB_BYTE_BITS[code], int(np.prod(shape)), code == 25)
            return raw.reshape(shape).copy()
        return np.array(list(getattr(tensor, field).values), dtype=dtype).reshape(shape)

    def _blob(self, blob, code: int, shape: tuple):
        reader_name = DTYPES.get(code, (None, None))[1]
        if reader_name is None:
            raise InterpreterError(f"blob weights of MIL dtype {code} are not supported by the interpreter")
        path = self.root / blob.fileName.replace("@model_path/", "")
        if path not in self.readers:
            storage = require("coremltools.libmilstoragepython", "coremltools==9.0", "reading Core ML weights")
            self.readers[path] = storage._BlobStorageReader(str(path))
        data = getattr(self.readers[path], f"read_{reader_name}_data")(blob.offset)
        if code == 10:  # fp16 comes back as uint16 bit patterns
            data = np.frombuffer(data.tobytes(), np.float16)
        return np.asarray(data, DTYPES[code][0]).reshape(shape)


def _output_dtype(named_value_type):
    t = named_value_type.type
    if t.WhichOneof("type") != "tensorType":
        return None
    return DTYPES.get(t.tensorType.dataType, (None,))[0]


class MLProgramInterpreter:
    """Loads a package once; `run(inputs)` returns {output name: array}."""

    def __init__(self, package: Path):
        self.package = Path(package)
        self.spec = load_spec(self.package)
        fn, block = main_block(self.spec)
        values = _Values(package_files(self.package)[1])
        self.inputs = {i.name: (tuple(d.constant.size for d in i.type.tensorType.dimensions), _output_dtype(i))
                       for i in fn.inputs}
        self.output_names = list(block.outputs)
        self.constants, self.ops = {}, []
        self.nonfinite_ops: list[str] = []  # ops whose finite inputs gave inf/nan in the last run
        for proto_op in block.operations:
            op = self._parse(proto_op, values)
            if op.type == "const":
                self.constants[op.name] = op.args["val"][0]
            elif op.type.startswith("constexpr_"):  # compressed weights: decompress once, at load
                self.constants[op.name] = self._execute(op, self.constants, CONSTEXPR)[0]
            else:
                self.ops.append(op)
        # Intermediates are dropped after their last reader, which bounds memory at full size.
        last_use = {b: i for i, op in enumerate(self.ops) for bound in op.args.values() for b in bound
                    if isinstance(b, str)}
        self._free_after = [[] for _ in self.ops]
        for name, i in last_use.items():
            if name not in self.constants and name not in self.output_names:
                self._free_after[i].append(name)

    @staticmethod
    def _parse(proto_op, values: _Values) -> Op:
        args = {}
        # iOS17 constexpr ops and const carry their operands as attributes; everything else as inputs.
        for key, value in proto_op.attributes.items():
            if key != "name":
                args[key] = [values.decode(value)]
        for key, argument in proto_op.inputs.items():
            args[key] = [b.name if b.WhichOneof("binding") == "name" else values.decode(b.value)
                         for b in argument.arguments]
        outputs = [(o.name, _output_dtype(o)) for o in proto_op.outputs]
        return Op(proto_op.type, outputs[0][0] if outputs else proto_op.type, args, outputs)

    def _execute(self, op: Op, env: dict, table: dict) -> list:
        fn = table.get(op.type)
        if fn is None:
            raise InterpreterError(
                f"Core ML op `{op.type}` (producing {op.name!r}) is not supported by the fp16 interpreter",
                f"add it to OPS in backends/coreml_ops.py; supported ops: {', '.join(sorted(table))}")
        args = {k: [env[b] if isinstance(b, str) else b for b in bound] for k, bound in op.args.items()}
        args = {k: v if k == "values" else v[0] for k, v in args.items()}  # only concat/stack take lists
        try:
            result = fn(args)
        except InterpreterError:
            raise
        except Exception as e:
            raise InterpreterError(f"Core ML op `{op.type}` ({op.name!r}) failed in the interpreter: {e}") from e
        results = list(result) if isinstance(result, tuple) else [result]
        return [_round_to(r, dtype) for r, (_, dtype) in zip(results, op.outputs)]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env = dict(self.constants)
        for name, (shape, dtype) in self.inputs.items():
            if name not in inputs:
                raise InterpreterError(f"input {name!r} is missing", f"the program takes {', '.join(self.inputs)}")
            array = np.asarray(inputs[name])
            if array.shape != shape:
                raise InterpreterError(f"input {name!r} has shape {list(array.shape)}; the program takes {list(shape)}")
            env[name] = array.astype(dtype, copy=False)
        self.nonfinite_ops = []
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for i, op in enumerate(self.ops):
                results = self._execute(op, env, OPS)
                for (name, _), value in zip(op.outputs, results):
                    env[name] = value
                self._check_finite(op, env, results)
                for name in self._free_after[i]:
                    env.pop(name, None)
        return {name: env[name] for name in self.output_names}

    def _check_finite(self, op: Op, env: dict, results: list) -> None:
        def finite(a):
            return not (isinstance(a, np.ndarray) and a.dtype.kind == "f") or bool(np.isfinite(a).all())

        if all(finite(r) for r in results):
            return
        inputs = [env[b] for bound in op.args.values() for b in bound if isinstance(b, str)]
        if all(finite(a) for a in inputs):
            self.nonfinite_ops.append(f"{op.type} {op.name}")


def _round_to(value, dtype):
    """An op's result in the dtype the program declares for it (this is where fp16 rounds)."""
    if dtype is None or isinstance(value, str):
        return value
    value = np.asarray(value)
    if value.dtype.kind == "f" and np.dtype(dtype).kind in "iu":
        value = np.trunc(value)
    return value.astype(dtype, copy=False)
