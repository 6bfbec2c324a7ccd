"""The native runtime's vision path (runtime/src/vision_*.cpp, through edgevlm-vision-dump) against
Python: the four encoder inputs vision_batch builds against export/vision.py vision_inputs, and the
ONNX Runtime C API and ExecuTorch vision_encoder outputs against onnxruntime's and ExecuTorch's
Python runtimes on the same inputs; built for this host and for aarch64 Linux (run under
qemu-aarch64 from its packed folder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edgevlm.export.vision import ResamplerSpec, vision_inputs

CROSS_TOOLS = ("aarch64-linux-gnu-g++", "qemu-aarch64")  # .ci/run installs them (scripts/system-deps.sh)
MAX_PATCHES = 1120  # the recipe's vision max_patches: the verification images need >= 1036
PRESETS = {"minicpmv-2.6-tiny": 2, "minicpmv-4.5-tiny": 1}  # -> the ONNX encoder's batch (the .pte's is 1)
INPUT_FILES = {"pixel_values": np.float32, "patch_mask": np.float32, "position_ids": np.int32,
               "resampler_pos": np.float32}
SUFFIX = {np.float32: "f32", np.int32: "i32"}
PER_SIDE = 70


@pytest.fixture(scope="module")
def tool(runtime_home):
    from edgevlm.runtime.build import build_runtime

    return [str(build_runtime(home=runtime_home) / "edgevlm-vision-dump")]


@pytest.fixture(scope="module")
def cross_tool(runtime_home):
    if not all(shutil.which(t) for t in CROSS_TOOLS):
        pytest.skip(f"cross tools missing ({', '.join(CROSS_TOOLS)}): run scripts/system-deps.sh")
    from edgevlm.runtime.build import build_runtime
    from edgevlm.runtime.bundle import command

    return command(build_runtime("aarch64-linux", home=runtime_home), "edgevlm-vision-dump", "qemu-aarch64")


@dataclass
class Export:
    onnx: Path  # ONNX vision encoder, batch PRESETS[preset]
    pte: Path  # decoder .pte with the vision_encoder method (batch 1)
    resampler: ResamplerSpec


@pytest.fixture(scope="module")
def exports(tiny_checkpoints, tmp_path_factory):
    """preset -> Export, each exported once for the module."""
    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe

    cache = {}

    def get(preset: str) -> Export:
        if preset not in cache:
            root = tmp_path_factory.mktemp(preset)
            recipe = root / "recipe.yaml"
            recipe.write_text(yaml.safe_dump({
                "name": "native",
                "vision": [{"backend": "ort", "precision": "fp32", "max_patches": MAX_PATCHES,
                            "batch": PRESETS[preset]}],
                "decoder": [{"backend": "executorch", "weights": "fp32", "kv_cache": "int4", "max_seq_len": 256,
                             "vision_in_pte": True}]}))
            out = export_model(tiny_checkpoints[preset], load_recipe(str(recipe)), root / "out")
            manifest = json.loads((out / "manifest.json").read_text())
            files = {a["part"]: out / a["file"] for a in manifest["artifacts"]}
            cache[preset] = Export(files["vision"], files["decoder"],
                                   ResamplerSpec.from_preprocessing(manifest["preprocessing"]))
        return cache[preset]
    return get


def run(argv, *args) -> subprocess.CompletedProcess:
    return subprocess.run([*argv, *map(str, args)], capture_output=True, text=True)


def slice_rows(h: int, w: int, seed: int) -> np.ndarray:
    """One slice's normalised patch rows [3, 14, h*w*14], as preprocessing makes them."""
    return np.random.default_rng(seed).uniform(-1, 1, (3, 14, h * w * 14)).astype(np.float32)


def python_inputs(rows: np.ndarray, h: int, w: int, max_patches: int, resampler, batch: int) -> dict:
    return vision_inputs([torch.from_numpy(rows)], torch.tensor([[h, w]]), max_patches, resampler, PER_SIDE,
                         batch=batch).arrays


