"""`edgevlm device-bench` end to end on the devices this machine has: the host itself and the
aarch64 phone bundle under qemu-user, through the same steps an adb phone takes (bundle, push,
power sampler beside edgevlm-bench, pull, bench/2 report). The answer's tokens equal `edgevlm run`'s."""

from __future__ import annotations

import json
import shutil

import pytest

from edgevlm.cli.main import main
from edgevlm.device_tests.devices.base import is_unavailable
from edgevlm.device_tests.schema import validate_bench
from tests.runtime_helpers import CROSS_TOOLS, build, folders, images, python_run  # noqa: F401
from tests.test_device_adb import fake_adb  # noqa: F401

PRESET = "minicpmv-2.6-tiny"
QUESTION = "What is in the image?"


def device_bench(folder, json_path, *extra) -> dict:
    assert main(["device-bench", "--artifacts", str(folder), "--json", str(json_path), "--prompt", QUESTION,
                 *extra]) == 0
    report = json.loads(json_path.read_text())
    validate_bench(report)
    return report


def battery_folder(root, current="-350000", voltage="3900000", status="Discharging"):
    """A power_supply folder as the kernel shows it (µA, µV; this vendor signs discharge negative)."""
    root.mkdir(parents=True)
    for name, value in (("type", "Battery"), ("current_now", current), ("voltage_now", voltage), ("status", status)):
        (root / name).write_text(value + "\n")
    return root


@pytest.fixture
def home(runtime_home, monkeypatch):
    monkeypatch.setenv("EDGEVLM_HOME", str(runtime_home))  # the runtime builds the other tests made
    return runtime_home


def test_host_device_bench_with_power(home, build, folders, images, tmp_path):
    folder = folders(PRESET)
    png, _ = images["1000x600"]
    root = battery_folder(tmp_path / "battery")
    out = tmp_path / "host.json"
    report = device_bench(folder, out, "--device", "host", "--image", str(png), "--contexts", "8,16,1533",
                          "--runs", "3", "--warmup", "1", "--decode-tokens", "4", "--max-new-tokens", "12",
                          "--battery-root", str(root), "--idle-seconds", "0.5", "--sample-hz", "50")
    expected = python_run(folder, [png], QUESTION, max_new_tokens=12)
    e2e = report["input"]["end_to_end"]
    assert e2e["tokens"] == expected.tokens and e2e["text"] == expected.text
    device = report["device"]
    assert device["kind"] == "host" and device["emulated"] is False and "unavailable" in device["soc"]
    vision, decoder = report["results"]
    assert vision["status"] == "ok" and vision["artifact"].endswith(".onnx") and vision["metrics"]["runs"] == 3
    manifest = json.loads((folder / "manifest.json").read_text())
    assert vision["sha256"] == next(a["sha256"] for a in manifest["artifacts"] if a["file"] == vision["artifact"])
    assert report["artifacts"]["files"][decoder["artifact"]] == decoder["sha256"]
    assert set(decoder["decoder"]["decode"]) == {"8", "16", "1533"}
    assert "exceeds the program's max_seq_len" in decoder["decoder"]["decode"]["1533"]["unavailable"]
    assert decoder["decoder"]["decode"]["16"]["runs"] == 4 and decoder["decoder"]["ttft_ms"] > 0

    # power: a constant 0.35 A x 3.9 V fuel gauge, read by the real sampler on the device's clock
    power = report["power"]
    assert power["sample_rate_hz"] == 50 and power["idle_w"] == pytest.approx(0.35 * 3.9)
    assert power["derivation"]["sign_convention"] == "negative_is_discharge"
    for name, phase in power["phases"].items():
        if is_unavailable(phase):  # shorter than two 20 ms sample periods: said, not guessed
            assert "shorter than two sample periods" in phase["unavailable"], name
        else:
            assert phase["mean_w"] == pytest.approx(1.365) and abs(phase["net_w"]) < 1e-9
            assert phase["energy_j"] == pytest.approx(1.365 * phase["duration_s"])
    assert not is_unavailable(power["phases"]["load"]) or not is_unavailable(power["phases"]["e2e"])
    raw = tmp_path / "host.raw"
    assert {"bench-0.json", "power-0.csv", "idle-0.csv"} <= {p.name for p in raw.iterdir()}
    assert report["raw_files"]["power-0.csv"] == "host.raw/power-0.csv"

    # a second run reuses the bundle on the device: same content, same folder
    again = device_bench(folder, tmp_path / "again.json", "--device", "host", "--image", str(png),
                         "--contexts", "8", "--runs", "1", "--warmup", "0", "--decode-tokens", "1",
                         "--max-new-tokens", "12")
    assert again["input"]["device_folder"] == report["input"]["device_folder"]
    assert again["input"]["end_to_end"]["tokens"] == expected.tokens
    assert "no battery in /sys/class/power_supply" in again["power"]["unavailable"]


