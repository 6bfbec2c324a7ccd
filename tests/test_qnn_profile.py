"""QNN phone-run helpers (device_tests/qnn_profile.py): qnn-profile-viewer reports in the layout
the tool prints (sections, `--- Graph N (name):` blocks, `label: value us` lines, as published in
public qnn-net-run write-ups), the qnn-net-run argv, SDK checks on SDK-shaped folders, version
compatibility, and the input_list files read back byte for byte."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgevlm.device_tests.devices.base import is_unavailable
from edgevlm.device_tests.qnn_profile import (context_compatible, epcontext_input_names, parse_profile_viewer,
                                              profile_summary, qnn_net_run_argv, qnn_sdk_problem, sdk_files,
                                              sdk_version, write_input_list)

# --profiling_level basic with --retrieve_context: the init section carries the load-binary times
REPORT = """\
Input Log File Location: /data/local/tmp/edgevlm/3f2a/out/qnn-profiling-data_0.log
Qnn Init/Prepare/Finalize/De-Init/Execute/Lib-Load Statistics:

--- Init Stats:

---
    NetRun:  183402 us
    Backend (RPC (load binary) time): 61234 us
    Backend (QNN accelerator (load binary) time): 58870 us
    Backend (Accelerator (load binary) time): 58011 us
    Backend (QNN (load binary) time): 183377 us

Compose Graphs Stats:

---
    NetRun:  0 us

Finalize Stats:

--- Graph 0 (vision_encoder):
    NetRun:  12 us

De-Init Stats:

---
    NetRun:  20410 us
    Backend (RPC (deinit) time): 1433 us
    Backend (QNN Accelerator (deinit) time): 1102 us
    Backend (Accelerator (deinit) time): 1087 us
    Backend (QNN (deinit) time): 20398 us

Execute Stats (Average):

--- Total Inference Time:

--- Graph 0 (vision_encoder):
    NetRun:  41873 us
    Backend (Number of HVX threads used): 4 count
    Backend (RPC (execute) time): 41650 us
    Backend (QNN accelerator (execute) time): 40212 us
    Backend (Accelerator (execute) time): 39980 us
    Backend (QNN (execute) time): 41861 us

Execute Stats (Min):

--- Total Inference Time:

--- Graph 0 (vision_encoder):
    NetRun:  40961 us

Execute Stats (Max):

--- Total Inference Time:

--- Graph 0 (vision_encoder):
    NetRun:  45120 us

Execute Stats (Overall):

---
    NetRun IPS:  23.8148 inf/sec
