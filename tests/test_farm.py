"""Device-farm integrations up to the network boundary: credentials, job inputs, result parsing.

No AI Hub token or network here: the submission itself is not exercised. The profile parsed below
has the exact shape qai-hub 0.56's `download_profile()` returns (execution_summary in microseconds
and bytes, execution_detail per layer), built the way its client builds it.
"""

from __future__ import annotations

import pytest

from edgevlm.backends import aihub
from edgevlm.backends.base import BackendError
from edgevlm.cli.main import main
from edgevlm.device_tests.schema import validate_bench

PROFILE = {
    "execution_summary": {
        "estimated_inference_time": 5321, "estimated_inference_peak_memory": 48_234_496,
        "first_load_time": 812_345, "first_load_peak_memory": 120_000_000, "warm_load_time": 40_000,
        "warm_load_peak_memory": 90_000_000, "compile_time": 0, "compile_peak_memory": 0,
        "inference_memory_peak_range": (40_000_000, 48_234_496),
        "all_inference_times": [5400, 5321, 5290, 5333, 6120, 5301, 5299, 5350, 5318, 5325],
    },
    "execution_detail": [
        {"name": "/vpm/embeddings/Conv", "type": "Conv2d", "compute_unit": "NPU", "execution_time": 120},
        {"name": "/vpm/encoder/layers.0/MatMul", "type": "MatMul", "compute_unit": "NPU", "execution_time": 80},
        {"name": "/resampler/Softmax", "type": "Softmax", "compute_unit": "NPU", "execution_time": 10},
    ],
}


def _manifest(tmp_path, with_qdq=True):
    (tmp_path / "v.onnx").write_bytes(b"ctx")
    extra = [{"file": "v.bin", "sha256": "0" * 64, "bytes": 1}]
    if with_qdq:
        (tmp_path / "v.qdq.onnx").write_bytes(b"qdq")
        extra.append({"file": "v.qdq.onnx", "sha256": "0" * 64, "bytes": 1})
    return {"artifacts": [{"target": "qnn", "file": "v.onnx", "precision": "w8a16", "sha256": "ab" * 32,
                           "max_patches": 1120, "batch": 1, "extra_files": extra,
                           "inputs": [{"name": "patch_mask", "shape": [1, 1120], "dtype": "float32"}]}],
            "model": {"version": "2.6"}, "toolchain": {"edgevlm": "0"}, "schema_version": 1, "preprocessing": {},
            "prompt": {}, "special_tokens": {}}


def _qnn_export(int4_kv_export, tmp_path):
    """A real export given a QNN entry (its QDQ model: the ORT vision model), as `edgevlm aihub` reads it."""
    import json
    import shutil

    from edgevlm.export.manifest import sha256_path

    art = shutil.copytree(int4_kv_export, tmp_path / "art")
    shutil.copyfile(art / "minicpmv-2.6.vision.ort.fp32.onnx", art / "v.qdq.onnx")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["artifacts"].append(dict(manifest["artifacts"][0], target="qnn", extra_files=[
        {"file": "v.qdq.onnx", "sha256": sha256_path(art / "v.qdq.onnx")}]))
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


