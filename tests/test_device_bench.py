"""`edgevlm device-bench`: the device spec grammar, what each device kind says when it cannot be
used here, and the bench/2 schema's "present with a reason" rule."""

from __future__ import annotations

import copy
import shutil
import subprocess

import jsonschema
import pytest

from edgevlm.cli.main import main
from edgevlm.device_tests.devices import DEVICE_KINDS, get_device, parse_spec
from edgevlm.device_tests.devices.base import Bundle, unavailable
from edgevlm.device_tests.schema import validate_bench
from edgevlm.errors import ConfigError


def test_spec_grammar():
    assert parse_spec("host") == ("host", None)
    assert parse_spec("adb:R5CX21ABCDE") == ("adb", "R5CX21ABCDE")
    assert parse_spec("aihub:Samsung Galaxy S24 (Family)") == ("aihub", "Samsung Galaxy S24 (Family)")
    arn = "arn:aws:devicefarm:us-west-2:123456789012:project:0a1b2c3d"
    assert parse_spec(f"aws-device-farm:{arn}") == ("aws-device-farm", arn)  # the ARN keeps its colons
    with pytest.raises(ConfigError, match="unknown device `phone`") as err:
        parse_spec("phone")
    assert all(kind in err.value.fix for kind in DEVICE_KINDS)
    with pytest.raises(ConfigError, match="needs an argument"):
        parse_spec("aws-device-farm")
    with pytest.raises(ConfigError, match="takes no argument"):
        parse_spec("host:x")


def test_bundle_digest_follows_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    first = Bundle(tmp_path, {"bin/x": a, "artifacts/y": b}).digest
    assert first == Bundle(tmp_path, {"artifacts/y": b, "bin/x": a}).digest  # order does not matter
    b.write_bytes(b"changed")
    assert Bundle(tmp_path, {"bin/x": a, "artifacts/y": b}).digest != first
    assert Bundle(tmp_path, {"bin/z": a, "artifacts/y": b}).digest != Bundle(tmp_path, {"bin/x": a, "artifacts/y": b}).digest


def test_macos_device_off_a_mac_names_what_is_missing():
    problem = get_device("macos").missing()
    assert "Apple silicon Mac" in problem and "Linux" in problem


def test_qemu_device_needs_its_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    problem = get_device("qemu-aarch64").missing()
    assert "qemu-aarch64" in problem and "apt-get install qemu-user" in problem


def test_missing_device_is_one_clear_message_and_exit_3(int4_kv_export, tmp_path, capsys, monkeypatch):
    """Through the CLI with the real adb (its own server on a private port, stopped afterwards),
    before anything is built or pushed: the message names what is missing."""
    if shutil.which("adb") is None:
        pytest.skip("adb is not installed (scripts/system-deps.sh installs it)")
    from tests.test_device_adb import _free_port

    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(_free_port()))
    out = tmp_path / "r.json"
    try:
        code = main(["device-bench", "--artifacts", str(int4_kv_export), "--device", "adb", "--json", str(out)])
    finally:
        subprocess.run(["adb", "kill-server"], capture_output=True, timeout=60)
    err = capsys.readouterr().err
    assert code == 3 and "no device attached" in err and "Traceback" not in err
    assert not out.exists()


def _minimal_report() -> dict:
    return {"schema": "edgevlm.bench/2", "kind": "device",
            "device": {"kind": "host", "spec": "host", "emulated": False, "model": "cpu",
                       "soc": unavailable("a host CPU"), "os": "Linux", "cpu": {"cores": 2},
                       "thermal_before": unavailable("no zone"), "thermal_after": unavailable("no zone")},
            "artifacts": unavailable("none"), "runtime_versions": {}, "model": {"version": "2.6"},
            "results": [{"part": "vision", "runtime": "ort:fp32", "status": "ok", "load_ms": 3.0, "cold_ms": 9.0,
                         "peak_memory_bytes": unavailable("one process"),
                         "metrics": {"runs": 10, "warmup": 2, "median_ms": 4.0, "p90_ms": 5.0, "min_ms": 3.5,
                                     "max_ms": 6.0, "mean_ms": 4.2, "std_ms": 0.4}}],
            "power": unavailable("no battery")}


