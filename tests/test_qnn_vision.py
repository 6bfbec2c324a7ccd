"""device_tests/qnn_vision.py: the QNN context binary run by qnn-net-run on a phone's HTP, its
profile read by qnn-profile-viewer, one bench/2 result.

Qualcomm's tools and a phone cannot be on the machines these tests run on, so three things are
stand-ins, and only they: the phone (tests/test_device_adb.py's fake `adb`, which runs `adb shell`
commands with this machine's sh, /data/local/tmp mapped to a temp folder), the SDK's phone-side
qnn-net-run (a small script that checks the context binary, the library paths and every raw
input it is given, then writes a profiling log) and its host-side qnn-profile-viewer (a script
that reads that log and prints a report in qnn-profile-viewer's text format, tests/test_qnn_profile.py's
REPORT). The export, the bundle push, the raw inputs, the commands and the parsing are real.
"""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import sys

import jsonschema
import numpy as np
import pytest
import yaml

from edgevlm.device_tests.device_bench import DeviceBenchPlan
from edgevlm.device_tests.device_bundle import export_files
from edgevlm.device_tests.devices.adb import AdbDevice
from edgevlm.device_tests.devices.base import Bundle, is_unavailable, unavailable
from edgevlm.device_tests.host_bench import BenchSlice
from edgevlm.device_tests.qnn_profile import sdk_files
from edgevlm.device_tests.qnn_vision import VIEWER, qnn_vision_result
from edgevlm.device_tests.schema import BENCH_SCHEMA_ID, validate_bench
from edgevlm.export.manifest import read_manifest
from tests.test_device_adb import fake_adb  # noqa: F401  (the phone boundary, shared)
from tests.test_qnn_profile import REPORT, _sdk

if not (platform.system() == "Linux" and platform.machine() == "x86_64"):
    pytest.skip("the QNN export (onnxruntime-qnn) ships for Linux x86_64 only", allow_module_level=True)

# Phone side: what qnn-net-run is handed must be there, as it would need it on a phone.
NET_RUN = r'''#!PYTHON
import json, os, sys
args = sys.argv[1:]
opt = dict(zip(args[::2], args[1::2]))
need = [opt["--retrieve_context"], opt["--backend"],
        os.path.join(os.environ["LD_LIBRARY_PATH"], "libQnnSystem.so"),
        os.path.join(os.environ["ADSP_LIBRARY_PATH"].split(";")[0], "libQnnHtpV75Skel.so")]
for path in need:
    if not os.path.isfile(path):
        sys.exit(f"qnn-net-run: cannot open {path}")
inputs = {}
for line in open(opt["--input_list"]).read().splitlines():
    for entry in line.split():
        name, path = entry.split(":=")
        inputs[name] = [path, os.path.getsize(path)]
os.makedirs(opt["--output_dir"], exist_ok=True)
log = {"num_inferences": int(opt["--num_inferences"]), "profiling_level": opt["--profiling_level"],
       "inputs": inputs}
open(os.path.join(opt["--output_dir"], "qnn-profiling-data_0.log"), "w").write(json.dumps(log))
print("qnn-net-run: done")
'''

# Host side: prints the report only for a log qnn-net-run wrote.
VIEWER_SCRIPT = r'''#!PYTHON
import json, sys
assert sys.argv[1] == "--input_log", sys.argv
log = json.load(open(sys.argv[2]))
if log.get("profiling_level") != "basic" or not log.get("inputs"):
    sys.exit("qnn-profile-viewer: not a profiling log")
sys.stdout.write(REPORT)
'''


def fake_sdk(root_parent, name="2.51.0.260929181845"):
    root = _sdk(root_parent, name=name)
    for rel, text in (("bin/aarch64-android/qnn-net-run", NET_RUN), (VIEWER, VIEWER_SCRIPT)):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("PYTHON", sys.executable).replace("REPORT", repr(REPORT)))
        path.chmod(0o755)
    return root


@pytest.fixture(scope="module")
def qnn_export(tiny_checkpoints, tmp_path_factory):
    from edgevlm.export.driver import export_model
    from edgevlm.export.recipes import load_recipe

    root = tmp_path_factory.mktemp("qnn-vision")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "htp", "calibration": {"source": "builtin", "images": 2},
                                      "vision": [{"backend": "qnn", "precision": "w8a16",
                                                  "options": {"htp_arch": 75, "soc_model": 57}}]}))
    out = export_model(tiny_checkpoints["minicpmv-2.6-tiny"], load_recipe(str(recipe)), root / "out")
    return out, read_manifest(out)