def test_missing_client_is_reported_before_the_token(monkeypatch, tmp_path, capsys, int4_kv_export):
    """qai-hub is not installed in this environment (the farm extra): that is named first, with the
    install command for a source checkout, even though no token exists either."""
    import importlib.util
    import time

    assert importlib.util.find_spec("qai_hub") is None, "this test needs qai-hub absent (it checks the real import)"
    monkeypatch.delenv(aihub.TOKEN_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    art = _qnn_export(int4_kv_export, tmp_path)
    start = time.monotonic()
    code = main(["aihub", "--artifacts", str(art)])
    out = capsys.readouterr()
    assert code == 3 and "Traceback" not in out.err and time.monotonic() - start < 30
    assert "the Qualcomm AI Hub client (the qai-hub package) is not installed" in out.err
    assert "pip install -e '.[farm]'" in out.err and "API token" not in out.err


def test_missing_token_then_unreachable_api_in_order(monkeypatch, tmp_path):
    """With the client present (the installed check satisfied here by monkeypatch: qai-hub is not
    installed in this environment), a missing token is named next; with a token, an unreachable API
    is named within the probe's timeout instead of after the client's retries."""
    import socket

    monkeypatch.setattr(aihub, "client_problem", lambda: None)
    monkeypatch.delenv(aihub.TOKEN_ENV, raising=False)
    monkeypatch.delenv(aihub.CONFIG_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BackendError, match="client.ini does not exist and QAI_HUB_API_TOKEN is not set") as err:
        aihub.preflight()
    assert err.value.exit_code == 3 and "qai-hub configure --api_token" in err.value.fix
    # a token, and client.ini pointing at a local port nothing listens on: refused at once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends
    (tmp_path / ".qai_hub").mkdir()
    (tmp_path / ".qai_hub" / "client.ini").write_text(
        f"[api]\napi_token = t\napi_url = https://127.0.0.1:{port}\nweb_url = https://127.0.0.1:{port}\n")
    assert aihub.api_url() == f"https://127.0.0.1:{port}"
    with pytest.raises(aihub.Unreachable, match=f"cannot reach Qualcomm AI Hub at 127.0.0.1:{port}: ") as err:
        aihub.preflight()
    assert err.value.exit_code == 3 and "HTTPS_PROXY" in err.value.fix


def test_reachability_probe_gives_up_within_its_timeout():
    """A server that accepts the connection and never answers (the kernel completes the handshake of a
    listening socket nobody accepts from) is reported within the probe's timeout."""
    import socket
    import time

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        start = time.monotonic()
        problem = aihub.reachability_problem(f"https://127.0.0.1:{port}", timeout=0.5)
        assert time.monotonic() - start < 5
    assert problem == f"cannot reach Qualcomm AI Hub at 127.0.0.1:{port}: no answer within 0.5 s"
    assert aihub.reachability_problem("not a url") == "the AI Hub API URL 'not a url' names no http(s) host"


def test_reachability_probe_accepts_any_http_answer(tmp_path):
    """A real local HTTP server answering 404 to HEAD counts as reachable (the service answered)."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert aihub.reachability_problem(f"http://127.0.0.1:{port}/no-such-page", timeout=3) is None
    finally:
        server.shutdown()
        server.server_close()


def test_default_api_url_is_the_clients(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(aihub.CONFIG_ENV, raising=False)
    assert aihub.api_url() == "https://workbench.aihub.qualcomm.com"
    monkeypatch.setenv(aihub.CONFIG_ENV, str(tmp_path / "other.ini"))
    (tmp_path / "other.ini").write_text("[api]\napi_token = t\napi_url = https://hub.example:8443\n")
    assert aihub.token_problem() is None and aihub.api_url() == "https://hub.example:8443"


def test_token_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(aihub.TOKEN_ENV, "secret")
    assert aihub.token_problem() is None
    monkeypatch.delenv(aihub.TOKEN_ENV)
    (tmp_path / ".qai_hub").mkdir()
    (tmp_path / ".qai_hub" / "client.ini").write_text("[api]\napi_token = t\n")
    assert aihub.token_problem() is None


def test_submission_inputs_come_from_the_manifest(tmp_path):
    manifest = _manifest(tmp_path)
    artifact, qdq = aihub.qnn_source(manifest, tmp_path)
    assert qdq == tmp_path / "v.qdq.onnx"
    assert aihub.input_specs(artifact) == {"patch_mask": ((1, 1120), "float32")}
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(BackendError, match="has no QDQ model"):
        aihub.qnn_source(_manifest(bare, with_qdq=False), bare)
    with pytest.raises(BackendError, match="no QNN .* vision artifact"):
        aihub.qnn_source({"artifacts": [{"target": "ort"}]}, tmp_path)


def _manifest_artifact():
    return {"file": "v.onnx", "precision": "w8a16", "sha256": "ab" * 32, "max_patches": 1120, "batch": 1}


def test_one_median_and_spread():
    """edgevlm.stats is the one definition: true median (mean of the middle two), nearest-rank p90
    (a measured sample), min; host_bench and AI Hub report through it."""
    from edgevlm.stats import median, percentile, timing_summary

    assert median([4, 1, 3, 2]) == 2.5 and median([3, 1, 2]) == 2
    samples = [float(x) for x in range(1, 11)]
    assert percentile(samples, 90) == 9.0 and percentile(samples, 90) in samples
    assert timing_summary(samples[::-1], warmup=2) == {"runs": 10, "warmup": 2, "median_ms": 5.5, "p90_ms": 9.0,
                                                        "min_ms": 1.0, "max_ms": 10.0, "mean_ms": 5.5,
                                                        "std_ms": pytest.approx(3.0277, abs=1e-4)}


def test_profile_becomes_a_bench2_vision_entry(tmp_path):
    from edgevlm.device_tests.devices.farms import aihub_report

    from edgevlm.device_tests.devices.base import is_unavailable

    entry = aihub.aihub_vision_entry(PROFILE, _manifest_artifact(), aihub.DEFAULT_DEVICE)
    assert entry["runtime"] == "aihub-qnn:w8a16" and entry["status"] == "ok" and entry["sha256"] == "ab" * 32
    assert entry["cold_ms"] == pytest.approx(812.345) and entry["load_ms"] == pytest.approx(40.0)
    assert entry["compile_ms"] == 0.0  # a context binary: nothing compiled on the device
    warm = entry["metrics"]
    assert warm["runs"] == 10 and warm["median_ms"] == pytest.approx(5.323) and warm["p90_ms"] == pytest.approx(5.400)
    assert warm["min_ms"] == pytest.approx(5.290) and warm["max_ms"] == pytest.approx(6.120)
    assert warm["mean_ms"] == pytest.approx(5.4057) and warm["std_ms"] == pytest.approx(0.25293, abs=1e-5)
    assert is_unavailable(warm["warmup"])
    assert entry["peak_memory_bytes"] == 48_234_496 and entry["compute_units"] == {"NPU": 3}
    import json

    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(tmp_path)))
    report = aihub_report(_manifest(tmp_path) | {"model": {"version": "2.6"}}, tmp_path, aihub.DEFAULT_DEVICE,
                          {"compile": "j1", "profile": "j2"}, entry)
    validate_bench(report)  # the bench/2 report the aihub command and device-bench --device aihub write
    assert report["power"] == {"unavailable": "Qualcomm AI Hub does not measure power"}
    assert report["device"]["soc"] == "Snapdragon 8 Gen 3 (SM8650)"
    # an old profile: one estimate, no load times, no per-layer detail
    old = aihub.aihub_vision_entry({"execution_summary": {"estimated_inference_time": 7000, "first_load_time": None}},
                                   _manifest_artifact(), "x")
    assert old["metrics"]["median_ms"] == 7.0 and old["metrics"]["runs"] == 1
    assert is_unavailable(old["metrics"]["std_ms"])
    assert is_unavailable(old["cold_ms"]) and is_unavailable(old["compute_units"])
    assert is_unavailable(old["peak_memory_bytes"])