"""


def test_profile_summary_from_report():
    s = profile_summary(REPORT)
    assert s["init_ms"] == pytest.approx(183.402)
    assert s["load_binary_rpc_ms"] == pytest.approx(61.234)
    assert s["load_binary_accelerator_ms"] == pytest.approx(58.011)
    assert s["deinit_ms"] == pytest.approx(20.41) and s["finalize_ms"] == pytest.approx(0.012)
    assert s["execute_avg_ms"] == pytest.approx(41.873)
    assert (s["execute_min_ms"], s["execute_max_ms"]) == (pytest.approx(40.961), pytest.approx(45.12))
    assert s["execute_rpc_ms"] == pytest.approx(41.65)
    assert s["execute_accelerator_ms"] == pytest.approx(39.98)
    assert s["execute_qnn_accelerator_ms"] == pytest.approx(40.212)
    assert s["hvx_threads"] == 4 and s["inferences_per_s"] == pytest.approx(23.8148)
    assert is_unavailable(s["per_inference_ms"]) and is_unavailable(s["qnn_version"])


def test_report_without_min_max_and_with_version_line():
    text = "QNN SDK version: 2.31.0.250130\n" + REPORT.split("Execute Stats (Min):")[0] + \
        "Execute Stats (Overall):\n\n---\n    NetRun IPS:  23.8148 inf/sec\n"
    s = profile_summary(text)
    assert s["qnn_version"] == "2.31.0.250130"
    assert s["execute_min_ms"] == {"unavailable": "not in this qnn-profile-viewer report (execute_min_ms)"}
    assert parse_profile_viewer(text)["sections"]["Execute Stats (Average)"]["NetRun"] == (41873.0, "us")
    assert is_unavailable(profile_summary("qnn-profile-viewer: error: cannot open log\n")["qnn_profile"])


def test_qnn_net_run_argv():
    f = "/data/local/tmp/edgevlm/3f2a"
    assert qnn_net_run_argv(f, "ctx.bin", "input_list.txt", "out", 20) == [
        "env", f"LD_LIBRARY_PATH={f}/lib", f"ADSP_LIBRARY_PATH={f}/lib;/vendor/lib/rfsa/adsp;/vendor/dsp",
        f"{f}/bin/qnn-net-run", "--retrieve_context", "ctx.bin", "--backend", f"{f}/lib/libQnnHtp.so",
        "--input_list", "input_list.txt", "--output_dir", "out", "--profiling_level", "basic",
        "--perf_profile", "burst", "--num_inferences", "20"]


def _sdk(tmp_path, name="2.31.0.250130", yaml=None):
    root = tmp_path / name
    for path in sdk_files(root).values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x7fELF")
    if yaml is not None:
        (root / "sdk.yaml").write_text(yaml)
    return root


def test_sdk_problems_name_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    assert qnn_sdk_problem().startswith("QNN_SDK_ROOT is not set: install the QAIRT SDK")
    assert "is not a folder" in qnn_sdk_problem(str(tmp_path / "nope"))
    root = _sdk(tmp_path)
    assert qnn_sdk_problem(str(root)) is None
    monkeypatch.setenv("QNN_SDK_ROOT", str(root))
    assert qnn_sdk_problem() is None
    (root / "lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so").unlink()
    assert "has no lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so (needed as lib/libQnnHtpV75Skel.so)" \
        in qnn_sdk_problem(str(root))
    assert "libQnnHtpV79Stub.so" in qnn_sdk_problem(str(root), hexagon="v79")


def test_sdk_version_from_yaml_or_folder(tmp_path):
    assert sdk_version(_sdk(tmp_path / "a")) == "2.31.0.250130"
    y = _sdk(tmp_path / "b", name="qairt", yaml="name: qairt\nversion: 2.34.0\nbuild_id: 250424123456\n")
    assert sdk_version(y) == "2.34.0"
    assert sdk_version(_sdk(tmp_path / "c", name="latest")) is None


@pytest.mark.parametrize("sdk,producer,problem", [
    ("2.31.0.250130", "2.31.0.250130", None),
    ("2.34.0", "2.31.0.250130", None),
    ("2.28.2.241116", "2.31.0.250130", "older"),
    ("2.31.0", "2.31.1", "older"),
    ("3.0.0", "2.31.0", "major"),
    ("latest", "2.31.0", "not a QNN version"),
])
def test_context_compatibility(sdk, producer, problem):
    got = context_compatible(sdk, producer)
    assert (got is None) if problem is None else (problem in got)


def test_input_list_and_raw_files(tmp_path):
    order = ["pixel_values", "tgt_sizes"]
    runs = [{"tgt_sizes": np.array([[32, 32]], dtype=np.int64),
             "pixel_values": np.arange(12, dtype=np.float64).reshape(1, 3, 2, 2)},
            {"pixel_values": np.ones((1, 3, 2, 2), np.float32), "tgt_sizes": np.array([[16, 64]], np.int32)}]
    path = write_input_list(tmp_path, runs, order)
    assert path.read_text() == ("pixel_values:=inputs/0/pixel_values.raw tgt_sizes:=inputs/0/tgt_sizes.raw\n"
                                "pixel_values:=inputs/1/pixel_values.raw tgt_sizes:=inputs/1/tgt_sizes.raw\n")
    raw = np.fromfile(tmp_path / "inputs/0/pixel_values.raw", dtype=np.float32)
    assert raw.tolist() == list(range(12))
    assert np.fromfile(tmp_path / "inputs/0/tgt_sizes.raw", dtype=np.int32).tolist() == [32, 32]
    assert (tmp_path / "inputs/1/tgt_sizes.raw").read_bytes() == np.array([16, 64], np.int32).tobytes()
    with pytest.raises(ValueError, match="the model takes"):
        write_input_list(tmp_path, [{"pixel_values": np.zeros(1, np.float32)}], order)
    with pytest.raises(ValueError, match="float16"):
        write_input_list(tmp_path, [{"pixel_values": np.zeros(1, np.float16),
                                     "tgt_sizes": np.zeros(2, np.int32)}], order)
    with pytest.raises(ValueError, match="outside int32"):
        write_input_list(tmp_path, [{"pixel_values": np.zeros(1, np.float32),
                                     "tgt_sizes": np.array([2 ** 40])}], order)


def test_epcontext_input_order(tmp_path):
    node = helper.make_node("EPContext", ["pixel_values", "tgt_sizes"], ["embeds"], domain="com.microsoft",
                            embed_mode=0, ep_cache_context="vision_ctx.bin", source="QnnExecutionProvider")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, 14, 448]),
                               helper.make_tensor_value_info("tgt_sizes", TensorProto.INT32, [1, 2])],
                              [helper.make_tensor_value_info("embeds", TensorProto.FLOAT, [1, 64, 32])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, tmp_path / "vision_ctx.onnx")
    assert epcontext_input_names(tmp_path / "vision_ctx.onnx") == ["pixel_values", "tgt_sizes"]