def native_inputs(tool, rows: np.ndarray, h: int, w: int, max_patches: int, resampler, batch: int,
                  prefix: Path) -> dict:
    rows.tofile(f"{prefix}.rows.f32")
    proc = run(tool, "inputs", "--rows", f"{prefix}.rows.f32", "--h", h, "--w", w, "--max-patches", max_patches,
               "--batch", batch, "--per-side", PER_SIDE, "--embed-dim", resampler.embed_dim,
               "--on-values", int(resampler.temporal), "--out", prefix)
    assert proc.returncode == 0, proc.stderr
    return {name: np.fromfile(f"{prefix}.{name}.{SUFFIX[dtype]}", dtype)
            for name, dtype in INPUT_FILES.items()}


def write_inputs(arrays: dict, prefix: Path) -> None:
    for name, dtype in INPUT_FILES.items():
        arrays[name].astype(dtype, copy=False).tofile(f"{prefix}.{name}.{SUFFIX[dtype]}")


def encode(tool, prefix: Path, out: Path, *encoder) -> tuple[np.ndarray, dict]:
    proc = run(tool, "encode", *encoder, "--inputs", prefix, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    return np.fromfile(out, np.float32).reshape(info["rows"], info["width"]), info


def numpy_power_is_libm() -> bool:
    """Whether numpy's float32 array power is libm's powf here (numpy scalars always take libm):
    numpy takes SVML's on hosts with AVX-512."""
    exponents = np.arange(1024, dtype=np.float32) / np.float32(1024)
    return np.array_equal(np.float32(10000) ** exponents, [np.float32(10000) ** e for e in exponents])


def table_angles(embed_dim: int, h: int, w: int) -> np.ndarray:
    """position * omega of every value of model/resampler.py's sincos_2d table, [h*w, embed_dim]."""
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.divmod(np.arange(h * w), w)
    col = np.outer(cols, omega)
    row = np.outer(rows, omega)
    return np.concatenate([col, col, row, row], axis=1)


def assert_tables_match(got: np.ndarray, want: np.ndarray, embed_dim: int, h: int, w: int) -> None:
    """resampler_pos rows [batch, L, E]: bit for bit where numpy's power is libm's; else (AVX-512
    hosts) a frequency an ulp or two away moves a value by at most its angle's change."""
    if numpy_power_is_libm():
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"{int((got != want).sum())} values differ"
        return
    got, want = got.reshape(-1, embed_dim), want.reshape(-1, embed_dim)
    bound = np.zeros(got.shape)
    bound[: h * w] = 3 * 2.0 ** -23 * table_angles(embed_dim, h, w)
    err = np.abs(got.astype(np.float64) - want)
    assert (err <= bound + 2 * 2.0 ** -23).all(), f"max {err.max()} at angle bound {bound.max()}"
    assert np.array_equal(got[h * w:], want[h * w:])  # padding stays zero


SIZES = [(1, 1), (32, 32), (8, 123), (37, 28), (25, 41), (49, 58)]  # 25, 49, 58: float32 vs float64 bucketing differ
RESAMPLERS = {"2.6-keys": ResamplerSpec(3584, temporal=False), "4.5-values": ResamplerSpec(4096, temporal=True)}


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("kind", list(RESAMPLERS))
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_vision_batch_builds_the_arrays_of_vision_inputs(tool, tmp_path, size, kind, batch):
    h, w = size
    resampler = RESAMPLERS[kind]
    max_patches = h * w + 13  # some padding, arrays small enough to compare quickly
    rows = slice_rows(h, w, seed=h * w)
    want = python_inputs(rows, h, w, max_patches, resampler, batch)
    got = native_inputs(tool, rows, h, w, max_patches, resampler, batch, tmp_path / "in")
    for name in ("pixel_values", "patch_mask", "position_ids"):
        assert got[name].dtype == want[name].dtype, name
        assert np.array_equal(got[name], want[name].ravel()), name
    assert_tables_match(got["resampler_pos"], want["resampler_pos"].ravel(), resampler.embed_dim, h, w)


# (embed_dim, h, w): the tiny presets' width and real ones; a whole 1120-patch row and column;
# 3584 is the width where libm's powf itself is not correctly rounded (i = 9)
TABLES = [(256, 37, 28), (3584, 32, 35), (4096, 1, 1120), (2560, 1120, 1), (1152, 8, 123), (64, 32, 32)]


def test_resampler_tables_are_numpys_bit_for_bit_off_avx512(tool, tmp_path):
    """numpy's float32 tables where its power is libm's (every host but AVX-512 ones: there numpy
    takes SVML's power, which the test above bounds): the reference runs with AVX-512 dispatch off."""
    from numpy._core import _multiarray_umath as umath

    avx512 = [f for f in umath.__cpu_dispatch__
              if f.startswith(("AVX512", "X86_V4")) and umath.__cpu_features__.get(f)]
    script = ("import json, sys, numpy as np\n"
              "from edgevlm.model.resampler import sincos_2d\n"
              "e = np.arange(1024, dtype=np.float32) / np.float32(1024)\n"
              "assert np.array_equal(np.float32(10000) ** e, [np.float32(10000) ** x for x in e]), 'SVML power'\n"
              "for d, h, w in json.loads(sys.argv[1]): np.save(f'{sys.argv[2]}/{d}-{h}-{w}.npy', sincos_2d(d, h, w))\n")
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(TABLES), str(tmp_path)],
                          env=os.environ | {"NPY_DISABLE_CPU_FEATURES": " ".join(avx512)}, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for embed_dim, h, w in TABLES:
        got = native_inputs(tool, np.zeros((3, 14, h * w * 14), np.float32), h, w, h * w,
                            ResamplerSpec(embed_dim, False), 1, tmp_path / "in")["resampler_pos"]
        want = np.load(tmp_path / f"{embed_dim}-{h}-{w}.npy").ravel()
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (embed_dim, h, w, int((got != want).sum()))


