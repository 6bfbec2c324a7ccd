"""Core ML backend: conversion, byte-stable packages, the fp16 ML-program interpreter, weight
compression, the ANE check, and the ios-m4 recipe end to end (numerics run through the interpreter
off macOS)."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest
import torch

pytest.importorskip("coremltools")

from edgevlm.backends.base import BackendError, VisionExportRequest  # noqa: E402
from edgevlm.backends.coreml import INTERPRETER, CoreMLVisionBackend  # noqa: E402
from edgevlm.backends.coreml_interp import InterpreterError, MLProgramInterpreter, load_spec  # noqa: E402
from edgevlm.export.driver import model_facts  # noqa: E402
from edgevlm.export.gates import compare  # noqa: E402
from edgevlm.export.manifest import sha256_path, size_bytes  # noqa: E402
from edgevlm.export.vision import INPUT_NAMES, StaticVisionEncoder, vision_inputs  # noqa: E402

NAMES = ["minicpmv-2.6-tiny", "minicpmv-4.5-tiny"]
MAX_PATCHES = 128  # a small static shape keeps conversion and interpretation fast
GRID = (8, 12)  # one slice of 96 real patches, so the padding mask is exercised


def make_request(loaded, stem: str = "vision", precision: str = "fp16", **options) -> VisionExportRequest:
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler).eval()
    gen = torch.Generator().manual_seed(0)
    pixels = [torch.randn(3, 14, GRID[0] * GRID[1] * 14, generator=gen)]
    example = vision_inputs(pixels, torch.tensor([GRID]), MAX_PATCHES, loaded.model.resampler, 70, batch=1).arrays
    return VisionExportRequest(encoder, example, [], precision, options, stem, model_facts=model_facts(loaded))


def eager(request: VisionExportRequest) -> np.ndarray:
    with torch.no_grad():
        return request.encoder(*[torch.from_numpy(request.example[n]) for n in INPUT_NAMES]).numpy()


@pytest.fixture(scope="module")
def backend():
    return CoreMLVisionBackend(use_coreml=False)  # the interpreter, on every OS


@pytest.fixture(scope="module")
def fp16_exports(loaded_models, backend, tmp_path_factory):
    """name -> (request, written artifact, eager reference), default options (iOS18, no compression)."""
    out = {}
    for name in NAMES:
        request = make_request(loaded_models[name])
        with torch.no_grad():
            (written,) = backend.export(request, tmp_path_factory.mktemp(name))
        out[name] = (request, written, eager(request))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_package_declares_the_static_contract(name, fp16_exports, backend):
    request, written, _ = fp16_exports[name]
    d = request.encoder.resampler.embed_dim
    assert written.path.name == "vision.mlpackage" and written.runtime == "coreml"
    assert backend.describe_io(written.path, written.details) == {
        "inputs": {"pixel_values": ([1, 3, 14, MAX_PATCHES * 14], "float32"),
                   "patch_mask": ([1, MAX_PATCHES], "float32"),
                   "position_ids": ([1, MAX_PATCHES], "int32"),
                   "resampler_pos": ([1, MAX_PATCHES, d], "float32")},
        "outputs": {"vision_embeds": ([1, 64, d], "float32")}}
    details = written.details
    assert details["compute_units"] == "CPU_AND_NE" and details["minimum_deployment_target"] == "iOS18"
    assert details["compression"] == "none" and details["spec_version"] == 9 and details["opset"] == "CoreML8"
    census = details["op_census"]
    assert {"conv", "linear", "layer_norm", "scaled_dot_product_attention", "softmax", "gather"} <= set(census)
    assert census == dict(sorted(census.items())) and all(v > 0 for v in census.values())
    # the position-id wrap-around coremltools emits for the embedding is integer math: flagged
    flagged = {(f["type"], f["severity"]) for f in details["ane_findings"]}
    assert ("select", "fallback") in flagged and ("gather", "possible_fallback") in flagged
    assert all(set(f) == {"op", "type", "severity", "reason"} for f in details["ane_findings"])
    json.dumps(details)  # goes into manifest.json


@pytest.mark.parametrize("name", NAMES)
def test_interpreter_matches_eager_fp32(name, fp16_exports, backend):
    request, written, reference = fp16_exports[name]
    out = backend.run(written.path, request.example, written.details)
    metrics = compare(reference, out)
    assert backend.last_runtime == INTERPRETER and backend.last_nonfinite_ops == []
    assert out.dtype == np.float32 and out.shape == reference.shape
    assert metrics["cosine"] >= 0.999 and metrics["sqnr_db"] > 50, metrics
    assert metrics["relative_max_error"] > 0  # fp16 rounding is really applied, not an fp32 pass-through


def test_reexport_is_byte_identical(fp16_exports, backend, loaded_models, tmp_path):
    _, first, _ = fp16_exports["minicpmv-2.6-tiny"]
    with torch.no_grad():
        (again,) = backend.export(make_request(loaded_models["minicpmv-2.6-tiny"]), tmp_path)
    assert sha256_path(again.path) == sha256_path(first.path)
    assert not (again.path / "executorch_debug_handle_mapping.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["vision.mlpackage"]  # no staging left behind
    metadata = load_spec(again.path).description.metadata.userDefined
    assert "com.github.apple.coremltools.conversion_date" not in metadata
    assert metadata["com.github.apple.coremltools.version"] == "9.0"


@pytest.mark.parametrize("name", NAMES)
def test_package_metadata_reads_back_with_coremltools(name, fp16_exports, loaded_models):
    import coremltools as ct

    from edgevlm.backends.coreml_metadata import INPUT_DESCRIPTIONS, OUTPUT_DESCRIPTION

    _, written, _ = fp16_exports[name]
    cfg = loaded_models[name].config
    model = ct.models.MLModel(str(written.path), skip_model_load=True)  # the saved, normalised package
    meta = model.user_defined_metadata
    assert {k: meta[f"edgevlm.{k}"] for k in ("query_num", "embedding_size", "max_patches", "batch", "model_version",
                                               "patch_size", "precision")} == {
        "query_num": str(cfg.query_num), "embedding_size": str(cfg.llm.hidden_size), "max_patches": str(MAX_PATCHES),
        "batch": "1", "model_version": cfg.version, "patch_size": "14", "precision": "fp16"}
    assert json.loads(meta["edgevlm.norm_mean"]) == [0.5, 0.5, 0.5]
    assert json.loads(meta["edgevlm.slice_config"])["scale_resolution"] == cfg.slice_config.scale_resolution
    assert meta["edgevlm.model_id"] == loaded_models[name].path.name
    assert meta["edgevlm.edgevlm_version"] == model.author.removeprefix("edgevlm ") != "unknown"
    assert meta["com.github.apple.coremltools.version"] == "9.0"  # coremltools' own keys stay
    assert model.version == cfg.version
    assert f"{cfg.query_num} embeddings of width {cfg.llm.hidden_size}" in model.short_description
    assert {n: model.input_description[n] for n in INPUT_NAMES} == INPUT_DESCRIPTIONS
    assert model.output_description["vision_embeds"] == OUTPUT_DESCRIPTION
    assert written.details["package_metadata"]["query_num"] == str(cfg.query_num)


@pytest.mark.parametrize("name, compression, target, constexpr, min_sqnr", [
    ("minicpmv-2.6-tiny", "int8", "iOS18", "constexpr_blockwise_shift_scale", 32.0),
    # iOS17 also checks the other program form: attention decomposed, iOS16-style bit-packed LUTs
    ("minicpmv-4.5-tiny", "palettize6", "iOS17", "constexpr_lut_to_dense", 22.0),
])
def test_compression_shrinks_and_still_interprets(name, compression, target, constexpr, min_sqnr, fp16_exports,
                                                   backend, loaded_models, tmp_path):
    request, fp16, reference = fp16_exports[name]
    with torch.no_grad():
        (written,) = backend.export(make_request(loaded_models[name], compression=compression,
                                                 minimum_deployment_target=target), tmp_path)
    census = written.details["op_census"]
    assert size_bytes(written.path) < 0.6 * size_bytes(fp16.path)
    assert written.details["compression"] == compression and census[constexpr] > 0
    if target == "iOS17":
        assert written.details["spec_version"] == 8 and "scaled_dot_product_attention" not in census
    metrics = compare(reference, backend.run(written.path, request.example, written.details))
    assert min_sqnr <= metrics["sqnr_db"] < 50, metrics  # lossy, but close


def test_ios18_palettization_groups_its_luts_and_gives_ungroupable_weights_int8(fp16_exports, backend,
                                                                               loaded_models, tmp_path):
    """A LUT per 16 output channels (per-tensor LUTs cost the trained oracle 2.8 points at 4 bits,
    grouped ones 0.4); the 4900-row position table does not divide into groups, so coremltools'
    palettizer leaves it and it gets int8 weights instead of staying fp16."""
    name = "minicpmv-2.6-tiny"
    request, fp16, reference = fp16_exports[name]
    with torch.no_grad():
        (written,) = backend.export(make_request(loaded_models[name], compression="palettize4"), tmp_path)
    config, census = written.details["compression_config"], written.details["op_census"]
    assert (config["granularity"], config["group_size"], config["nbits"]) == ("per_grouped_channel", 16, 4)
    assert config["int8_weights"]["names"] == ["p_vpm_embeddings_position_embedding_weight_to_fp16"]
    assert census["constexpr_lut_to_dense"] > 0 and census["constexpr_blockwise_shift_scale"] == 1
    assert size_bytes(written.path) < 0.5 * size_bytes(fp16.path)
    metrics = compare(reference, backend.run(written.path, request.example, written.details))
    assert 14.0 <= metrics["sqnr_db"] < 50, metrics


def test_constexpr_decoders_match_coremltools():
    """Every compressed-weight form the interpreter decodes, against coremltools' own decompress."""
    from coremltools.converters.mil.mil.ops.defs.iOS16 import constexpr_ops as ios16
    from coremltools.converters.mil.mil.ops.defs.iOS18 import compression as ios18
    from coremltools.optimize._utils import pack_elements_into_bits

    from edgevlm.backends.coreml_interp import CONSTEXPR

    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (8, 6, 4)).astype(np.int8)
    scale, zero = rng.random(6).astype(np.float16), rng.integers(-3, 3, 6).astype(np.int8)
    # the interpreter rounds each result to the op's declared dtype (fp16 here), as coremltools does
    np.testing.assert_array_equal(
        CONSTEXPR["constexpr_affine_dequantize"]({"quantized_data": q, "zero_point": zero, "scale": scale,
                                                  "axis": 1}).astype(np.float16),
        ios16.constexpr_affine_dequantize.decompress(q, zero, scale, 1))
    block_scale, block_offset = rng.random((4, 3, 1)).astype(np.float32), rng.integers(-3, 3, (4, 3, 1)).astype(np.int8)
    np.testing.assert_allclose(
        CONSTEXPR["constexpr_blockwise_shift_scale"]({"data": q, "scale": block_scale, "offset": block_offset}),
        ios18.constexpr_blockwise_shift_scale.decompress(q, block_scale, block_offset), rtol=1e-6)
    lut, indices = rng.random(64).astype(np.float16), rng.integers(0, 64, 8 * 6 * 4).astype(np.uint8)
    packed = pack_elements_into_bits(indices, 6)
    np.testing.assert_array_equal(
        CONSTEXPR["constexpr_lut_to_dense"]({"lut": lut, "indices": packed, "shape": np.array([8, 6, 4])}),
        ios16.constexpr_lut_to_dense.decompress(lut, packed, np.array([8, 6, 4])))
    block_luts = rng.random((2, 1, 4, 64, 1)).astype(np.float16)  # per-grouped-channel LUTs
    np.testing.assert_array_equal(
        CONSTEXPR["constexpr_lut_to_dense"]({"indices": indices.reshape(8, 6, 4), "lut": block_luts}),
        ios18.constexpr_lut_to_dense.decompress(indices.reshape(8, 6, 4), block_luts, None))