def pushed(qnn_export, tmp_path):
    """The export's bundle on the fake phone, as device-bench pushes it."""
    out, manifest = qnn_export
    device = AdbDevice("adb:R5CX21ABCDE")
    return device, device.push(Bundle(out, export_files(out, manifest)))


def minimal_report(entry):
    why = unavailable("not read in this test")
    device = {"kind": "adb", "spec": "adb:R5CX21ABCDE", "emulated": False, "model": why, "soc": why, "os": why,
              "cpu": why, "thermal_before": why, "thermal_after": why}
    return {"schema": BENCH_SCHEMA_ID, "kind": "device", "device": device, "artifacts": why, "runtime_versions": {},
            "model": {"version": "2.6"}, "results": [entry], "power": why}


def test_export_records_the_qnn_version_that_compiled_the_context(qnn_export):
    from onnxruntime_qnn import LIB_DIR_FULL_PATH, build_and_package_info

    details = qnn_export[1]["artifacts"][0]["details"]
    assert details["qnn_version"] == build_and_package_info.qnn_version
    # the version is the QNN inside the plugin: libQnnHtp.so carries it in its build id
    htp = open(f"{LIB_DIR_FULL_PATH}/libQnnHtp.so", "rb").read()
    assert f"v{details['qnn_version']}.".encode() in htp


def test_qnn_net_run_on_the_phone(fake_adb, qnn_export, tmp_path):  # noqa: F811
    out, manifest = qnn_export
    device, folder = pushed(qnn_export, tmp_path)
    sdk = fake_sdk(tmp_path / "sdk")
    fake_adb.reset()
    raw = tmp_path / "raw"
    entry = qnn_vision_result(device, folder, out, manifest, DeviceBenchPlan(runs=3, warmup=1), raw, str(sdk))
    art = manifest["artifacts"][0]
    qnn, binary = f"{folder}/qnn", art["details"]["context_binary"]
    order = ["pixel_values", "patch_mask", "position_ids", "resampler_pos"]
    argv = ["env", f"LD_LIBRARY_PATH={qnn}/lib", f"ADSP_LIBRARY_PATH={qnn}/lib;/vendor/lib/rfsa/adsp;/vendor/dsp",
            f"{qnn}/bin/qnn-net-run", "--retrieve_context", f"{folder}/artifacts/{binary}", "--backend",
            f"{qnn}/lib/libQnnHtp.so", "--input_list", "input_list.txt", "--output_dir", "output",
            "--profiling_level", "basic", "--perf_profile", "burst", "--num_inferences", "4"]
    staged = raw / "qnn-inputs"
    assert [c[2:] for c in fake_adb.calls()] == [
        ["shell", f"mkdir -p {qnn}/bin {qnn}/lib"],
        *[["push", str(p), f"{qnn}/{rel}"] for rel, p in sdk_files(sdk).items()],
        ["shell", f"chmod 755 {qnn}/bin/qnn-net-run"],
        ["shell", f"mkdir -p {qnn}/inputs/0"],
        ["push", str(staged / "input_list.txt"), f"{qnn}/input_list.txt"],
        *[["push", str(staged / f"inputs/0/{n}.raw"), f"{qnn}/inputs/0/{n}.raw"] for n in sorted(order)],
        ["shell", f"rm -rf {qnn}/output"],
        ["shell", f"cd {qnn} && " + " ".join(shlex.quote(a) for a in argv)],
        ["shell", f"ls {qnn}/output"],
        ["pull", f"{qnn}/output/qnn-profiling-data_0.log", str(raw / "qnn-profiling-data.log")],
    ]
    # what qnn-net-run read on the phone: the bench slice, in the model's input order, float32/int32
    log = json.loads((raw / "qnn-profiling-data.log").read_text())
    assert log["num_inferences"] == 4 and list(log["inputs"]) == order
    arrays = BenchSlice(out, manifest).inputs(art)
    phone = fake_adb.phone / qnn.lstrip("/")
    for name in order:
        a = arrays[name]
        expect = a.astype(np.int32 if a.dtype.kind == "i" else np.float32).tobytes()
        assert (phone / f"inputs/0/{name}.raw").read_bytes() == expect
    assert entry["status"] == "ok" and entry["runtime"] == "qnn-htp:w8a16 (qnn-net-run)"
    assert (entry["artifact"], entry["sha256"]) == (art["file"], art["sha256"])
    assert entry["load_ms"] == pytest.approx(183.402)  # init + compose (0 us)
    assert "first (cold) inference is inside the average" in entry["cold_ms"]["unavailable"]
    m = entry["metrics"]
    assert (m["runs"], m["warmup"], m["mean_ms"]) == (4, 0, pytest.approx(41.873))
    assert (m["min_ms"], m["max_ms"]) == (pytest.approx(40.961), pytest.approx(45.12))
    assert all(is_unavailable(m[k]) for k in ("median_ms", "p90_ms", "std_ms"))
    assert entry["accelerator_ms"] == pytest.approx(39.98) and entry["rpc_ms"] == pytest.approx(41.65)
    assert entry["peak_memory_bytes"] == {"unavailable": "qnn-net-run does not report memory use"}
    assert entry["qnn_context"]["made_by_qnn"] == art["details"]["qnn_version"]
    assert entry["qnn_sdk"]["version"] == "2.51.0.260929181845"
    assert (raw / "qnn-profile.txt").read_text() == REPORT
    validate_bench(minimal_report(entry))
    # the schema lets aggregate-only tools leave median/p90/min/max out, never the mean
    no_mean = entry | {"metrics": m | {"mean_ms": unavailable("x")}}
    with pytest.raises(jsonschema.ValidationError):
        validate_bench(minimal_report(no_mean))