def onnxruntime_session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PRESETS))
def test_onnx_runtime_c_api_output_is_bit_identical_to_python_onnxruntime(tool, exports, tmp_path, preset):
    """Same library, same CPU EP, same thread count: the same bits (row 0 of a batch-2 encoder too)."""
    export = exports(preset)
    arrays = python_inputs(slice_rows(37, 28, seed=1), 37, 28, MAX_PATCHES, export.resampler, PRESETS[preset])
    write_inputs(arrays, tmp_path / "in")
    got, info = encode(tool, tmp_path / "in", tmp_path / "out.f32", "--onnx", export.onnx, "--threads", 2)
    want = onnxruntime_session(export.onnx, threads=2).run(None, arrays)[0][0]
    assert (info["batch"], info["max_patches"]) == (PRESETS[preset], MAX_PATCHES)
    assert info["encoder"].startswith("onnxruntime cpu")
    assert got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
        f"max abs difference {np.abs(got - want).max()}"


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PRESETS))
def test_pte_vision_encoder_output_is_bit_identical_to_python_executorch(tool, exports, tmp_path, preset):
    from edgevlm.export.decoder.pte import load_pte_method, torch_on_one_thread

    export = exports(preset)
    arrays = python_inputs(slice_rows(37, 28, seed=2), 37, 28, MAX_PATCHES, export.resampler, 1)
    write_inputs(arrays, tmp_path / "in")
    got, info = encode(tool, tmp_path / "in", tmp_path / "out.f32", "--pte", export.pte)
    with torch_on_one_thread():
        method = load_pte_method(export.pte, "vision_encoder")
        want = method.execute([torch.from_numpy(arrays[name]) for name in INPUT_FILES])[0].numpy()[0]
    assert (info["batch"], info["max_patches"]) == (1, MAX_PATCHES)
    assert got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
        f"max abs difference {np.abs(got - want).max()}"