@pytest.mark.parametrize("precision, options, message", [
    ("int8", {}, r"no precision 'int8'.*\n.*fp16"),
    ("fp16", {"compute_units": "NPU"}, r"compute_units 'NPU'.*\n.*CPU_AND_NE, ALL, CPU_AND_GPU, CPU_ONLY"),
    ("fp16", {"minimum_deployment_target": "iOS16"}, r"minimum_deployment_target 'iOS16'.*\n.*iOS18, iOS17"),
    ("fp16", {"compression": "int4"}, r"compression 'int4'.*\n.*none, int8, palettize4, palettize6"),
    ("fp16", {"compute_unit": "ALL"}, r"unknown Core ML option\(s\) \['compute_unit'\]"),
])
def test_bad_options_are_refused_with_the_valid_ones(precision, options, message, loaded_models, backend, tmp_path):
    with pytest.raises(BackendError, match=message):
        backend.export(make_request(loaded_models["minicpmv-2.6-tiny"], precision=precision, **options), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_conversion_failure_names_the_op(loaded_models, backend, tmp_path):
    class Unconvertible(torch.nn.Module):
        def forward(self, pixel_values, patch_mask, position_ids, resampler_pos):
            return torch.cummax(patch_mask, dim=-1)[0]  # no Core ML conversion in coremltools 9.0

    request = make_request(loaded_models["minicpmv-2.6-tiny"])
    request.encoder = Unconvertible()
    with pytest.raises(BackendError, match=r"coreml backend: coremltools.convert failed at op cummax"):
        backend.export(request, tmp_path)


def test_interpreter_ops_match_torch():
    """Op paths the tiny encoders do not reach (padding modes, strides, dilation, groups, 1-D conv,
    exact gelu, masked slicing, negative gather indices), against torch in float32."""
    import torch.nn.functional as F

    from edgevlm.backends.coreml_interp import OPS

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 4, 9, 11)).astype(np.float32), rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    for stride, dil, pad_type in [(1, 1, "same"), (2, 1, "same"), (2, 2, "valid"), (1, 2, "custom")]:
        pad = [1, 2, 0, 1] if pad_type == "custom" else [0, 0, 0, 0]
        got = OPS["conv"]({"x": x, "weight": w, "bias": bias, "strides": [stride] * 2, "dilations": [dil] * 2,
                           "pad_type": pad_type, "pad": pad, "groups": 2})
        tx = F.pad(torch.from_numpy(x), (pad[2], pad[3], pad[0], pad[1]))
        if pad_type == "same":
            eff = [(3 - 1) * dil + 1] * 2
            total = [max((-(-n // stride) - 1) * stride + e - n, 0) for n, e in zip(x.shape[2:], eff)]
            (h0, w0) = (t // 2 for t in total)
            tx = F.pad(torch.from_numpy(x), (w0, total[1] - w0, h0, total[0] - h0))
        want = F.conv2d(tx, torch.from_numpy(w), torch.from_numpy(bias), stride=stride, dilation=dil, groups=2)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"{stride} {dil} {pad_type}")
    w1 = rng.standard_normal((3, 4, 5)).astype(np.float32)
    got = OPS["conv"]({"x": x[:, :, 0], "weight": w1, "strides": [2], "pad_type": "valid"})
    np.testing.assert_allclose(got, F.conv1d(torch.from_numpy(x[:, :, 0]), torch.from_numpy(w1), stride=2).numpy(),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(OPS["gelu"]({"x": x}), F.gelu(torch.from_numpy(x)).numpy(), atol=1e-6)
    np.testing.assert_array_equal(
        OPS["slice_by_index"]({"x": x, "begin": [0, 1, 0, 2], "end": [1, 4, 0, -1], "stride": [1, 2, 1, 3],
                               "end_mask": [False, False, True, False], "squeeze_mask": [True, False, False, False]}),
        x[0, 1:4:2, :, 2:-1:3])
    table = rng.standard_normal((5, 3)).astype(np.float16)
    gathered = OPS["gather"]({"x": table, "indices": np.array([[-1, 0]]), "axis": 0})
    np.testing.assert_array_equal(gathered, table[[[4, 0]]])
    with pytest.raises(InterpreterError, match=r"out of range \[-5, 5\)"):
        OPS["gather"]({"x": table, "indices": np.array([5]), "axis": 0})


def _mil_package(tmp_path, build, shape, name="prog"):
    """A hand-built ML program (fp16 compute) saved as a package, for interpreter edge cases."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    prog = mb.program(input_specs=[mb.TensorSpec(shape=shape)], opset_version=ct.target.iOS18)(build)
    model = ct.convert(prog, convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                       minimum_deployment_target=ct.target.iOS18, skip_model_load=True)
    path = tmp_path / f"{name}.mlpackage"
    model.save(str(path))
    return path


def test_interpreter_names_an_unsupported_op(tmp_path):
    from coremltools.converters.mil import Builder as mb

    path = _mil_package(tmp_path, lambda x: mb.cumsum(x=x, axis=1), (1, 8))
    with pytest.raises(InterpreterError, match=r"Core ML op `cumsum` .*not supported by the fp16 interpreter"):
        MLProgramInterpreter(path).run({"x": np.ones((1, 8), np.float32)})


def test_interpreter_shows_fp16_overflow_and_ane_check_flags_wide_axes(tmp_path):
    from edgevlm.backends.coreml_ane import ane_findings
    from coremltools.converters.mil import Builder as mb

    path = _mil_package(tmp_path, lambda x: mb.mul(x=x, y=x), (1, 20000))
    interpreter = MLProgramInterpreter(path)
    x = np.full((1, 20000), 300.0, np.float32)  # 300^2 = 90000 > 65504, the fp16 maximum
    x[0, 0] = 2.0
    (out,) = interpreter.run({"x": x}).values()
    assert out[0, 0] == 4.0 and np.isinf(out[0, 1:]).all()
    assert interpreter.nonfinite_ops and interpreter.nonfinite_ops[0].startswith("mul ")
    findings = ane_findings(load_spec(path))
    assert any(f["type"] == "input" and "20000" in f["reason"] for f in findings)
    assert any(f["type"] == "mul" and "exceeds the ANE's 16384" in f["reason"] for f in findings)


def test_ios_m4_recipe_end_to_end(tiny_checkpoints, tmp_path):
    from edgevlm.export.driver import export_model
    from edgevlm.export.manifest import read_manifest
    from edgevlm.export.recipes import load_recipe
    from edgevlm.export.verify import PASS, verify_artifacts

    # the vision part: the recipe's ExecuTorch decoder is another backend's (tests/test_decoder_pte.py)
    out = export_model(tiny_checkpoints["minicpmv-2.6-tiny"], load_recipe("ios-m4"), tmp_path / "ios", part="vision")
    (artifact,) = read_manifest(out)["artifacts"]
    assert artifact["file"] == "minicpmv-2.6.vision.ane.fp16.mlpackage" and artifact["runtime"] == "coreml"
    assert artifact["details"]["compute_units"] == "CPU_AND_NE" and artifact["details"]["ane_check"] == "heuristic"
    results = [r for r in verify_artifacts(out) if r.artifact == artifact["file"]]
    assert [r.check for r in results] == ["checksum", "io contract", "numerics"]
    assert all(r.status == PASS for r in results), [(r.check, r.detail) for r in results]
    numerics = results[-1].metrics
    assert numerics["overall"]["cosine"] >= 0.999
    if platform.system() != "Darwin":  # the interpreter checks one slice per verification image
        assert numerics["slices"] == 6


def test_bench_refuses_a_changed_file_inside_an_mlpackage(fp16_exports, int4_kv_export, tmp_path, capsys):
    """A package artifact is hashed as a folder: one changed byte anywhere inside it is refused."""
    import json
    import shutil

    from edgevlm.cli.main import main
    from edgevlm.export.manifest import sha256_path

    copy = shutil.copytree(int4_kv_export, tmp_path / "art")
    package = shutil.copytree(fp16_exports["minicpmv-2.6-tiny"][1].path, copy / "v.mlpackage")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"].append(dict(manifest["artifacts"][0], target="coreml", precision="fp16",
                                      file="v.mlpackage", sha256=sha256_path(package)))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    weights = max((p for p in package.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main(["bench", "--artifacts", str(copy), "--runs", "1", "--warmup", "0"]) == 1
    assert "v.mlpackage does not match its manifest" in capsys.readouterr().err
