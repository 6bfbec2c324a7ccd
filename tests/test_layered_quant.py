"""Layered quantisation config (global -> op type -> op name, None = float) applied by the real
onnxruntime.quantization QDQ passes of the ort int8 and QNN w8a16 targets."""

from __future__ import annotations

import onnx
import pytest
import torch

from edgevlm.backends.onnx_export import export_onnx
from edgevlm.calibration.layered import LayeredQuantConfig
from edgevlm.errors import ConfigError
from edgevlm.export.vision import QUANTIZED_MASK_NEG, StaticVisionEncoder, vision_inputs


@pytest.fixture(scope="module")
def small_encoder(loaded_models, tmp_path_factory):
    """(fp32 ONNX of the 2.6-tiny encoder at 256 patches, calibration batches)."""
    loaded = loaded_models["minicpmv-2.6-tiny"]
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler, QUANTIZED_MASK_NEG).eval()
    generator = torch.Generator().manual_seed(3)
    batches = [vision_inputs([torch.rand(3, 14, h * w * 14, generator=generator) * 2 - 1], torch.tensor([[h, w]]),
                             256, loaded.model.resampler, 70).arrays for h, w in [(16, 16), (12, 20), (10, 24)]]
    path = tmp_path_factory.mktemp("layered") / "fp32.onnx"
    with torch.no_grad():
        export_onnx(encoder, batches[0], path)
    return path, batches


def _weight_types(model: onnx.ModelProto, fp32: onnx.ModelProto) -> dict[str, int]:
    """weight-consuming node's module path -> data type of its (quantized) weight initializer.
    Module paths come from the fp32 graph: the quantizers keep node names but not their metadata."""
    from edgevlm.calibration.layered import module_path

    modules = {n.name: module_path(n) for n in fp32.graph.node}
    init = {i.name: i.data_type for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        dq = producer.get(node.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in init:
            out[modules.get(node.name) or node.name] = init[dq.input[0]]
        elif node.input[1] in init:
            out[modules.get(node.name) or node.name] = init[node.input[1]]  # a float weight
    return out


def test_most_specific_rule_wins(small_encoder):
    model = onnx.load(str(small_encoder[0]))
    config = LayeredQuantConfig.from_options(
        {"op_types": {"MatMul": "int16"}, "op_names": {"vpm.encoder.layers.0.mlp.fc1": None,
                                                       "*.self_attn.q_proj": "int4"}}, "int8")
    decisions = {d.module: d for d in config.plan(model).decisions if d.module}
    assert decisions["vpm.encoder.layers.0.mlp.fc1"].weights is None
    assert decisions["vpm.encoder.layers.0.self_attn.q_proj"].weights == "int4"
    assert decisions["vpm.encoder.layers.0.mlp.fc2"].weights == "int16"  # op type over global
    assert decisions["vpm.embeddings.patch_embedding"].weights == "int8"  # Conv: global
    assert decisions["vpm.embeddings.patch_embedding"].rule == "global"


def test_unknown_names_and_types_are_clear_errors(small_encoder):
    model = onnx.load(str(small_encoder[0]))
    with pytest.raises(ConfigError, match=r"\['vpm.decoder.\*'\] match no .*\n.*e\.g\. .*resampler"):
        LayeredQuantConfig.from_options({"op_names": {"vpm.decoder.*": None}}, "int8").plan(model)
    with pytest.raises(ConfigError, match="'int3' is not a weight type.*\n.*int4, .*null"):
        LayeredQuantConfig.from_options({"op_types": {"MatMul": "int3"}}, "int8")
    with pytest.raises(ConfigError, match=r"unknown quantization key\(s\) \['layers'\]"):
        LayeredQuantConfig.from_options({"layers": {}}, "int8")


def test_ort_int8_keeps_a_layer_float(small_encoder, tmp_path):
    from edgevlm.backends.ort import OrtVisionBackend

    fp32, batches = small_encoder
    layered = {"op_names": {"vpm.encoder.layers.0.mlp.*": None}}
    details = OrtVisionBackend._to_int8(fp32, tmp_path / "int8.onnx", batches, layered)
    types = _weight_types(onnx.load(str(tmp_path / "int8.onnx")), onnx.load(str(fp32)))
    assert types["vpm.encoder.layers.0.mlp.fc1"] == onnx.TensorProto.FLOAT
    assert types["vpm.encoder.layers.0.mlp.fc2"] == onnx.TensorProto.FLOAT
    assert types["vpm.encoder.layers.1.mlp.fc1"] == onnx.TensorProto.INT8
    assert details["layered"]["float_nodes"] == ["vpm.encoder.layers.0.mlp.fc1", "vpm.encoder.layers.0.mlp.fc2"]


def test_qnn_w8a16_keeps_a_sensitive_layer_at_16_bits(small_encoder, tmp_path):
    from edgevlm.backends.qnn import quantize_qdq

    fp32, batches = small_encoder
    options = {"quantization": {"op_names": {"vpm.encoder.layers.1.self_attn.*_proj": "int16"}}}
    details = quantize_qdq(fp32, tmp_path / "qdq.onnx", batches, "w8a16", tmp_path, options)
    types = _weight_types(onnx.load(str(tmp_path / "qdq.onnx")), onnx.load(str(fp32)))
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert types[f"vpm.encoder.layers.1.self_attn.{proj}"] == onnx.TensorProto.INT16
        assert types[f"vpm.encoder.layers.0.self_attn.{proj}"] == onnx.TensorProto.UINT8
    assert set(details["layered"]["overridden"].values()) == {"int16"}