def program_without_vision(path: Path) -> Path:
    """A small ExecuTorch program with only `forward`."""
    from executorch.exir import to_edge

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    path.write_bytes(to_edge(torch.export.export(Double(), (torch.ones(2),))).to_executorch().buffer)
    return path


def onnx_with_other_inputs(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_unusable_files_are_refused_with_what_to_do(tool, tmp_path):
    plain = program_without_vision(tmp_path / "plain.pte")
    assert run(tool, "has-vision", plain).stdout.strip() == "false"
    inputs = ["--inputs", tmp_path / "in", "--out", tmp_path / "out.f32"]
    proc = run(tool, "encode", "--pte", plain, *inputs)
    assert proc.returncode == 1 and "plain.pte has no vision_encoder method" in proc.stderr
    assert "vision_in_pte: true" in proc.stderr
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model" * 10)
    proc = run(tool, "encode", "--onnx", junk, *inputs)
    assert proc.returncode == 1 and f"loading {junk} into ONNX Runtime" in proc.stderr, proc.stderr
    proc = run(tool, "encode", "--onnx", onnx_with_other_inputs(tmp_path / "relu.onnx"), *inputs)
    assert proc.returncode == 1 and "is not an edgevlm vision encoder: its inputs are [x]" in proc.stderr
    for flag in ("--onnx", "--pte"):
        proc = run(tool, "encode", flag, tmp_path / "missing.file", *inputs)
        assert proc.returncode == 1 and f"cannot open {tmp_path / 'missing.file'}: no such file" in proc.stderr
    proc = run(tool, "has-vision", junk)
    assert proc.returncode == 1 and "not an ExecuTorch program" in proc.stderr
    assert run(tool, "encode", "--inputs", tmp_path / "in").returncode == 2  # usage


def test_a_slice_larger_than_the_encoder_is_refused(tool, tmp_path):
    slice_rows(40, 30, seed=0).tofile(tmp_path / "rows.f32")
    proc = run(tool, "inputs", "--rows", tmp_path / "rows.f32", "--h", 40, "--w", 30, "--max-patches", 1120,
               "--batch", 1, "--per-side", 70, "--embed-dim", 256, "--on-values", 0, "--out", tmp_path / "in")
    assert proc.returncode == 1
    assert "a slice of 40x30 patches (1200) exceeds the encoder's static max_patches=1120" in proc.stderr
    proc = run(tool, "inputs", "--rows", tmp_path / "rows.f32", "--h", 40, "--w", 31, "--max-patches", 1300,
               "--batch", 1, "--per-side", 70, "--embed-dim", 256, "--on-values", 0, "--out", tmp_path / "in")
    assert proc.returncode == 1 and "the slice holds 705600 values, not the 3 x 14 x 17360" in proc.stderr


@pytest.mark.slow
def test_inputs_of_another_shape_and_a_missing_provider_are_clear_errors(tool, exports, tmp_path):
    import onnxruntime

    export = exports("minicpmv-2.6-tiny")
    native_inputs(tool, slice_rows(4, 5, seed=3), 4, 5, 512, export.resampler, 1, tmp_path / "in")
    for encoder in (["--onnx", export.onnx], ["--pte", export.pte]):
        proc = run(tool, "encode", *encoder, "--inputs", tmp_path / "in", "--out", tmp_path / "out.f32")
        assert proc.returncode == 1 and f"max_patches {MAX_PATCHES}" in proc.stderr, proc.stderr
    if "XnnpackExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the XNNPACK EP")
    proc = run(tool, "encode", "--onnx", export.onnx, "--provider", "XnnpackExecutionProvider", "--inputs",
               tmp_path / "in", "--out", tmp_path / "out.f32")
    assert proc.returncode == 1, proc.stderr
    assert "adding the XnnpackExecutionProvider execution provider" in proc.stderr
    assert "XNNPACK execution provider is not supported in this build" in proc.stderr  # ONNX Runtime's words