def test_charging_phone_is_refused_unless_allowed(home, build, folders, images, tmp_path, capsys):
    folder = folders(PRESET)
    root = battery_folder(tmp_path / "battery", current="500000", status="Charging")
    args = ["--device", "host", "--contexts", "8", "--runs", "1", "--warmup", "0", "--decode-tokens", "1",
            "--max-new-tokens", "2", "--battery-root", str(root), "--idle-seconds", "0.3", "--sample-hz", "50"]
    out = tmp_path / "charging.json"
    assert main(["device-bench", "--artifacts", str(folder), "--json", str(out), *args]) != 0
    err = capsys.readouterr().err
    assert "Charging" in err and "--allow-charging" in err and "dumpsys battery unplug" in err
    assert not out.exists()
    report = device_bench(folder, out, *args, "--allow-charging")
    assert report["power"]["charging"] is True and any("--allow-charging" in n for n in report["power"]["notes"])


def test_qemu_device_bench_matches_the_host(home, build, folders, images, tmp_path):
    missing = [tool for tool in CROSS_TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/system-deps.sh installs them from Debian)")
    folder = folders(PRESET)
    png, _ = images["448x448"]
    report = device_bench(folder, tmp_path / "qemu.json", "--device", "qemu-aarch64", "--image", str(png),
                          "--contexts", "8,1600", "--runs", "1", "--warmup", "0", "--decode-tokens", "2",
                          "--max-new-tokens", "4")
    assert report["device"]["emulated"] is True and report["device"]["kind"] == "qemu-aarch64"
    assert all(r["emulated"] for r in report["results"]) and "qemu" in report["input"]["note"]
    expected = python_run(folder, [png], QUESTION, max_new_tokens=4)
    assert report["input"]["end_to_end"]["tokens"] == expected.tokens
    assert "unavailable" in report["results"][1]["decoder"]["prefill"]["1600"]


def test_adb_device_bench_on_an_emulated_phone(home, build, folders, images, tmp_path, fake_adb, monkeypatch):
    """The adb path end to end: the phone is tests/test_device_adb.py's fake adb (canned getprop,
    dumpsys, sysfs listings in real formats) whose shell runs the pushed aarch64 bundle under
    qemu-user. Push, facts, idle power, the sampler beside edgevlm-bench, pull and the report are
    the real code; only the phone is not."""
    import shlex

    from edgevlm.device_tests import android
    from tests.test_android_parsers import CPUINFO, CPUS, DUMPSYS_UNPLUGGED, GETPROP, THERMAL

    missing = [tool for tool in CROSS_TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/system-deps.sh installs them from Debian)")
    monkeypatch.setenv("FAKE_ADB_QEMU", "1")
    q = shlex.quote
    fake_adb.canned({"getprop": GETPROP, "dumpsys battery": DUMPSYS_UNPLUGGED, "cat /proc/cpuinfo": CPUINFO,
                     f"sh -c {q(android.THERMAL_SCRIPT)}": THERMAL, f"sh -c {q(android.CPU_SCRIPT)}": CPUS,
                     f"sh -c {q(android.POWER_SUPPLY_SCRIPT)}": "battery\tBattery\nusb\tUSB\n"})
    battery_folder(fake_adb.phone / "data/local/tmp/fake-battery", current="420000")  # this vendor: + is discharge
    folder = folders(PRESET)
    png, _ = images["448x448"]
    report = device_bench(folder, tmp_path / "phone.json", "--device", "adb:R5CX21ABCDE", "--image", str(png),
                          "--contexts", "8", "--runs", "2", "--warmup", "0", "--decode-tokens", "2",
                          "--max-new-tokens", "4", "--battery-root", "/data/local/tmp/fake-battery",
                          "--idle-seconds", "0.5", "--sample-hz", "20")
    device = report["device"]
    assert device["kind"] == "adb" and device["soc"] == "QTI SM8650" and device["model"] == "samsung SM-S928B"
    assert device["thermal_before"]["celsius"] == 51.8 and len(device["cpu"]["clusters"]) == 4
    assert report["input"]["device_folder"].startswith("/data/local/tmp/edgevlm/")
    expected = python_run(folder, [png], QUESTION, max_new_tokens=4)
    assert report["input"]["end_to_end"]["tokens"] == expected.tokens
    power = report["power"]
    assert power["idle_w"] == pytest.approx(0.42 * 3.9) and power["derivation"]["sign_convention"] == \
        "positive_is_discharge"
    calls = [" ".join(c) for c in fake_adb.calls()]
    assert any(c.startswith("-s R5CX21ABCDE push ") and "/bin/edgevlm-bench" in c for c in calls)
    assert any("edgevlm-power-sampler" in c and "--root /data/local/tmp/fake-battery" in c for c in calls)
    assert any(c.startswith("-s R5CX21ABCDE pull ") and c.split()[3].endswith("/results/bench-0.json")
               for c in calls)
    # the sampler was stopped on the phone: no edgevlm process is left running there
    import subprocess

    left = subprocess.run(["pgrep", "-f", str(fake_adb.phone)], capture_output=True, text=True).stdout.split()
    assert left == []
