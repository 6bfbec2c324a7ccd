"""QNN HTP backend: QDQ quantization, offline EPContext compile for SM8650, runs on the HTP emulator.

The emulator runs with CPU fallback disabled, so a successful run proves every node is on the HTP.
It is slow (seconds per 1120-patch slice), hence the small calibration set and one verification
slice per image here.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from edgevlm.backends.base import BackendError, VisionExportRequest
from edgevlm.export.driver import export_model
from edgevlm.export.gates import sqnr_db
from edgevlm.export.manifest import read_manifest
from edgevlm.export.recipes import load_recipe
from edgevlm.export.verify import PASS, verify_artifacts
from edgevlm.export.vision import INPUT_NAMES, QUANTIZED_MASK_NEG, StaticVisionEncoder, vision_inputs

if not (platform.system() == "Linux" and platform.machine() == "x86_64"):
    pytest.skip("onnxruntime-qnn's HTP emulator ships for Linux x86_64 only", allow_module_level=True)


@pytest.fixture(scope="module")
def htp_recipe(tmp_path_factory):
    recipe = load_recipe("android-sd8g3")
    data = {"name": "android-sd8g3-test", "vision": [{"backend": "qnn", "precision": "w8a16",
                                                       "options": dict(recipe.vision[0].options)}],
            "calibration": {"source": "builtin", "images": 6}}
    path = tmp_path_factory.mktemp("recipes") / "htp.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(str(path))


@pytest.fixture(scope="module")
def htp_exports(tiny_checkpoints, htp_recipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("htp")
    return {name: export_model(tiny_checkpoints[name], htp_recipe, root / name)
            for name in ("minicpmv-2.6-tiny", "minicpmv-4.5-tiny")}


@pytest.mark.parametrize("name", ["minicpmv-2.6-tiny", "minicpmv-4.5-tiny"])
def test_w8a16_context_binary_runs_on_the_htp_emulator(name, htp_exports):
    out = htp_exports[name]
    manifest = read_manifest(out)
    art = manifest["artifacts"][0]
    stem = f"minicpmv-{manifest['model']['version']}.vision.htp-sm8650-v75.w8a16"
    assert art["file"] == f"{stem}.onnx"
    assert [e["file"] for e in art["extra_files"]] == [f"{stem}.bin", f"{stem}.qdq.onnx"]
    assert art["details"]["provider_options"] == {"htp_arch": 75, "soc_model": 57}
    assert art["details"]["attention_mask_value"] == QUANTIZED_MASK_NEG
    assert art["details"]["executorch_qnn_pte"]["status"] == "skipped"  # no QNN SDK on this machine
    # the whole graph compiled into one HTP context: one EPContext node pointing at our .bin
    nodes = onnx.load(str(out / art["file"])).graph.node
    assert [n.op_type for n in nodes] == ["EPContext"]
    assert {a.name: a.s for a in nodes[0].attribute}["ep_cache_context"] == f"{stem}.bin".encode()
    # the QDQ model really is w8a16: 16-bit activations, 8-bit weights
    qdq = onnx.load(str(out / f"{stem}.qdq.onnx")).graph
    types = {i.name: i.data_type for i in qdq.initializer}
    assert types["pixel_values_zero_point"] == onnx.TensorProto.UINT16
    assert types["vpm.embeddings.patch_embedding.weight_quantized"] == onnx.TensorProto.UINT8

    results = verify_artifacts(out)
    assert all(r.status == PASS for r in results), [(r.artifact, r.check, r.status, r.detail) for r in results]
    numerics = next(r for r in results if r.check == "numerics")
    assert numerics.metrics["overall"]["sqnr_db"] >= 25 and numerics.metrics["slices"] == 6
    assert "first 1 slice(s) per image" in numerics.detail


def test_w4a16_keeps_sensitive_weights_at_8_bits_and_runs(loaded_models, tmp_path):
    """4-bit MatMul weights, everything the HTP cannot take in 4 bits kept at 8; run on the emulator."""
    from edgevlm.backends.qnn import QnnVisionBackend

    loaded = loaded_models["minicpmv-2.6-tiny"]
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler, QUANTIZED_MASK_NEG).eval()
    batches, refs = [], []
    generator = torch.Generator().manual_seed(5)
    for h, w in [(16, 16), (12, 20), (10, 24), (14, 18)]:  # small slices keep the 4-bit emulation quick
        slices = [torch.rand(3, 14, h * w * 14, generator=generator) * 2 - 1]
        sizes = torch.tensor([[h, w]])
        batches.append(vision_inputs(slices, sizes, 256, loaded.model.resampler, 70).arrays)
        with torch.no_grad():
            refs.append(loaded.model.encode_images(slices, sizes).numpy())
    assert len(batches) >= 2
    backend = QnnVisionBackend()
    request = VisionExportRequest(encoder, batches[0], batches[1:], "w4a16", {}, stem="v")
    with torch.no_grad():
        written = backend.export(request, tmp_path)
    assert [w.path.name for w in written] == ["v.onnx", "v.bin", "v.qdq.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.bin", "v.onnx", "v.qdq.onnx"]  # no work files left
    qdq = onnx.load(str(tmp_path / "v.qdq.onnx")).graph
    types = {i.name: i.data_type for i in qdq.initializer}
    assert sum(t == onnx.TensorProto.INT4 for t in types.values()) >= 8  # the MatMul/Gemm weights
    assert types["vpm.embeddings.patch_embedding.weight_quantized"] == onnx.TensorProto.UINT8
    out = backend.run(written[0].path, batches[0], written[0].details)
    assert out.shape == refs[0].shape and np.isfinite(out).all()
    # random weights at width 64 lose a lot to 4 bits; it must still clearly carry the signal
    assert sqnr_db(refs[0], out) > 5


def test_an_op_the_htp_cannot_take_is_named(tmp_path):
    from edgevlm.backends.qnn import DEFAULT_OPTIONS, compile_context

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["r"], name="ok_relu"),
         onnx.helper.make_node("Det", ["r"], ["y"], name="the_det")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    model = tmp_path / "det.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), str(model))
    with pytest.raises(BackendError, match="cannot take these nodes: .*Det 'the_det'"):
        compile_context(model, tmp_path / "ctx.onnx", DEFAULT_OPTIONS)


def test_bad_precision_and_options_are_clear_errors(loaded_models, tmp_path):
    from edgevlm.backends.qnn import QnnVisionBackend

    loaded = loaded_models["minicpmv-2.6-tiny"]
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler).eval()
    example = {n: np.zeros(1) for n in INPUT_NAMES}
    with pytest.raises(BackendError, match="no precision 'fp16'.*\n.*w8a16, w4a16"):
        QnnVisionBackend().export(VisionExportRequest(encoder, example, [], "fp16"), tmp_path)
    with pytest.raises(BackendError, match=r"unknown QNN option\(s\) \['htp_archh'\]"):
        QnnVisionBackend().export(VisionExportRequest(encoder, example, [], "w8a16", {"htp_archh": 73}), tmp_path)
    with pytest.raises(BackendError, match="needs calibration inputs"):
        QnnVisionBackend().export(VisionExportRequest(encoder, example, [], "w8a16"), tmp_path)


def _compile(qdq, folder):
    """Compile a copy of `qdq` placed in `folder`, as an export compiles the QDQ model it just wrote
    into its own (randomly named) temporary folder."""
    import shutil

    from edgevlm.backends.qnn import DEFAULT_OPTIONS, compile_context

    folder.mkdir()
    source = Path(shutil.copyfile(qdq, folder / qdq.name))
    return compile_context(source, folder / "m.onnx", DEFAULT_OPTIONS)


def test_the_epcontext_model_is_byte_identical_across_compiles(htp_exports, tmp_path):
    out = htp_exports["minicpmv-2.6-tiny"]
    qdq = next(out.glob("*.qdq.onnx"))
    first, _ = _compile(qdq, tmp_path / ".out.partial-a1")
    second, _ = _compile(qdq, tmp_path / ".out.partial-b2")
    assert first.read_bytes() == second.read_bytes()  # the partition name no longer depends on the folder
    node = onnx.load(str(first)).graph.node[0]
    partition = {a.name: a.s for a in node.attribute}["partition_name"].decode()
    assert node.name == partition and partition.startswith("QNNExecutionProvider_QNNExecutionProvider_")


COMPILE_IN_A_FRESH_PROCESS = """
import shutil, sys
from pathlib import Path
from edgevlm.backends.qnn import DEFAULT_OPTIONS, compile_context
folder = Path(sys.argv[2])
folder.mkdir()
source = Path(shutil.copyfile(sys.argv[1], folder / "m.qdq.onnx"))
compile_context(source, folder / "m.onnx", DEFAULT_OPTIONS)
"""


def test_the_context_binary_differs_only_by_the_compiles_before_it_in_a_process(htp_exports, tmp_path):
    """What backends/qnn.py says about the .bin: identical for the first compile of a process; a later
    compile in the same process gets other QNN tensor ids (a process-wide counter), nothing else."""
    import subprocess
    import sys

    qdq = next(htp_exports["minicpmv-2.6-tiny"].glob("*.qdq.onnx"))
    for name in ("p1", "p2"):
        subprocess.run([sys.executable, "-c", COMPILE_IN_A_FRESH_PROCESS, str(qdq), str(tmp_path / name)],
                       check=True, capture_output=True)
    fresh = [(tmp_path / name / "m.bin").read_bytes() for name in ("p1", "p2")]
    assert fresh[0] == fresh[1]
    _, later = _compile(qdq, tmp_path / "in-process")  # this process has compiled other graphs before
    later = later.read_bytes()
    assert len(later) == len(fresh[0])
    differing = sum(a != b for a, b in zip(later, fresh[0]))
    assert 0 < differing < len(later) // 100


def test_bench_refuses_a_changed_context_binary(htp_exports, tmp_path, capsys):
    import shutil

    from edgevlm.cli.main import main

    copy = shutil.copytree(htp_exports["minicpmv-2.6-tiny"], tmp_path / "art")
    binary = next(copy.glob("*.bin"))
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0x01
    binary.write_bytes(bytes(data))
    assert main(["bench", "--artifacts", str(copy), "--include-emulators"]) == 1
    assert f"{binary.name} does not match its manifest" in capsys.readouterr().err