@pytest.mark.slow
def test_aarch64_build_builds_the_same_inputs_and_encodes_like_the_host(tool, cross_tool, exports, tmp_path):
    """The inputs bit for bit (plain IEEE arithmetic and explicit fmaf); the encoders' outputs within
    float rounding of the host's (NEON and AVX kernels sum in other orders)."""
    export = exports("minicpmv-2.6-tiny")
    rows = slice_rows(37, 28, seed=4)
    for batch, encoder in ((PRESETS["minicpmv-2.6-tiny"], ["--onnx", export.onnx, "--threads", 2]),
                           (1, ["--pte", export.pte])):
        host = native_inputs(tool, rows, 37, 28, MAX_PATCHES, export.resampler, batch, tmp_path / "host")
        arm = native_inputs(cross_tool, rows, 37, 28, MAX_PATCHES, export.resampler, batch, tmp_path / "arm")
        for name in INPUT_FILES:
            assert np.array_equal(host[name].view(np.uint32), arm[name].view(np.uint32)), name
        want, _ = encode(tool, tmp_path / "host", tmp_path / "host.f32", *encoder)
        got, _ = encode(cross_tool, tmp_path / "host", tmp_path / "arm.f32", *encoder)
        error = np.abs(got - want).max()
        assert error <= 1e-5 * np.abs(want).max(), (encoder[0], error)


@pytest.mark.slow
def test_the_runtime_builds_without_onnx_runtime_and_says_so(tmp_path, monkeypatch, edgevlm_logs):
    from edgevlm.runtime.build import build_runtime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails, as where it is missing
    tool = build_runtime(home=tmp_path / "home") / "edgevlm-vision-dump"
    assert any("without ONNX Runtime" in r.getMessage() for r in edgevlm_logs)
    proc = run([tool], "encode", "--onnx", tmp_path / "any.onnx", "--inputs", tmp_path / "in", "--out", tmp_path / "o")
    assert proc.returncode == 1 and "this runtime was built without ONNX Runtime" in proc.stderr
    assert "pip install onnxruntime" in proc.stderr


def test_session_config_slot_is_add_session_config_entry(tmp_path):
    """runtime/src/ort_api.h's AddSessionConfigEntry slot (the native QNN session refuses CPU
    fallback through it) is that function in the installed ONNX Runtime: called through ctypes with
    `session.load_model_format=ORT`, loading an .onnx file must then fail ORT-format verification."""
    import ctypes
    import glob
    import re

    import onnxruntime

    from edgevlm.runtime import build as runtime_build

    header = (Path(runtime_build.__file__).parent / "src" / "ort_api.h").read_text()
    slot = int(re.search(r"AddSessionConfigEntry = Slot<(\d+),", header).group(1))
    ort = ctypes.CDLL(glob.glob(str(Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime.so*"))[0])

    class ApiBase(ctypes.Structure):
        _fields_ = [("GetApi", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)),
                    ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p))]

    ort.OrtGetApiBase.restype = ctypes.POINTER(ApiBase)
    api = ctypes.cast(ort.OrtGetApiBase().contents.GetApi(17), ctypes.POINTER(ctypes.c_void_p))

    def fn(index, *args):
        return ctypes.CFUNCTYPE(ctypes.c_void_p, *args)(api[index])

    message = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_void_p)(api[2])
    ptr = ctypes.POINTER(ctypes.c_void_p)
    env, options, session = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    assert fn(3, ctypes.c_int, ctypes.c_char_p, ptr)(3, b"edgevlm-test", ctypes.byref(env)) is None
    assert fn(10, ptr)(ctypes.byref(options)) is None
    model = onnx_with_other_inputs(tmp_path / "relu.onnx")
    create = fn(7, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ptr)
    assert create(env, str(model).encode(), options, ctypes.byref(session)) is None  # loads before the entry
    add = fn(slot, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p)
    assert add(options, b"session.load_model_format", b"ORT") is None
    status = create(env, str(model).encode(), options, ctypes.byref(session))
    assert status is not None, f"the config entry changed nothing: slot {slot} is not AddSessionConfigEntry"
    assert b"ORT" in message(status)  # e.g. "ORT model verification failed"
