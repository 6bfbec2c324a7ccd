"""AdbDevice (device_tests/devices/adb.py): the exact adb command lines it issues.

No phone is attached to the machines these tests run on, so the phone boundary is faked, and
only it: a small executable named `adb`, first on PATH, records its argv and answers like adb
with a phone behind it. `adb devices -l`, getprop, dumpsys battery and the sysfs scripts get
canned text in the formats real phones print; any other `adb shell CMD` runs CMD with this
machine's sh (a POSIX shell like the phone's mksh) with /data/local/tmp (and perfetto's
/data/misc/perfetto-traces) mapped into a temp folder, so quoting, chmod, the .complete marker
and killing the background sampler are real.
The last test runs the real adb binary (when installed) for the "no device" answer.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time

import pytest

from edgevlm.device_tests import android
from edgevlm.device_tests.devices.adb import AdbDevice, parse_devices
from edgevlm.device_tests.devices.base import Bundle, is_unavailable
from edgevlm.errors import EdgeVLMError
from tests.test_android_parsers import CPUINFO, CPUS, DUMPSYS_UNPLUGGED, GETPROP, THERMAL

FAKE_ADB = r'''#!PYTHON
import json, os, shutil, subprocess, sys
state = os.environ["FAKE_ADB_STATE"]
with open(os.path.join(state, "argv.log"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
phone = os.path.join(state, "phone")
local = lambda p: p.replace("/data/local/tmp", phone + "/data/local/tmp").replace(
    "/data/misc/perfetto-traces", phone + "/data/misc/perfetto-traces")
if args == ["devices", "-l"]:
    sys.stdout.write(open(os.path.join(state, "devices.txt")).read())
elif args[0] == "shell":
    canned = json.load(open(os.path.join(state, "canned.json")))
    if args[1] in canned:
        sys.stdout.write(canned[args[1]])
    else:
        sys.stdout.flush()
        command = local(args[1])
        if os.environ.get("FAKE_ADB_QEMU"):  # an aarch64 phone emulated: the bundle's loader under qemu-user
            import re
            command = re.sub(r"(^|&& |exec )(\S*/bin)/ld-linux-aarch64\.so\.1",
                             r"\1qemu-aarch64 -L \2/qemu-root \2/ld-linux-aarch64.so.1", command)
        sys.exit(subprocess.call(["sh", "-c", command]))
elif args[0] == "push":
    dst = local(args[2])
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(args[1], dst)
    print(f"{args[1]}: 1 file pushed, 0 skipped. 3.1 MB/s ({os.path.getsize(args[1])} bytes in 0.001s)")
elif args[0] == "pull":
    shutil.copyfile(local(args[1]), args[2])
    print(f"{args[1]}: 1 file pulled, 0 skipped. 2.0 MB/s (12 bytes in 0.001s)")
else:
    sys.exit(f"fake adb: unexpected arguments {args!r}")
'''

ONE_DEVICE = ("List of devices attached\n"
              "R5CX21ABCDE            device usb:1-1 product:e3qxxx model:SM_S928B device:e3q transport_id:3\n\n")


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bindir, state = tmp_path / "bin", tmp_path / "state"
    bindir.mkdir(), state.mkdir()
    (bindir / "adb").write_text(FAKE_ADB.replace("PYTHON", sys.executable))
    (bindir / "adb").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_STATE", str(state))

    class Fake:
        root = state
        phone = state / "phone"

        def devices(self, text):
            (state / "devices.txt").write_text(text)

        def canned(self, mapping):
            (state / "canned.json").write_text(json.dumps(mapping))

        def calls(self):
            log = state / "argv.log"
            return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

        def reset(self):
            (state / "argv.log").unlink(missing_ok=True)

    f = Fake()
    (f.phone / "data/local/tmp").mkdir(parents=True)
    (f.phone / "data/misc/perfetto-traces").mkdir(parents=True)
    f.devices(ONE_DEVICE)
    f.canned({})
    return f


def test_parse_devices_real_formats():
    text = ("List of devices attached\n"
            "R5CX21ABCDE            device usb:1-1 product:e3qxxx model:SM_S928B device:e3q transport_id:3\n"
            "emulator-5554          device product:sdk_gphone64_x86_64 model:sdk_gphone64_x86_64 "
            "device:emu64xa transport_id:1\n"
            "0A1B2C3D4E             unauthorized usb:1-2 transport_id:4\n"
            "192.168.1.20:5555      offline transport_id:5\n"
            "9B081FFAZ001WX         no permissions (missing udev rules? user is in the plugdev group); "
            "see [http://developer.android.com/tools/device.html] usb:1-3 transport_id:6\n")
    d = parse_devices(text)
    assert [(x["serial"], x["state"]) for x in d] == [
        ("R5CX21ABCDE", "device"), ("emulator-5554", "device"), ("0A1B2C3D4E", "unauthorized"),
        ("192.168.1.20:5555", "offline"), ("9B081FFAZ001WX", "no permissions")]
    assert d[0]["model"] == "SM_S928B" and d[4]["usb"] == "1-3"
    assert parse_devices("List of devices attached\nR5CX21ABCDE\tdevice\n\n") == [
        {"serial": "R5CX21ABCDE", "state": "device"}]


@pytest.mark.parametrize("listing,spec,expect", [
    ("List of devices attached\n\n", "adb", "no device attached: `adb devices -l` lists none"),
    ("List of devices attached\nR5CX21ABCDE            unauthorized usb:1-1 transport_id:3\n\n", "adb",
     "accept the 'Allow USB debugging?' RSA key prompt"),
    ("List of devices attached\nR5CX21ABCDE            offline usb:1-1 transport_id:3\n\n", "adb", "is offline"),
    (ONE_DEVICE + "emulator-5554          device product:sdk_gphone64_x86_64 model:sdk_gphone64_x86_64 "
     "device:emu64xa transport_id:1\n", "adb",
     "several devices attached: R5CX21ABCDE (device, SM_S928B); emulator-5554 (device, sdk_gphone64_x86_64); "
     "pick one with --device adb:SERIAL"),
    (ONE_DEVICE, "adb:OTHER", "no device OTHER attached (`adb devices -l` lists: R5CX21ABCDE)"),
])
def test_missing_explains_each_state(fake_adb, listing, spec, expect):
    fake_adb.devices(listing)
    assert expect in AdbDevice(spec).missing()


def test_missing_resolves_the_only_device_and_adb_not_on_path(fake_adb, tmp_path, monkeypatch):
    dev = AdbDevice("adb")
    assert dev.missing() is None and dev.serial == "R5CX21ABCDE"
    assert fake_adb.calls() == [["devices", "-l"]]
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    msg = AdbDevice("adb").missing()
    assert "adb is not on PATH" in msg and "platform-tools" in msg and "apt-get install adb" in msg


def test_shell_quotes_each_argument_into_one_string(fake_adb):
    dev = AdbDevice("adb:R5CX21ABCDE")
    r = dev.shell(["printf", "%s|", "a b", "$HOME", "it's", "x;rm -rf /"], cwd="/data/local/tmp")
    assert r.returncode == 0 and r.stdout == "a b|$HOME|it's|x;rm -rf /|"
    cmd = "cd /data/local/tmp && printf '%s|' 'a b' '$HOME' 'it'\"'\"'s' 'x;rm -rf /'"
    assert fake_adb.calls() == [["-s", "R5CX21ABCDE", "shell", cmd]]
    assert dev.shell(["sh", "-c", "exit 3"]).returncode == 3


def _bundle(tmp_path):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "artifacts").mkdir()
    (src / "bin" / "edgevlm-bench").write_text("#!/bin/sh\necho bench\n")
    (src / "artifacts" / "model weights.bin").write_bytes(b"\0" * 64)
    return Bundle(src, {"bin/edgevlm-bench": src / "bin" / "edgevlm-bench",
                        "artifacts/model weights.bin": src / "artifacts" / "model weights.bin"})


def test_push_sends_once_chmods_and_marks_complete_last(fake_adb, tmp_path):
    dev = AdbDevice("adb:R5CX21ABCDE")
    stale = fake_adb.phone / "data/local/tmp/edgevlm/0123456789abcdef"
    stale.mkdir(parents=True)
    bundle = _bundle(tmp_path)
    folder = dev.push(bundle)
    assert folder == f"/data/local/tmp/edgevlm/{bundle.digest}"
    calls = [c[2:] for c in fake_adb.calls()]
    assert calls == [
        ["shell", "ls /data/local/tmp/edgevlm"],
        ["shell", f"test -f {folder}/.complete"],
        ["shell", f"mkdir -p {folder} {folder}/artifacts {folder}/bin"],
        ["push", str(bundle.files["artifacts/model weights.bin"]), f"{folder}/artifacts/model weights.bin"],
        ["push", str(bundle.files["bin/edgevlm-bench"]), f"{folder}/bin/edgevlm-bench"],
        ["shell", f"chmod 755 {folder}/bin/edgevlm-bench"],
        ["shell", f"touch {folder}/.complete"],
    ]
    local = fake_adb.phone / folder.lstrip("/")
    assert stat.S_IMODE((local / "bin/edgevlm-bench").stat().st_mode) == 0o755
    assert (local / ".complete").exists() and (local / "artifacts/model weights.bin").stat().st_size == 64
    assert dev.stale_bundles == ["/data/local/tmp/edgevlm/0123456789abcdef"]  # listed, not deleted
    assert stale.exists()
    fake_adb.reset()
    assert dev.push(bundle) == folder
    assert [c[2] for c in fake_adb.calls()] == ["shell", "shell"]  # ls + test: nothing sent again
    # an interrupted push (no marker) is redone
    (local / ".complete").unlink()
    fake_adb.reset()
    dev.push(bundle)
    assert sum(c[2] == "push" for c in fake_adb.calls()) == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_background_sampler_is_killed_on_the_phone(fake_adb):
    dev = AdbDevice("adb:R5CX21ABCDE")
    loop = "i=0; while :; do echo \"$i,-512000,3912000,Discharging\"; i=$((i+1)); sleep 0.05; done"
    bg = dev.start(["sh", "-c", loop], cwd="/data/local/tmp")
    assert fake_adb.calls()[0] == ["-s", "R5CX21ABCDE", "shell",
                                   f"cd /data/local/tmp && echo $$ && exec sh -c {shlex.quote(loop)}"]
    assert _alive(bg.pid)  # the "phone" process (here a local one) runs
    time.sleep(0.3)
    r = bg.stop()
    assert not _alive(bg.pid)
    assert ["-s", "R5CX21ABCDE", "shell", f"kill -TERM {bg.pid}"] in fake_adb.calls()
    lines = r.stdout.splitlines()
    assert len(lines) >= 2 and lines[0] == "0,-512000,3912000,Discharging"


def test_facts_from_the_phone_outputs(fake_adb):
    dev = AdbDevice("adb:R5CX21ABCDE")
    q = shlex.quote
    fake_adb.canned({
        "getprop": GETPROP, "dumpsys battery": DUMPSYS_UNPLUGGED, "cat /proc/cpuinfo": CPUINFO,
        f"sh -c {q(android.THERMAL_SCRIPT)}": THERMAL, f"sh -c {q(android.CPU_SCRIPT)}": CPUS,
        f"sh -c {q(android.POWER_SUPPLY_SCRIPT)}": "battery\tBattery\nbms\tBMS\nusb\tUSB\n",
    })
    facts = dev.facts()
    assert facts["android"]["soc_model"] == "SM8650" and facts["android"]["sdk"] == 34
    assert facts["soc"] == "QTI SM8650" and facts["os"].startswith("Android 14 (API 34), samsung/")
    assert facts["android"]["battery"]["updates_stopped"]
    assert facts["android"]["battery_root"] == "/sys/class/power_supply/battery"
    clusters = facts["cpu"]["clusters"]
    assert [c["count"] for c in clusters] == [2, 2, 3, 1] and clusters[-1]["core"] == "Cortex-X4"
    assert dev.temperature_c() == 51.8
    assert dev.thermal()["sensor"] == "cpu zone cpu-2-0-0 (hottest of 4)"
    assert dev.power_supply_root() == "/sys/class/power_supply/battery"


def test_facts_unavailable_pieces_say_why(fake_adb):
    dev = AdbDevice("adb:R5CX21ABCDE")
    q = shlex.quote
    fake_adb.canned({"getprop": GETPROP, "dumpsys battery": "Can't find service: battery\n",
                     f"sh -c {q(android.THERMAL_SCRIPT)}": "", f"sh -c {q(android.CPU_SCRIPT)}": "",
                     f"sh -c {q(android.POWER_SUPPLY_SCRIPT)}": "usb\tUSB\n"})
    facts = dev.facts()
    assert facts["model"] == "samsung SM-S928B"
    assert facts["android"]["battery"] == {"unavailable": "dumpsys battery printed no battery state"}
    assert dev.thermal() == {"unavailable": "reading /sys/class/thermal: printed nothing"}
    assert dev.temperature_c() is None
    assert facts["cpu"]["clusters"] == {"unavailable": "reading cpufreq: printed nothing"}
    assert facts["android"]["battery_root"] == {"unavailable": "no power_supply folder of type Battery on the phone"}
    with pytest.raises(EdgeVLMError, match="type Battery"):
        dev.power_supply_root()


def test_bad_spec():
    with pytest.raises(EdgeVLMError, match="not an adb device spec"):
        AdbDevice("host")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("adb") is None, reason="adb is not installed on this machine")
def test_real_adb_reports_no_device(monkeypatch):
    """The real adb binary, with its own server on a private port (stopped afterwards)."""
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(_free_port()))
    try:
        listing = subprocess.run(["adb", "devices", "-l"], capture_output=True, text=True, timeout=60).stdout
        msg = AdbDevice("adb").missing()
        if parse_devices(listing):  # a phone is attached to this machine after all
            assert msg is None or "no device attached" not in msg
        else:
            assert msg.startswith("no device attached: `adb devices -l` lists none")
    finally:
        subprocess.run(["adb", "kill-server"], capture_output=True, timeout=60)