def test_schema_wants_every_field_present_or_explained():
    report = _minimal_report()
    validate_bench(report)
    for path in (("device", "soc"), ("power",), ("results", 0, "load_ms")):
        broken = copy.deepcopy(report)
        node = broken
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]  # silently absent: refused
        with pytest.raises(jsonschema.ValidationError, match="required"):
            validate_bench(broken)
    zero = copy.deepcopy(report)
    zero["results"][0]["load_ms"] = 0  # a zero standing in for "not measured": refused
    with pytest.raises(jsonschema.ValidationError):
        validate_bench(zero)
    empty = copy.deepcopy(report)
    empty["device"]["soc"] = {"unavailable": ""}  # a reason must say something
    with pytest.raises(jsonschema.ValidationError):
        validate_bench(empty)


def test_old_manifest_is_refused_before_any_push(tmp_path):
    """The native runtime reads manifest schema 2; Python upgrades older ones in memory, so the
    device benchmark checks the file itself rather than sending a folder the phone will refuse."""
    import json

    from edgevlm.device_tests.device_bench import refuse_old_manifest

    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(ConfigError, match="schema_version 1; the device runtime reads 2") as err:
        refuse_old_manifest(tmp_path)
    assert "re-export" in err.value.fix
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 2}))
    refuse_old_manifest(tmp_path)


@pytest.mark.parametrize("spec, expected", [
    ("aihub", "qai-hub"),
    ("aws-device-farm:arn:aws:devicefarm:us-west-2:123456789012:project:0a1b2c3d", "boto3"),
    ("aws-device-farm:my-project", "is not a Device Farm project ARN"),
])
def test_farm_without_client_or_account_is_one_message(spec, expected, int4_kv_export, tmp_path, capsys):
    """No qai-hub / boto3 / account here: exit 3 with the missing piece named, before any work."""
    import importlib.util

    if expected in ("qai-hub", "boto3") and importlib.util.find_spec(expected.replace("-", "_")) is not None:
        pytest.skip(f"{expected} is installed here: this checks the message of a machine without it")
    out = tmp_path / "r.json"
    code = main(["device-bench", "--artifacts", str(int4_kv_export), "--device", spec, "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and expected in err and "Traceback" not in err and not out.exists()


def test_adb_missing_from_path_names_the_install(int4_kv_export, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(["device-bench", "--artifacts", str(int4_kv_export), "--device", "adb", "--json",
                 str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 3 and "adb" in err and "platform-tools" in err and "Traceback" not in err


class _CoolingHost:
    """A device whose temperature readings are given: the cool-down's waiting logic on its own."""

    def __init__(self, readings):
        self.readings = list(readings)

    def temperature_c(self):
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_cool_down_waits_until_near_the_start_and_is_bounded():
    from edgevlm.device_tests.device_bench import DeviceBenchPlan, cool_down

    plan = DeviceBenchPlan(cooldown_tolerance_c=1.0, cooldown_max_s=0.05)
    done = cool_down(_CoolingHost([45.0, 44.0, 41.5, 40.6]), 40.0, plan, poll_s=0.01)
    assert done == {"start_c": 40.0, "end_c": 40.6, "waited_s": pytest.approx(0.03), "reached": True}
    stuck = cool_down(_CoolingHost([48.0]), 40.0, plan, poll_s=0.01)
    assert stuck["reached"] is False and stuck["end_c"] == 48.0 and stuck["waited_s"] >= 0.05
    assert "no readable temperature" in cool_down(_CoolingHost([None]), None, plan)["unavailable"]