def test_not_run_reasons_and_no_phone_command(fake_adb, qnn_export, tmp_path, monkeypatch):  # noqa: F811
    out, manifest = qnn_export
    device, folder = pushed(qnn_export, tmp_path)
    fake_adb.reset()
    plan, raw = DeviceBenchPlan(runs=2, warmup=1), tmp_path / "raw"

    def reason(sdk_root):
        entry = qnn_vision_result(device, folder, out, manifest, plan, raw, sdk_root)
        assert entry["status"] == "not run" and entry["artifact"] == manifest["artifacts"][0]["file"]
        validate_bench(minimal_report(entry))
        return entry["reason"]

    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    assert reason(None).startswith("QNN_SDK_ROOT is not set: install the QAIRT SDK")
    skel = fake_sdk(tmp_path / "a")
    (skel / "lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so").unlink()
    monkeypatch.setenv("QNN_SDK_ROOT", str(skel))  # read when called, not when imported
    assert "has no lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so" in reason(None)
    old = fake_sdk(tmp_path / "b", name="2.28.2.241116")
    assert reason(str(old)) == ("the context binary was made by QNN 2.51.0; this SDK is QNN 2.28.2.241116, older: "
                                "install QAIRT 2.51.0 or newer (same major), or re-export with this SDK")
    viewer = fake_sdk(tmp_path / "c")
    (viewer / VIEWER).unlink()
    assert f"has no {VIEWER} (the host tool that reads qnn-net-run's profile" in reason(str(viewer))
    assert fake_adb.calls() == []  # nothing sent to the phone for an SDK that cannot run


def test_failing_qnn_net_run_is_a_reason_not_an_exception(fake_adb, qnn_export, tmp_path):  # noqa: F811
    out, manifest = qnn_export
    device, folder = pushed(qnn_export, tmp_path)
    binary = manifest["artifacts"][0]["details"]["context_binary"]
    (fake_adb.phone / folder.lstrip("/") / "artifacts" / binary).unlink()
    entry = qnn_vision_result(device, folder, out, manifest, DeviceBenchPlan(runs=1, warmup=0), tmp_path / "raw",
                              str(fake_sdk(tmp_path / "sdk")))
    assert entry["status"] == "not run"
    assert entry["reason"].startswith("qnn-net-run failed on the phone (exit 1): qnn-net-run: cannot open ")
    assert binary in entry["reason"] and (tmp_path / "raw/qnn-net-run.log").exists()
    # a run whose profile the viewer cannot read: the reason, and the viewer's words kept in raw/
    shutil.copyfile(out / binary, fake_adb.phone / folder.lstrip("/") / "artifacts" / binary)
    sdk = fake_sdk(tmp_path / "sdk2")
    (sdk / VIEWER).write_text("#!/bin/sh\necho 'qnn-profile-viewer: unsupported log version' >&2\nexit 3\n")
    entry = qnn_vision_result(device, folder, out, manifest, DeviceBenchPlan(runs=1, warmup=0), tmp_path / "raw2",
                              str(sdk))
    assert entry["status"] == "not run" and entry["reason"].startswith("qnn-profile-viewer failed on ")
    assert "(exit 3): qnn-profile-viewer: unsupported log version" in entry["reason"]
    assert "unsupported log version" in (tmp_path / "raw2/qnn-profile.txt").read_text()


def test_no_qnn_artifact_is_none(qnn_export, tmp_path):
    out, manifest = qnn_export
    other = manifest | {"artifacts": [a | {"target": "ort"} for a in manifest["artifacts"]]}
    assert qnn_vision_result(None, "/nowhere", out, other, DeviceBenchPlan(), tmp_path, "/nowhere") is None
